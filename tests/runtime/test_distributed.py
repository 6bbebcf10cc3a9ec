"""Multi-process runs (`config.distributed`): two CPU processes on 127.0.0.1 train as one.

The 2-process run feeds each process's device its half of every global batch
(`jax.make_array_from_process_local_data`) and all-reduces the gradients over
gloo. Its final state is bit-identical to a single process driving two
devices with the same global batch (same partitioning, same reductions); that
equals the single-device run within float rounding (measured on
configs/test.py after 40 Adam steps: params differ by <= 1.2e-7, test
accuracy identical; tests/runtime/test_sharding.py). Only process 0 writes.
"""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.runtime import distributed
from lotto.runtime.checkpoints import Checkpointer
from lotto.runtime.runs import read_json
from tests.conftest import REPO, load_config

TIMEOUT_S = 240


def _env(tmp_path, **extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra)
  env.setdefault("LOTTO_CACHE", str(tmp_path / "cache"))
  for name in (*distributed.EXPLICIT, *distributed.COORDINATOR, "SLURM_NTASKS",
               "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
    if name not in extra:
      env.pop(name, None)
  # The suite's XLA flags (tests/conftest.py) for every run alike, without any device count.
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + extra.get("XLA_FLAGS", "").split())
  return env


def _lotto(workdir, env, *overrides):
  return subprocess.Popen([sys.executable, "-m", "lotto.main", "--config=configs/test.py",
                           f"--workdir={workdir}", "--config.train.tensorboard=False",
                           *overrides], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=REPO)


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _final_state(workdir):
  exp = create_experiment(load_config("test"))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = checkpointer.restore(exp.total_steps, exp.init_state())
  checkpointer.close()
  return state


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["resident", "stream"])
def test_two_processes_train_as_one_process_on_the_same_global_batch(tmp_path, pipeline):
  # With the stream pipeline each process reads only its own 25 columns of every global
  # batch from the host and the global batch is assembled on the devices.
  coordinator = f"127.0.0.1:{_free_port()}"
  launched = [_lotto(tmp_path / "two_processes",
                     _env(tmp_path, LOTTO_NUM_PROCESSES="2", LOTTO_PROCESS_ID=str(rank),
                          LOTTO_COORDINATOR_ADDRESS=coordinator),
                     f"--config.data.pipeline={pipeline}")
              for rank in (0, 1)]
  # The reference: one process driving two devices on the same global batch of 50. (That
  # equals one device within float rounding is tests/runtime/test_sharding.py's.)
  two_devices = _lotto(tmp_path / "two_devices",
                       _env(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  outputs = [p.communicate(timeout=TIMEOUT_S) for p in (*launched, two_devices)]
  failed = [(p.returncode, err[-2000:]) for p, (_, err) in zip((*launched, two_devices), outputs)
            if p.returncode]
  if failed and all("collective" in err.lower() and "not" in err.lower() for _, err in failed):
    pytest.skip(f"this platform cannot run CPU collectives: {failed[0][1][-300:]}")
  assert not failed, failed

  joint, shared = _final_state(tmp_path / "two_processes"), _final_state(tmp_path / "two_devices")
  assert int(joint.step) == 40
  for mine, theirs in zip(jax.tree.leaves(joint), jax.tree.leaves(shared)):
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
  results = read_json(tmp_path / "two_processes" / "results.json")
  reference = read_json(tmp_path / "two_devices" / "results.json")
  assert results["final_test_accuracy"] == reference["final_test_accuracy"]
  assert results["history"] == reference["history"]
  # Process 0 wrote the run's files once; process 1 printed nothing of lotto's.
  assert sorted(os.listdir(tmp_path / "two_processes")) == \
      sorted(os.listdir(tmp_path / "two_devices"))
  assert "lotto" not in outputs[1][0] + outputs[1][1].replace("lotto.main", "")


SLURM_STEP = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-4]", "SLURM_PROCID": "0",
              "SLURM_LOCALID": "0"}


@pytest.mark.parametrize("env, message", [
    ({"LOTTO_NUM_PROCESSES": "2"}, "LOTTO_NUM_PROCESSES is set but LOTTO_PROCESS_ID is not"),
    ({"LOTTO_NUM_PROCESSES": "2", "LOTTO_PROCESS_ID": "2", "LOTTO_COORDINATOR_ADDRESS": "h:1"},
     "LOTTO_PROCESS_ID=2 with LOTTO_NUM_PROCESSES=2; ranks run from 0 to 1"),
    ({"LOTTO_NUM_PROCESSES": "two", "LOTTO_PROCESS_ID": "0"}, "LOTTO_NUM_PROCESSES='two' is not"),
    ({"LOTTO_NUM_PROCESSES": "2", "LOTTO_PROCESS_ID": "0", "LOTTO_COORDINATOR_ADDRESS": "h:1",
      "SLURM_NTASKS": "4", **SLURM_STEP},
     "inconsistent process counts: LOTTO_NUM_PROCESSES=2 but SLURM_NTASKS=4"),
    ({"LOTTO_NUM_PROCESSES": "2", "LOTTO_PROCESS_ID": "1"}, "needs LOTTO_COORDINATOR_ADDRESS"),
])
def test_bad_launches_are_one_line_errors(env, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
    distributed.find_launch(env)


def test_launches_found_in_the_environment():
  assert distributed.find_launch({}) is None
  assert distributed.find_launch({"SLURM_NTASKS": "1", **SLURM_STEP}) is None  # one task
  assert distributed.find_launch({"SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}) is None  # sbatch
  assert distributed.find_launch({"LOTTO_NUM_PROCESSES": "1", "LOTTO_PROCESS_ID": "0"}) is None
  explicit = distributed.find_launch({"LOTTO_NUM_PROCESSES": "3", "LOTTO_PROCESS_ID": "2",
                                      "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
                                      "SLURM_NTASKS": "3", **SLURM_STEP})
  assert explicit == distributed.Launch(3, 2, "10.0.0.1:1234", "LOTTO_NUM_PROCESSES")
  slurm = distributed.find_launch({"SLURM_NTASKS": "4", **SLURM_STEP})
  assert (slurm.num_processes, slurm.process_id, slurm.coordinator) == (4, None, None)
  tpu = distributed.find_launch({"TPU_WORKER_HOSTNAMES": "t0,t1"})
  assert tpu.num_processes == 2
  with pytest.raises(ConfigError, match="unknown distributed 'yes'; valid choices: auto, on, off"):
    distributed.initialize("yes", {})
  with pytest.raises(ConfigError, match="distributed=on but the environment shows no"):
    distributed.initialize("on", {})
  assert distributed.initialize("auto", {}) == 1 and distributed.initialize("off", {}) == 1


@pytest.mark.slow
def test_a_bad_launch_from_the_cli_exits_2_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  process = _lotto(workdir, _env(tmp_path, LOTTO_NUM_PROCESSES="2", LOTTO_PROCESS_ID="5",
                                 LOTTO_COORDINATOR_ADDRESS="127.0.0.1:1"))
  out, err = process.communicate(timeout=TIMEOUT_S)
  assert process.returncode == 2, err[-2000:]
  assert err.strip().splitlines() == [
      "lotto: error: inconsistent launch: LOTTO_PROCESS_ID=5 with LOTTO_NUM_PROCESSES=2; "
      "ranks run from 0 to 1"]
  assert not workdir.exists()
