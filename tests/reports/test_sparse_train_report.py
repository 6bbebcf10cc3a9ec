"""The sparse-training report, from hand-written results.json / config.json files (no training)."""
import json

import pytest

from lotto.core.errors import ConfigError
from lotto.reports import write_report, write_sparse_train_report
from lotto.reports.sparse_train import (density_schedule, load_sparse_train_results,
                                         schedule_runs)

LAYERS = ("hidden_0/kernel", "output/kernel")


def _write_run(path, result, seed=0):
  path.mkdir(parents=True, exist_ok=True)
  (path / "results.json").write_text(json.dumps(result))
  (path / "config.json").write_text(json.dumps({"mode": "sparse_train", "seed": seed}))


def _update(step, density, changed):
  return {"step": step, "density": density, "changed": changed,
          "layer_densities": {name: density for name in LAYERS}}


def _result(method, target, accuracy, density=None, updates=(), phases=None, steps=40):
  density = target if density is None else density
  history = [{"step": s, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0,
              "val_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": a}
             for s, a in ((10, 0.3), (20, 0.5), (30, 0.6), (steps, accuracy))]
  result = {"mode": "sparse_train", "config_hash": "abc", "method": method,
            "target_density": target, "topology": "none", "control": "none",
            "mask_updates": list(updates), "final_test_accuracy": accuracy,
            "final_test_loss": 2.24, "early_stop_step": 30, "early_stop_test_accuracy": 0.6,
            "early_stop_val_loss": 1.0, "density": density,
            "layer_densities": {name: density for name in LAYERS}, "steps": steps,
            "wall_time_s": 4.4, "history": history}
  if phases is not None:
    result["phases"] = phases
  return result


GMP_UPDATES = (_update(10, 1.0, 0.0), _update(15, 0.5957, 0.4043), _update(20, 0.3, 0.2957))


def _assert_png(path):
  assert path.exists() and path.stat().st_size > 1024, path


def _table_rows(text, header_start):
  """The rows after the line starting with `header_start`, up to a blank or unindented label."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
  rows = []
  for line in lines[start + 1:]:
    if not line or line.endswith(":") or line.startswith(("final", "early", "plots")):
      break
    rows.append(line.split())
  return rows


def test_one_gmp_run_lists_its_mask_updates_and_plots_density_and_accuracy(tmp_path):
  _write_run(tmp_path / "run", _result("gmp", 0.3, 0.161, density=0.2999, updates=GMP_UPDATES),
             seed=7)
  text = write_sparse_train_report(str(tmp_path))
  assert text.startswith("sparse_train gmp: target density 30.00%, seed 7, 40 steps")
  assert _table_rows(text, "step") == [["10", "100.00", "0.00"], ["15", "59.57", "40.43"],
                                       ["20", "30.00", "29.57"]]
  assert "final: test accuracy 16.1%, test loss 2.2400, density 29.99%" in text
  assert "early stop (min val loss): step 30, test accuracy 60.0%" in text
  assert "DSD phases" not in text
  _assert_png(tmp_path / "sparse_train.png")
  assert text.endswith(f"plots: {tmp_path / 'sparse_train.png'}")
  assert (tmp_path / "sparse_train_report.txt").read_text() == text.rsplit("\nplots:", 1)[0] + "\n"


def test_dsd_phases_are_listed(tmp_path):
  updates = (_update(13, 0.3, 0.7), _update(26, 1.0, 0.7))
  phases = [{"phase": "dense", "step": 13, "test_accuracy": 0.19, "density": 1.0},
            {"phase": "sparse", "step": 26, "test_accuracy": 0.25, "density": 0.3},
            {"phase": "dense_again", "step": 40, "test_accuracy": 0.31, "density": 1.0}]
  _write_run(tmp_path, _result("dsd", 0.3, 0.31, density=1.0, updates=updates, phases=phases))
  text = write_sparse_train_report(str(tmp_path))
  assert _table_rows(text, "phase") == [["dense", "13", "19.0", "100.00"],
                                        ["sparse", "26", "25.0", "30.00"],
                                        ["dense_again", "40", "31.0", "100.00"]]
  _assert_png(tmp_path / "sparse_train.png")


def test_density_schedules_start_dense_only_for_gmp_and_dsd():
  gmp = _result("gmp", 0.3, 0.5, density=0.2999, updates=GMP_UPDATES)
  assert density_schedule(gmp) == ([0, 10, 15, 20, 40], [1.0, 1.0, 0.5957, 0.3, 0.2999])
  dsd = _result("dsd", 0.3, 0.5, density=1.0,
                updates=(_update(13, 0.3, 0.7), _update(26, 1.0, 0.7)))
  assert density_schedule(dsd) == ([0, 13, 26, 40], [1.0, 0.3, 1.0, 1.0])
  rigl = _result("rigl", 0.1, 0.5, updates=(_update(10, 0.1, 0.05), _update(20, 0.1, 0.04)))
  assert density_schedule(rigl) == ([0, 10, 20, 40], [0.1, 0.1, 0.1, 0.1])
  static = _result("static", 0.05, 0.5, density=0.0501)
  assert density_schedule(static) == ([0, 40], [0.0501, 0.0501])


def test_a_static_run_reports_a_fixed_mask(tmp_path):
  _write_run(tmp_path, _result("static", 0.05, 0.42, density=0.0501))
  text = write_sparse_train_report(str(tmp_path))
  assert "mask updates: none (the mask is fixed)" in text
  assert "final: test accuracy 42.0%, test loss 2.2400, density 5.01%" in text
  _assert_png(tmp_path / "sparse_train.png")


def _sweep(root):
  """gmp and static at densities 0.3 and 0.1, seeds 0 and 1; rigl only at 0.1, seed 0."""
  (root / "results.json").write_text(json.dumps({"mode": "sparse_sweep", "cells": []}))
  accuracies = {("gmp", 0.3): (0.90, 0.92), ("gmp", 0.1): (0.80, 0.84),
                ("static", 0.3): (0.85, 0.85), ("static", 0.1): (0.70, 0.74)}
  for (method, density), per_seed in accuracies.items():
    for seed, accuracy in enumerate(per_seed):
      updates = GMP_UPDATES if method == "gmp" else ()
      reached = density + (0.001 if seed else 0.0)
      _write_run(root / "cells" / f"{method}_d{density}_s{seed}",
                 _result(method, density, accuracy, density=reached, updates=updates), seed=seed)
  _write_run(root / "cells" / "rigl_d0.1_s0",
             _result("rigl", 0.1, 0.81, updates=(_update(10, 0.1, 0.05),)), seed=0)


def test_a_sweep_tabulates_mean_std_over_seeds_by_method_and_density(tmp_path):
  _sweep(tmp_path)
  text = write_sparse_train_report(str(tmp_path))
  tables = text.rsplit("\nplots:", 1)[0]
  assert tables == """\
final test accuracy (%) by method and target density; mean+-std over seeds (n)
method            0.3            0.1
static  85.0+-0.0 (2)  72.0+-2.0 (2)
gmp     91.0+-1.0 (2)  82.0+-2.0 (2)
rigl                -  81.0+-0.0 (1)

density reached and early-stop test accuracy (%) per method and target density
method  target %  reached %  updates  early-stop acc
static     30.00      30.05        0   60.0+-0.0 (2)
static     10.00      10.05        0   60.0+-0.0 (2)
gmp        30.00      30.05        3   60.0+-0.0 (2)
gmp        10.00      10.05        3   60.0+-0.0 (2)
rigl       10.00      10.00        1   60.0+-0.0 (1)"""
  assert (tmp_path / "sparse_train_report.txt").read_text() == tables + "\n"
  _assert_png(tmp_path / "sparse_train_accuracy.png")
  _assert_png(tmp_path / "sparse_train_schedules.png")
  assert not (tmp_path / "sparse_train.png").exists()
  assert text.endswith(f"plots: {tmp_path / 'sparse_train_accuracy.png'}, "
                       f"{tmp_path / 'sparse_train_schedules.png'}")


def test_the_schedule_plot_shows_each_methods_lowest_density_first_seed(tmp_path):
  _sweep(tmp_path)
  chosen = schedule_runs(load_sparse_train_results(str(tmp_path)))  # seeds from config.json
  assert [(s[0], r["target_density"], r["seed"]) for s, r in chosen.items()] == [
      ("static", 0.1, 0), ("gmp", 0.1, 0), ("rigl", 0.1, 0)]


def test_write_report_dispatches_to_the_sparse_train_report(tmp_path):
  _sweep(tmp_path)
  text = write_report(str(tmp_path))
  assert text.startswith("final test accuracy (%) by method and target density")
  assert (tmp_path / "sparse_train_report.txt").exists()
  _assert_png(tmp_path / "sparse_train_accuracy.png")


def test_no_sparse_train_results_is_a_clear_error(tmp_path):
  (tmp_path / "results.json").write_text(json.dumps({"mode": "sparse_sweep"}))
  with pytest.raises(ConfigError, match="no sparse_train results"):
    write_sparse_train_report(str(tmp_path))
  with pytest.raises(ConfigError, match="sparse_train, sparse_sweep or oneshot run"):
    write_report(str(tmp_path))
