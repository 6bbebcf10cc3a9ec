"""The `lotto` command end to end, and its bad-input errors (exit code 2)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # every test here runs the `lotto` command

TEST_CONFIG = str(REPO / "configs" / "test.py")


def run_cli(*args, env_cache=None):
  env = dict(os.environ)
  if env_cache:
    env["LOTTO_CACHE"] = env_cache
  return subprocess.run([sys.executable, "-m", "lotto.main", *args], capture_output=True,
                        text=True, env=env, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli") / "run"
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


def test_cli_trains_and_writes_results(finished_run):
  results = json.loads((finished_run / "results.json").read_text())
  assert results["steps"] == 40 and results["mode"] == "train"
  # The last evaluation is the final state on the 1,000 test sequences of MNIST-1D.
  assert results["final_test_accuracy"] == results["history"][-1]["test_accuracy"]
  assert results["final_test_accuracy"] * 1000 == pytest.approx(
      round(results["final_test_accuracy"] * 1000), abs=1e-9)
  saved = json.loads((finished_run / "config.json").read_text())
  assert saved["model"]["widths"] == [32, 32]


def _snapshot(directory):
  return {p: os.path.getmtime(os.path.join(directory, p)) for p in os.listdir(directory)}


@pytest.mark.parametrize("override, message", [
    ("--config.model.name=lenet301", "unknown model 'lenet301'; valid choices: conv2"),
    ("--config.data.name=imagenet", "unknown dataset 'imagenet'; valid choices: cifar10"),
    ("--config.optimizer.name=rmsprop", "unknown optimizer 'rmsprop'; valid choices: sgd"),
    ("--config.mode=search", "unknown mode 'search'; valid choices:"),
    ("--config.optimizr.name=adam", "--config.optimizr.name: the config has no field "
                                    "'optimizr'; its fields: "),
    ("--config.optimizer.name.value=sgd", "--config.optimizer.name.value: config.optimizer.name "
                                          "is a str field (now 'adam'), not a section with a "
                                          "field 'value'; set it as --config.optimizer.name="),
    ("--config.optimizer.learning_rate=0", "optimizer.learning_rate must be > 0"),
    ("--config.data.batch_size=-5", "data.batch_size must be a positive integer"),
    ("--config.train.duration=ten", "cannot parse duration 'ten'"),
    ("--config.seed=7", "holds a run with a different config (seed: saved 0, now 7)"),
    ("--config.seeds=(0,1,1)", "seeds lists 1 more than once: (0, 1, 1); each replica needs"),
])
def test_bad_input_one_line_exit_2_files_untouched(finished_run, override, message):
  before = _snapshot(finished_run)
  results_before = (finished_run / "results.json").read_text()
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={finished_run}", override)
  assert result.returncode == 2
  lines = [l for l in result.stderr.splitlines() if l.startswith("lotto: error:")]
  assert len(lines) == 1 and message in lines[0], result.stderr[-1500:]
  assert _snapshot(finished_run) == before
  assert (finished_run / "results.json").read_text() == results_before


def test_a_colon_in_the_config_path_is_explained(tmp_path):
  result = run_cli(f"--config=configs:{TEST_CONFIG}", f"--workdir={tmp_path / 'new'}")
  assert result.returncode == 2 and not (tmp_path / "new").exists()
  assert ("config file configs does not exist (in --config=FILE:ARGUMENT a ':' ends the file "
          f"name: the file here is 'configs' and '{TEST_CONFIG}' is the argument") in result.stderr


def test_bad_workdir_is_not_created(tmp_path):
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'new'}",
                   "--config.model.name=nope")
  assert result.returncode == 2
  assert not (tmp_path / "new").exists()


def test_missing_config_flag():
  result = run_cli("--workdir=/tmp/x")
  assert result.returncode == 2 and "--config is required" in result.stderr


def test_help_names_every_mode_config_and_the_report_command():
  from lotto.jobs import MODES  # pylint: disable=import-outside-toplevel
  result = run_cli("--help")
  assert result.returncode == 0, result.stderr[-1000:]
  for mode in MODES.names():
    assert f"\n  {mode} " in result.stdout, mode
  for config in sorted((REPO / "configs").glob("*.py")):
    assert f"\n  {config.name} " in result.stdout, config.name
  assert "lotto report --workdir=DIR" in result.stdout and "--config.seed=1" in result.stdout


def test_help_whose_reader_stops_early_is_not_an_error():
  result = subprocess.run(f"set -o pipefail; {sys.executable} -m lotto.main --help | true",
                          shell=True, executable="/bin/bash", capture_output=True, text=True,
                          cwd=REPO, timeout=120)
  assert result.returncode == 0  # `true` closes the pipe before lotto writes
  assert result.stderr == ""  # no BrokenPipeError traceback
