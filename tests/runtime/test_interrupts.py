"""SIGTERM and SIGINT stop a run at its next block boundary: the state is saved there, the
lock released, one line says how to resume, and the resumed run equals an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import lotto
from lotto.runtime import interrupts
from lotto.train.hooks import AtStepsHook
from tests.conftest import REPO
from tests.jobs.test_cli import TEST_CONFIG


def test_a_requested_stop_saves_its_step_releases_the_lock_and_resumes_identically(
    tiny_config, tmp_path):
  straight = lotto.run_train(tiny_config, str(tmp_path / "straight"))

  def signal_arrives(step, state):
    interrupts.request(signal.SIGTERM)

  try:
    with pytest.raises(interrupts.Interrupted) as stopped:
      lotto.run_train(tiny_config, str(tmp_path / "run"), hooks=[AtStepsHook.of(signal_arrives,
                                                                                [25])])
  finally:
    interrupts.clear()
  # The block ended at the hook's step 25 (not a checkpoint step: those are 20 and 40).
  assert stopped.value.step == 25 and stopped.value.exit_code == 143
  assert str(stopped.value).startswith("stopped by SIGTERM at step 25 (its checkpoint is saved "
                                       "in ")
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["25"]
  assert not (tmp_path / "run" / "lock").exists()
  assert not (tmp_path / "run" / "results.json").exists()
  resumed = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert resumed["history"] == straight["history"]  # bit-identical
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]


def _command(workdir):
  return [sys.executable, "-m", "lotto.main", f"--config={TEST_CONFIG}", f"--workdir={workdir}",
          "--config.train.duration=4000it", "--config.train.eval_every=400it",
          "--config.train.checkpoint_every=400it", "--config.train.verbose=0"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_command_stops_on_a_signal_with_one_line_and_resumes_identically(tmp_path,
                                                                             signum):
  run = tmp_path / "run"
  child = subprocess.Popen(_command(run), cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not (run / "checkpoints" / "400").exists() and child.poll() is None:
    assert time.time() < deadline, "no checkpoint within 2 minutes"
    time.sleep(0.02)
  child.send_signal(signum)
  out, err = child.communicate(timeout=120)
  assert child.returncode == 128 + signum, err[-2000:]
  name = signal.Signals(signum).name
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"lotto: stopped by {name} at step "), err
  assert lines[0].endswith("; re-run the same command to resume")
  assert not (run / "lock").exists() and not (run / "results.json").exists()
  step = int(lines[0].split(" at step ")[1].split(" ")[0])
  assert 400 <= step < 4000 and str(step) in os.listdir(run / "checkpoints")
  again = subprocess.run(_command(run), cwd=REPO, capture_output=True, text=True, timeout=300)
  straight = subprocess.run(_command(tmp_path / "straight"), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
  assert again.returncode == 0 and straight.returncode == 0, again.stderr[-2000:]
  resumed, uninterrupted = (json.loads((d / "results.json").read_text())
                            for d in (run, tmp_path / "straight"))
  assert resumed["history"] == uninterrupted["history"]  # bit-identical
  assert resumed["final_test_accuracy"] == uninterrupted["final_test_accuracy"]
