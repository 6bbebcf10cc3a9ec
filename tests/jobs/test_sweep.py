"""Sweeps (resumable cells) and `lotto report` (table and plots)."""
import json
import os

import pytest

from lotto.runtime import runs
from lotto.core.errors import ConfigError
from lotto.jobs.prune_sweep import run_prune_sweep
from tests.jobs.test_cli import run_cli


@pytest.mark.slow
def test_sweep_runs_cells_skips_finished_and_reports(tiny_config, tmp_path, capsys):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.methods = ("magnitude", "random")
  tiny_config.sweep.densities = (0.1,)
  tiny_config.sweep.ablations = ("none", "shuffle")
  tiny_config.sweep.seeds = (0,)
  summary = run_prune_sweep(tiny_config, str(tmp_path))
  assert len(summary["cells"]) == 4
  out = capsys.readouterr().out
  assert "prune_sweep: 4 cells, 0 already finished" in out
  assert "[4/4] random_d0.1_shuffle_s0: final test accuracy" in out
  cell = tmp_path / "cells" / "magnitude_d0.1_none_s0" / runs.RESULTS_FILE
  stamp = os.path.getmtime(cell)
  again = run_prune_sweep(tiny_config, str(tmp_path))  # every cell is skipped
  out = capsys.readouterr().out
  assert "4 cells, 4 already finished" in out and "[1/4]" not in out
  assert os.path.getmtime(cell) == stamp
  assert [c["final_test_accuracy"] for c in again["cells"]] == \
      [c["final_test_accuracy"] for c in summary["cells"]]
  table = (tmp_path / "report.txt").read_text()
  assert "random (shuffle)" in table and "magnitude" in table and "(1)" in table
  for png in ("accuracy_vs_density.png", "layer_densities.png"):
    assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
  assert not (tmp_path / "accuracy_vs_prune_step.png").exists()  # one pruning step only
  # the CLI report regenerates the same table
  os.remove(tmp_path / "report.txt")
  result = run_cli("report", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-1500:]
  assert (tmp_path / "report.txt").read_text() == table
  saved = json.loads((tmp_path / runs.RESULTS_FILE).read_text())
  assert saved["mode"] == "prune_sweep" and len(saved["cells"]) == 4


def test_sweep_over_pruning_steps_labels_cells_and_rows(tiny_config, tmp_path):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.methods = ("magnitude",)
  tiny_config.sweep.densities = (0.1,)
  tiny_config.sweep.at_steps = ("0it", "20it")
  summary = run_prune_sweep(tiny_config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "cells")) == ["magnitude_d0.1_none_at20it_s0",
                                                    "magnitude_d0.1_none_s0"]
  assert sorted(c["at_step"] for c in summary["cells"]) == [0, 20]
  later = json.loads((tmp_path / "cells" / "magnitude_d0.1_none_at20it_s0" /
                      runs.RESULTS_FILE).read_text())
  assert later["at_step"] == 20 and later["steps"] == 40  # trained from step 20 to the end
  table = (tmp_path / "report.txt").read_text().splitlines()
  assert any(line.startswith("magnitude @20it ") for line in table)
  assert any(line.startswith("magnitude ") and "@" not in line for line in table)
  assert (tmp_path / "accuracy_vs_prune_step.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_rejects_a_pruning_step_past_training_before_running_cells(tiny_config, tmp_path):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.at_steps = ("0it", "40it")
  with pytest.raises(ConfigError, match=r"sweep.at_steps entry '40it' \(40 steps\) is not "
                     r"before the end of training \(40 steps\)"):
    run_prune_sweep(tiny_config, str(tmp_path))
  assert not (tmp_path / "cells").exists()


def test_sweep_with_an_empty_list_is_a_clear_error(tiny_config, tmp_path):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.methods = ()
  with pytest.raises(ConfigError, match="the sweep has no cells"):
    run_prune_sweep(tiny_config, str(tmp_path))


def test_a_garbled_cell_result_is_recomputed_to_the_same_numbers(tiny_config, tmp_path, capsys):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.methods, tiny_config.sweep.densities = ("magnitude",), (0.1,)
  first = run_prune_sweep(tiny_config, str(tmp_path))
  cell = tmp_path / "cells" / "magnitude_d0.1_none_s0" / runs.RESULTS_FILE
  cell.write_text("{}")
  again = run_prune_sweep(tiny_config, str(tmp_path))
  assert "damaged" in capsys.readouterr().out
  timeless = lambda cells: [{k: v for k, v in c.items() if k != "wall_time_s"}  # noqa: E731
                            for c in cells]
  assert timeless(again["cells"]) == timeless(first["cells"])  # the wall time is not a result
  assert json.loads(cell.read_text())["final_test_accuracy"] == \
      first["cells"][0]["final_test_accuracy"]
