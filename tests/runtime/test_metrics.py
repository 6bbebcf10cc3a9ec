"""Metric writers: TensorBoard events read back, progress modes, the bar under a terminal."""
import io
import json
import os
import pty
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lotto.runtime.metrics import ProgressWriter, TensorBoardWriter, format_seconds
from tests.conftest import REPO
from tests.jobs.test_cli import TEST_CONFIG


def _scalars(logdir):
  events = EventAccumulator(str(logdir))
  events.Reload()
  return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
          for tag in events.Tags()["scalars"]}


def test_tensorboard_writer_and_restart_drops_the_interrupted_attempts_tail(tmp_path):
  first = TensorBoardWriter(str(tmp_path), start_step=0)
  for step in (10, 20, 30):
    first.write_scalars(step, {"train_loss": 3.0 - step / 10, "learning_rate": 0.1})
  first.close()
  # A resumed attempt restarts at step 20 (its checkpoint) and rewrites 30 and 40.
  second = TensorBoardWriter(str(tmp_path), start_step=20)
  for step in (30, 40):
    second.write_scalars(step, {"train_loss": 10.0 + step, "learning_rate": 0.1})
  second.close()
  scalars = _scalars(tmp_path)
  assert scalars["train/loss"] == [(10, 2.0), (20, 1.0), (30, 40.0), (40, 50.0)]
  assert [s for s, _ in scalars["learning_rate"]] == [10, 20, 30, 40]


def test_progress_modes():
  lines = io.StringIO()
  writer = ProgressWriter(40, "run", mode="lines", stream=lines)
  for step in (10, 20):
    writer.write_scalars(step, {"train_loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.25})
  assert lines.getvalue().count("\n") == 2 and "run | step 20/40" in lines.getvalue()
  quiet = io.StringIO()
  heartbeat = ProgressWriter(40, "run", mode="heartbeat", heartbeat_s=3600, stream=quiet)
  for step in (10, 20, 30, 40):
    heartbeat.write_scalars(step, {"train_loss": 1.0})
  assert quiet.getvalue() == ""  # a short run prints nothing between its summary lines
  bar = io.StringIO()
  drawn = ProgressWriter(40, "run", mode="bar", stream=bar)
  drawn.write_scalars(20, {"train_loss": 1.0, "test_accuracy": 0.5})
  assert bar.getvalue().startswith("\rrun [##########..........] 20/40 | ")
  assert "\n" not in bar.getvalue() and "| test 50.0% | ETA " in bar.getvalue()
  drawn.close()
  assert bar.getvalue().endswith("\r")  # erased: the job's summary line takes its place
  assert [format_seconds(s) for s in (42, 185, 3720, float("nan"))] == [
      "42 s", "3 min 05 s", "1 h 02 min", "?"]


def _imp_command(workdir, verbose):
  return [sys.executable, "-m", "lotto.main", f"--config={TEST_CONFIG}", f"--workdir={workdir}",
          "--config.mode=imp", "--config.imp.levels=2", "--config.imp.branches=('reinit',)",
          f"--config.train.verbose={verbose}"]


@pytest.mark.slow
def test_main_job_output_is_a_line_per_run_and_the_table(tmp_path):
  result = subprocess.run(_imp_command(tmp_path / "run", 1), capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=True)
  lines = result.stdout.splitlines()
  runs = [l for l in lines if l.startswith("== level")]
  assert len(runs) == 3 + 2  # levels 0-2, the reinit branch at levels 1-2
  table = (tmp_path / "run" / "imp_report.txt").read_text().splitlines()
  assert len(lines) == len(runs) + len(table) + 1  # + the plots line
  # TensorBoard: one run per level and branch directory, with the scalars of each evaluation.
  level = _scalars(tmp_path / "run" / "level_1")
  assert [s for s, _ in level["test/accuracy"]] == [10, 20, 30, 40]
  assert abs(level["density"][-1][1] - 0.8) < 1e-3
  branch = _scalars(tmp_path / "run" / "level_2" / "branches" / "reinit")
  assert abs(branch["density"][-1][1] - 0.64) < 1e-3 and "density/hidden_0/kernel" in branch


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(tmp_path):
  controller, terminal = pty.openpty()
  command = [sys.executable, "-m", "lotto.main", f"--config={TEST_CONFIG}",
             f"--workdir={tmp_path / 'run'}", "--config.train.verbose=1"]
  process = subprocess.Popen(command, stdout=terminal, stderr=terminal, cwd=REPO)
  os.close(terminal)
  output = b""
  while True:
    try:
      chunk = os.read(controller, 4096)
    except OSError:  # the child closed the terminal
      break
    if not chunk:
      break
    output += chunk
  assert process.wait(timeout=300) == 0
  text = output.decode()
  assert "\r[" in text and "] 40/40 | " in text and "ETA" in text
  assert text.rstrip().splitlines()[-1].lstrip("\r ").startswith("final test accuracy")
  # The train run's TensorBoard events, in its workdir, match its results.json history.
  scalars = _scalars(tmp_path / "run")
  history = json.loads((tmp_path / "run" / "results.json").read_text())["history"]
  assert scalars["test/accuracy"] == [(h["step"], pytest.approx(h["test_accuracy"]))
                                      for h in history]
  assert [v for _, v in scalars["density"]] == [1.0] * 4
  assert scalars["learning_rate"][0][1] == pytest.approx(5e-3)
