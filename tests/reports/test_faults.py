"""`lotto report` reads every run it finds: runs that diverged get a line saying where,
damaged results files a line naming them (IMP runs and stability studies rebuilt from their
units' files), and the tables print where their files cannot be written."""
import errno
import json
import os
import re

import pytest

import lotto
from lotto.core.errors import Diverged
from lotto.reports import write_report
from tests.jobs.test_cli import run_cli
from tests.runtime.test_workdirs import read_only_view  # noqa: F401  (a fixture)

RUNNERS = {"train": lotto.run_train, "prune": lotto.run_prune, "imp": lotto.run_imp,
           "stability": lotto.run_stability, "sparse_train": lotto.run_sparse_train}


def _write(path, payload, config=None):
  path.mkdir(parents=True, exist_ok=True)
  (path / "results.json").write_text(json.dumps(payload))
  if config is not None:
    (path / "config.json").write_text(json.dumps(config))


def _level(level, accuracy, fraction=0.2, **extra):
  return {"mode": "imp_level", "level": level, "density": (1 - fraction) ** level,
          "final_test_accuracy": accuracy, "final_test_loss": 1.0,
          "early_stop_test_accuracy": accuracy, "early_stop_step": 100, **extra}


def _imp(accuracies, **extra):
  return {"mode": "imp", "fraction": 0.2, "complete": True,
          "levels": [_level(l, a) for l, a in enumerate(accuracies)], "branches": [], **extra}


def _stopped(mode, directory, step, checkpoint=None, **extra):
  """What `runs.recording_divergence` writes for a run that stopped (nothing before it)."""
  return {"mode": mode, "config_hash": "abc", "diverged": True, "diverged_at_step": step,
          "diverged_in": str(directory), "last_finite_checkpoint": checkpoint, **extra}


def _point(k, instability):
  path = {"alphas": [0.0, 0.5, 1.0], "errors": [0.3, 0.3 + instability, 0.3],
          "instability": instability, "endpoint_errors": [0.3, 0.3], "density": 1.0}
  return {"rewind_step": k, "rewind": f"{k}it", "dense": path}


def _prune(method, accuracy):
  return {"mode": "prune", "method": method, "ablation": "none", "at_step": 0,
          "target_density": 0.1, "final_test_accuracy": accuracy,
          "layer_densities": {"hidden_0/kernel": 0.1}}


def _sparse(method, accuracy, loss=1.5, **extra):
  return {"mode": "sparse_train", "method": method, "target_density": 0.1,
          "final_test_accuracy": accuracy, "final_test_loss": loss, "density": 0.1,
          "mask_updates": [], "steps": 40, "seed": 0, **extra}


def _rows(text, header_start):
  """The table's rows (split on spaces) after the line starting with `header_start`."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
  rows = []
  for line in lines[start + 1:]:
    if not line or not line.startswith(" "):
      break
    rows.append(line.split())
  return rows


# --- runs that diverged ---------------------------------------------------------------------

@pytest.mark.slow  # five tiny jobs; the next test covers each kind from written files
@pytest.mark.parametrize("mode, where", [
    ("train", ""), ("prune", ", in train/"), ("imp", ", in level 0"),
    ("stability", ", in dense/"), ("sparse_train", "")])
def test_a_run_of_each_kind_that_diverged_gets_a_line_saying_where(tiny_config, tmp_path, mode,
                                                                   where):
  tiny_config.mode = mode
  tiny_config.optimizer.name, tiny_config.optimizer.learning_rate = "sgd", 1e8
  tiny_config.stability.rewind_steps = ("0it",)
  tiny_config.sparse.method = "rigl"
  with pytest.raises(Diverged):
    RUNNERS[mode](tiny_config, str(tmp_path / "run"))
  text = write_report(str(tmp_path))
  # A study's line is in its own report, named from there (its full path).
  name = tmp_path / "run" if mode == "stability" else "run"
  assert text == (f"{mode} run {name}: diverged (non-finite loss by step 10{where}) and stopped "
                  "(no finite checkpoint); not in the table")


def test_diverged_runs_beside_healthy_ones_all_reported(tmp_path):
  # IMP: a healthy run and one that stopped in level 2; its levels 0-1 are pooled with the
  # other's (n = 2), level 2 has only the healthy run.
  _write(tmp_path / "imp_a", _imp([0.60, 0.50, 0.40]))
  _write(tmp_path / "imp_b", _stopped("imp", tmp_path / "imp_b" / "level_2", 130, 120,
                                      fraction=0.2, complete=False, branches=[],
                                      levels=[_level(0, 0.70), _level(1, 0.60)]))
  # Prune: a healthy cell and one that stopped while training.
  _write(tmp_path / "cells" / "magnitude", _prune("magnitude", 0.8))
  _write(tmp_path / "cells" / "snip", _stopped("prune", tmp_path / "cells" / "snip" / "train", 10))
  # Stability: a healthy study, and one that stopped in k = 100 after finishing k = 0.
  _write(tmp_path / "study_a", {"mode": "stability", "points": 3, "levels": 0,
                                "rewind": [_point(0, 0.02)]})
  study = tmp_path / "study_b"
  _write(study, _stopped("stability", study / "k_100" / "dense_a", 150, 140),
         {"mode": "stability", "seed": 0, "stability": {"points": 3, "levels": 0}})
  _write(study / "k_0", {"mode": "stability_point", **_point(0, 0.05)})
  # Sparse training: a healthy static run and a RigL run that stopped; a train run too.
  _write(tmp_path / "static", _sparse("static", 0.7))
  _write(tmp_path / "rigl", _stopped("sparse_train", tmp_path / "rigl", 20, 10))
  _write(tmp_path / "dense", _stopped("train", tmp_path / "dense", 30, 20))
  text = write_report(str(tmp_path))
  lines = text.splitlines()

  imp_rows = [(r[0], r[2], r[3]) for r in _rows(text, "level")]
  assert imp_rows == [("0", "2", "65.0+-5.0"), ("1", "2", "55.0+-5.0"), ("2", "1", "40.0")]
  assert ("imp run imp_b: diverged (non-finite loss by step 130, in level 2) and stopped (last "
          "finite checkpoint: step 120); what it finished before is in the table") in lines
  assert ("prune run cells/snip: diverged (non-finite loss by step 10, in train/) and stopped "
          "(no finite checkpoint); not in the table") in lines
  header = lines.index("method (ablation) @step                      0.1")
  assert lines[header + 1].split() == ["magnitude", "80.0+-0.0", "(1)"]  # snip: no row
  assert lines[header + 2].startswith("plots: ")
  assert text.count("instability = max test error") == 2
  # study_b's finished rewind step, rebuilt from k_0/results.json (dense instability 5 %).
  assert lines[lines.index(f"plot: {study}/stability.png") - 1].split()[:2] == ["0", "5.00"]
  assert (f"stability run {study}: diverged (non-finite loss by step 150, in rewind step 100, "
          "dense_a/) and stopped (last finite checkpoint: step 140); what it finished before "
          "is in the table") in lines
  assert (study / "stability.png").exists() and (tmp_path / "study_a" / "stability.png").exists()
  assert "sparse_train static: target density 10.00%, seed 0, 40 steps" in lines
  assert ("sparse_train run rigl: diverged (non-finite loss by step 20) and stopped (last "
          "finite checkpoint: step 10); not in the table") in lines
  assert ("train run dense: diverged (non-finite loss by step 30) and stopped (last finite "
          "checkpoint: step 20); not in the table") in lines
  # The files hold the same lines as the printed report.
  assert "imp run imp_b: diverged" in (tmp_path / "imp_report.txt").read_text()
  assert "prune run cells/snip: diverged" in (tmp_path / "report.txt").read_text()


def test_runs_that_trained_on_through_a_divergence_are_tabulated_with_a_line(tmp_path):
  # train.on_nan=continue: the results are complete, non-finite numbers are null.
  imp = _imp([0.60, 0.10], diverged=True, diverged_at_step=20)
  imp["levels"][1].update(final_test_loss=None, early_stop_test_accuracy=None,
                          early_stop_step=None, diverged=True, diverged_at_step=20)
  _write(tmp_path / "imp", imp)
  _write(tmp_path / "rigl", _sparse("rigl", 0.1, loss=None, diverged=True, diverged_at_step=10))
  _write(tmp_path / "pop", {"mode": "population", "base_mode": "train", "seeds": [0, 1],
                            "pooled": {"final_test_accuracy": {
                                "mean": None, "std": None, "values": {"0": 0.5, "1": None}}}})
  text = write_report(str(tmp_path))
  lines = text.splitlines()
  assert [(r[0], r[3], r[4]) for r in _rows(text, "level")] == [("0", "60.0", "60.0"),
                                                                ("1", "10.0", "-")]
  assert ("imp run imp: diverged (non-finite loss by step 20, in level 1) and trained on "
          "(train.on_nan=continue); non-finite numbers show as '-'") in lines
  assert "final: test accuracy 10.0%, test loss -, density 10.00%" in lines
  assert ("sparse_train run rigl: diverged (non-finite loss by step 10) and trained on "
          "(train.on_nan=continue); non-finite numbers show as '-'") in lines
  assert [line.split() for line in lines[2:5]] == [["0", "50.00"], ["1", "-"], ["mean+-sd", "-"]]


def test_a_sweep_whose_cells_trained_together_gets_the_sweep_line(tmp_path):
  # Cells in one program: only the sweep's results.json records the divergence; a cell that
  # ran alone records it too, and then only the cell's line is printed.
  cell = tmp_path / "sweep" / "cells" / "snip_d0.1_none_s0"
  _write(tmp_path / "sweep", _stopped("prune_sweep", cell / "train", 10))
  (cell / "train").mkdir(parents=True)
  assert write_report(str(tmp_path)) == (
      "prune_sweep run sweep: diverged (non-finite loss by step 10, in cell "
      "snip_d0.1_none_s0, train/) and stopped (no finite checkpoint); not in the table")
  _write(cell, _stopped("prune", cell / "train", 10))
  assert write_report(str(tmp_path)) == (
      "prune run sweep/cells/snip_d0.1_none_s0: diverged (non-finite loss by step 10, in "
      "train/) and stopped (no finite checkpoint); not in the table")


def test_a_moved_run_still_says_where_it_diverged(tmp_path):
  # diverged_in names the directory the run had when it diverged.
  _write(tmp_path / "now" / "run", _stopped("imp", "/elsewhere/run/level_3", 40, 30,
                                            levels=[], branches=[]))
  (tmp_path / "now" / "run" / "level_3").mkdir()
  _write(tmp_path / "now" / "other", _stopped("train", "/elsewhere/other", 10))
  lines = write_report(str(tmp_path / "now")).splitlines()
  assert lines[0].startswith("imp run run: diverged (non-finite loss by step 40, in level 3)")
  assert lines[2].startswith("train run other: diverged (non-finite loss by step 10) and")


# --- damaged results files ------------------------------------------------------------------

def _truncate(path):
  text = path.read_text()
  path.write_text(text[:len(text) // 2])


def test_a_truncated_results_file_is_one_line_and_imp_is_rebuilt_from_its_levels(tmp_path):
  run = tmp_path / "lottery"
  levels = [_level(0, 0.61), _level(1, 0.62), _level(2, 0.58)]
  branch = {**_level(1, 0.30), "mode": "imp_branch", "branch": "reinit"}
  _write(run, {**_imp([]), "levels": levels, "branches": [branch]},
         {"mode": "imp", "seed": 0, "seeds": [], "imp": {"fraction": 0.2, "scope": "global"}})
  for record in levels:  # each level's own file, as the IMP job writes it (with its history)
    _write(run / f"level_{record['level']}", {**record, "history": [{"step": 10}]})
  _write(run / "level_1" / "branches" / "reinit", branch)
  intact = write_report(str(tmp_path))
  _truncate(run / "results.json")
  text = write_report(str(tmp_path))
  table, line = text.split("\n\n")
  assert table == intact  # the same table and plots, from the units' files
  assert [(r[0], r[3], r[6]) for r in _rows(table, "level")] == [
      ("0", "61.0", "-"), ("1", "62.0", "30.0"), ("2", "58.0", "-")]
  assert re.fullmatch(
      re.escape(f"damaged {run}/results.json (JSONDecodeError: ") + r"[^)]+\(char \d+\)\)"
      + re.escape(": the imp run is reported from its level_<L>/results.json (levels 0-2) and "
                  "1 branch results"), line), line


def test_damaged_results_of_other_kinds_are_one_line_each(tmp_path):
  _write(tmp_path / "pruned", _prune("snip", 0.8), {"mode": "prune", "seed": 0})
  _truncate(tmp_path / "pruned" / "results.json")
  study = tmp_path / "study"
  _write(study, {"mode": "stability", "points": 3, "levels": 0,
                 "rewind": [_point(0, 0.02), _point(100, 0.01)]},
         {"mode": "stability", "seed": 0, "stability": {"points": 3, "levels": 0}})
  for k in (0, 100):
    _write(study / f"k_{k}", {"mode": "stability_point", **_point(k, 0.02 if k == 0 else 0.01)})
  intact = write_report(str(tmp_path))
  (study / "results.json").write_text("[1, 2]")
  _write(tmp_path / "sweep", {}, {"mode": "sparse_sweep", "seed": 0})
  (tmp_path / "sweep" / "results.json").write_text("{\"mode\": \"sparse_sw")
  _write(tmp_path / "sweep" / "cells" / "static", _sparse("static", 0.7))
  _write(tmp_path / "lottery" / "level_0", _level(0, 0.5))
  (tmp_path / "lottery" / "level_0" / "results.json").write_text("\x00\x00")
  text = write_report(str(tmp_path))
  assert text.split("\n\n")[0] == intact.split("\n\n")[0]  # the study, rebuilt from k_*/
  assert "sparse_train static: target density 10.00%" in text  # the sweep's cell
  assert text.split("\n\n")[-1].splitlines() == [
      f"damaged {tmp_path}/lottery/level_0/results.json (JSONDecodeError: Expecting value: "
      "line 1 column 1 (char 0)): skipped (a unit of the run above it, whose own results.json "
      "holds its numbers; re-running that run's command recomputes it)",
      # The first half of its 165 characters ends inside the key "target_density" (char 70).
      f"damaged {tmp_path}/pruned/results.json (JSONDecodeError: Unterminated string starting "
      "at: line 1 column 71 (char 70)): the prune run is not reported; re-run its command to "
      "rewrite it",
      f"damaged {study}/results.json (not a JSON object but list): the stability run is "
      "reported from its k_<k>/results.json (rewind steps 0, 100)",
      f"damaged {tmp_path}/sweep/results.json (JSONDecodeError: Unterminated string starting "
      "at: line 1 column 10 (char 9)): the sparse_sweep's cells are reported from their own "
      "results.json"]


# --- directories that cannot be written -----------------------------------------------------

def _refuse_writes(monkeypatch, code):
  """Every atomic rename fails with `code` (what a read-only or full disk does to a write)."""
  def refuse(source, target):
    raise OSError(code, os.strerror(code))
  monkeypatch.setattr(os, "replace", refuse)


def test_the_tables_print_where_no_file_can_be_written(tmp_path, monkeypatch):
  _write(tmp_path / "lottery", _imp([0.61, 0.62]))
  _write(tmp_path / "study", {"mode": "stability", "points": 3, "levels": 0,
                              "rewind": [_point(0, 0.02)]})
  _write(tmp_path / "pruned", _stopped("prune", tmp_path / "pruned" / "train", 10))
  before = sorted(p.name for p in tmp_path.rglob("*"))
  _refuse_writes(monkeypatch, errno.EACCES)
  lines = write_report(str(tmp_path)).splitlines()
  assert [(r[0], r[3]) for r in _rows("\n".join(lines), "level")] == [("0", "61.0"),
                                                                      ("1", "62.0")]
  assert lines[2].split() == ["0", "2.00", "nan", "nan", "nan"]  # the study's table
  assert not any(line.startswith(("plot:", "plots:")) for line in lines)  # none was written
  assert lines[-2].startswith("prune run pruned: diverged")
  # One line for every file not written (the study's directory and the workdir), and no
  # advice to free space: space is not what is missing.
  assert lines[-1] == (f"report files (tables, plots) not written: cannot write {tmp_path}/"
                       f"study/stability_report.txt: Permission denied; make {tmp_path}/study "
                       "writable and re-run the same command; nor in 1 other directory")
  assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no temporary file left


def test_a_full_disk_gets_the_free_space_advice(tmp_path, monkeypatch):
  _write(tmp_path / "lottery", _imp([0.61, 0.62]))
  _refuse_writes(monkeypatch, errno.ENOSPC)
  last = write_report(str(tmp_path)).splitlines()[-1]
  assert last.startswith(f"report files (tables, plots) not written: cannot write {tmp_path}/"
                         "imp_report.txt: No space left on device (")
  assert last.endswith(f" GB free on {tmp_path}); free space and re-run the same command")


def test_a_read_only_mount_prints_the_tables(tmp_path, read_only_view):  # noqa: F811
  _write(tmp_path / "runs" / "lottery", _imp([0.61, 0.62]))
  view = read_only_view(tmp_path / "runs")
  text = write_report(str(view))
  assert [(r[0], r[3]) for r in _rows(text, "level")] == [("0", "61.0"), ("1", "62.0")]
  assert text.splitlines()[-1] == (
      f"report files (tables, plots) not written: cannot write {view}/imp_report.txt: "
      f"Read-only file system; make {view} writable and re-run the same command")
  assert sorted(p.name for p in view.rglob("*")) == ["lottery", "results.json"]


@pytest.mark.slow
def test_the_cli_reports_a_read_only_mount_with_exit_0(tmp_path, read_only_view):  # noqa: F811
  _write(tmp_path / "runs" / "lottery", _imp([0.61, 0.62]))
  _write(tmp_path / "runs" / "pruned", _stopped("prune", tmp_path / "runs" / "pruned", 10))
  view = read_only_view(tmp_path / "runs")
  result = run_cli("report", f"--workdir={view}")
  assert result.returncode == 0, result.stderr[-1500:]
  out = result.stdout.strip().splitlines()
  assert out[0].startswith("IMP: final test accuracy (%)") and len(out) == 7
  assert out[4:6] == ["", "prune run pruned: diverged (non-finite loss by step 10) and stopped "
                      "(no finite checkpoint); not in the table"]
  assert out[6] == (f"report files (tables, plots) not written: cannot write {view}/"
                    f"imp_report.txt: Read-only file system; make {view} writable and re-run "
                    "the same command")
