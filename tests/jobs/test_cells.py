"""Sweeps fanned out cell by cell (`--list_cells`, `--cell=i`), as a job array would run them,
then collected by the report and by the whole sweep, which reruns nothing."""
import json

import pytest

import lotto
from lotto import jobs
from lotto.core.errors import ConfigError
from tests.jobs.test_cli import TEST_CONFIG, run_cli


def _sweep(config):
  config.mode = "prune_sweep"
  config.sweep.methods, config.sweep.densities = ("magnitude", "random"), (0.3,)
  return config


def test_a_loop_over_cells_then_the_report_and_the_sweep_collect_them(tiny_config, tmp_path,
                                                                      capsys):
  config = _sweep(tiny_config)
  names = jobs.list_cells(config)
  assert names == ["magnitude_d0.3_none_s0", "random_d0.3_none_s0"]
  for index in range(len(names)):  # what a SLURM array's tasks do, one index each
    jobs.run_cell(config, str(tmp_path), index)
  assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == names
  assert not (tmp_path / "results.json").exists()  # the sweep's own results come at the end
  assert json.loads((tmp_path / "config.json").read_text())["mode"] == "prune_sweep"
  assert "magnitude" in lotto.write_report(str(tmp_path))
  capsys.readouterr()
  summary = lotto.run_job(config, str(tmp_path))
  assert "2 cells, 2 already finished" in capsys.readouterr().out  # nothing recomputed
  assert [c["cell"] for c in summary["cells"]] == names


@pytest.mark.slow
def test_list_cells_and_a_cell_out_of_range_on_the_command_line(tmp_path):
  args = [f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'sweep'}",
          "--config.mode=sparse_sweep", "--config.sweep.methods=('set','rigl')",
          "--config.sweep.densities=(0.2,)"]
  listed = run_cli(*args, "--list_cells")
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.split("\n")[:2] == ["0\tset_d0.2_s0", "1\trigl_d0.2_s0"]
  out_of_range = run_cli(*args, "--cell=2")
  assert out_of_range.returncode == 2
  assert out_of_range.stderr.strip() == ("lotto: error: --cell=2 is out of range: the sweep has "
                                         "2 cells (0..1); --list_cells lists them")
  assert not (tmp_path / "sweep").exists()


def test_cells_need_a_sweep_and_the_sweeps_own_workdir(tiny_config, tmp_path):
  with pytest.raises(ConfigError, match=r"need a sweep mode \(prune_sweep, sparse_sweep\)"):
    jobs.run_cell(tiny_config, str(tmp_path / "a"), 0)
  lotto.run_job(tiny_config, str(tmp_path / "train"))  # a train run's workdir
  with pytest.raises(ConfigError, match="holds a run with a different config"):
    jobs.run_cell(_sweep(tiny_config), str(tmp_path / "train"), 0)
