"""Workdirs: one process at a time (a lock), an identity that survives a lost config.json,
and one-line errors for a workdir or cache that cannot be used."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import lotto
from lotto.core.errors import ConfigError, Diverged, StorageError
from lotto.jobs.experiment import create_experiment
from lotto.runtime import files, runs
from tests.jobs.test_cli import TEST_CONFIG, run_cli


def _lock(workdir, pid, host=None):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))


def test_a_workdir_in_use_by_a_live_process_is_refused(tiny_config, tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    _lock(tmp_path / "run", holder.pid)
    with pytest.raises(ConfigError, match=f"workdir .* is in use by process {holder.pid} on "
                                          f"host {socket.gethostname()}"):
      lotto.run_train(tiny_config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "results.json").exists()
  finally:
    holder.kill()
    holder.wait()
  # Its process is gone: the lock is stale, taken over, and released at the end.
  lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert (tmp_path / "run" / "results.json").exists()
  assert not (tmp_path / "run" / "lock").exists()


def test_a_lock_from_another_host_is_refused_and_a_failed_job_releases_its_own(tiny_config,
                                                                               tmp_path):
  _lock(tmp_path / "other", 1, host="elsewhere.example")
  with pytest.raises(ConfigError, match="in use by process 1 on host elsewhere.example"):
    lotto.run_train(tiny_config, str(tmp_path / "other"))
  tiny_config.optimizer.name, tiny_config.optimizer.learning_rate = "sgd", 1e8
  with pytest.raises(Diverged):
    lotto.run_train(tiny_config, str(tmp_path / "diverged"))
  assert not (tmp_path / "diverged" / "lock").exists()


def test_the_run_identity_survives_a_lost_config_json(tiny_config, tmp_path):
  workdir = tmp_path / "run"
  first = lotto.run_train(tiny_config, str(workdir))
  os.remove(workdir / runs.CONFIG_FILE)
  tiny_config.seed = 1
  with pytest.raises(ConfigError, match=r"holds a run of another config \(hash .*; its "
                                        r"config.json is missing\)"):
    lotto.run_train(tiny_config, str(workdir))
  tiny_config.seed = 0
  again = lotto.run_train(tiny_config, str(workdir))  # the same config: resumed, file restored
  assert again["history"] == first["history"] and (workdir / runs.CONFIG_FILE).exists()
  for name in (runs.CONFIG_FILE, runs.RUN_ID_FILE):
    os.remove(workdir / name)
  with pytest.raises(ConfigError, match="holds run files but neither config.json nor "
                                        "run_id.json"):
    lotto.run_train(tiny_config, str(workdir))


@pytest.mark.slow
def test_a_workdir_that_is_a_file_and_an_unusable_cache_are_one_line_errors(tmp_path):
  (tmp_path / "file").write_text("not a directory")
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'file'}")
  assert result.returncode == 2
  assert result.stderr.strip() == (f"lotto: error: workdir {tmp_path / 'file'} is a file, not "
                                    "a directory; use a new --workdir")
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'run'}",
                   f"--config.data.cache_dir={tmp_path / 'file' / 'cache'}")
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert f"data.cache_dir {tmp_path / 'file' / 'cache'} cannot hold the MNIST-1D cache" \
      in result.stderr
  assert not (tmp_path / "run").exists()


def test_a_disk_full_checkpoint_write_is_one_line_and_the_rerun_resumes(tiny_config, tmp_path,
                                                                       monkeypatch, capfd):
  # (tests/runtime/test_checkpoints.py fills a real disk inside orbax's writer threads.)
  import errno  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  straight = lotto.run_train(tiny_config, str(tmp_path / "straight"))
  capfd.readouterr()
  real_save = ocp.CheckpointManager.save

  def full_disk_at_40(manager, step, *args, **kwargs):
    if step == 40:  # what an interrupted orbax write leaves, then the error
      (tmp_path / "run" / "checkpoints" / "40.orbax-checkpoint-tmp-1").mkdir(parents=True)
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(manager, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk_at_40)
  with pytest.raises(StorageError) as error:
    lotto.run_train(tiny_config, str(tmp_path / "run"))
  message = str(error.value)
  assert "\n" not in message and "No space left on device" in message
  assert f"cannot write checkpoint {tmp_path / 'run' / 'checkpoints'}/40" in message
  assert "GB free on" in message and "resume from step 20" in message
  assert message.endswith(f"the full library traceback is in {tmp_path / 'run'}/"
                          "checkpoint_errors.log")
  assert capfd.readouterr() == ("", "")  # the error is the only line
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["20"]  # complete ones kept
  monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
  # Space freed: the same command resumes from step 20 and ends with the same numbers.
  resumed = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert resumed["history"] == straight["history"]
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]


def test_a_leftover_unfinished_checkpoint_write_is_removed(tiny_config, tmp_path, capsys):
  lotto.run_train(tiny_config, str(tmp_path / "run"))
  leftover = tmp_path / "run" / "checkpoints" / "30.orbax-checkpoint-tmp-99"
  (leftover / "state").mkdir(parents=True)
  lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert not leftover.exists() and "removing an unfinished checkpoint write" in \
      capsys.readouterr().out


def test_a_finished_run_in_a_read_only_workdir_needs_no_write(tiny_config, tmp_path,
                                                              monkeypatch, capsys):
  first = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert runs.writable(str(tmp_path / "run"))
  # Read-only (as root the permission bits would not stop us: simulated), and any write
  # would fail the test.
  monkeypatch.setattr(runs, "writable", lambda directory: False)

  def no_writes(*args, **kwargs):
    raise AssertionError("a finished read-only run wrote")

  monkeypatch.setattr(runs, "_write_atomically", no_writes)
  monkeypatch.setattr(runs.locks, "acquire", no_writes)
  again = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert again == json.loads((tmp_path / "run" / "results.json").read_text())
  assert again["final_test_accuracy"] == first["final_test_accuracy"]
  assert "is read-only and holds this finished run" in capsys.readouterr().out
  tiny_config.seed = 1  # another config is still refused, in one line
  with pytest.raises(ConfigError, match="holds a run with a different config"):
    lotto.run_train(tiny_config, str(tmp_path / "run"))


def test_writable_is_false_where_no_file_can_be_created(tmp_path):
  (tmp_path / "file").write_text("x")
  assert not runs.writable(str(tmp_path / "file"))
  assert runs.writable(str(tmp_path))


def test_a_workdir_from_before_the_new_fields_resumes(tiny_config, tmp_path):
  import flax  # pylint: disable=import-outside-toplevel
  from lotto.runtime.checkpoints import Checkpointer  # pylint: disable=import-outside-toplevel

  class OldTrainState(flax.struct.PyTreeNode):  # the TrainState before `mask_state`
    step: object
    params: object
    masks: object
    opt_state: object
    batch_stats: object
    rng: object

  first = lotto.run_train(tiny_config, str(tmp_path / "run"))
  # Rewrite the run as the previous version left it: no new config fields, no run_id.json,
  # a checkpoint of the old state (resumed from step 20).
  config_path = tmp_path / "run" / runs.CONFIG_FILE
  old_config = json.loads(config_path.read_text())
  for section, key in (("prune", "grasp_params"), ("prune", "count_rule"),
                       ("prune", "synflow_abs_batch_stats"), ("imp", "open_lth_compat")):
    del old_config[section][key]
  del old_config["topology"]  # a whole section added since
  config_path.write_text(json.dumps(old_config))
  os.remove(tmp_path / "run" / runs.RUN_ID_FILE)
  os.remove(tmp_path / "run" / "results.json")
  exp = create_experiment(tiny_config)
  checkpointer = Checkpointer(str(tmp_path / "run" / "checkpoints"))
  new_state, payload = checkpointer.restore(40, exp.init_state())
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.rmtree(tmp_path / "run" / "checkpoints")
  checkpointer = Checkpointer(str(tmp_path / "run" / "checkpoints"))
  fields = {name: getattr(new_state, name) for name in
            ("step", "params", "masks", "opt_state", "batch_stats", "rng")}
  checkpointer.save(40, OldTrainState(**fields), payload)
  checkpointer.close()
  # GraSP then differentiated every param: the old run's identity says so.
  with pytest.raises(ConfigError, match="prune.grasp_params: saved 'all', now 'weights'"):
    lotto.run_train(tiny_config, str(tmp_path / "run"))
  tiny_config.prune.grasp_params = "all"
  again = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert again["history"] == first["history"]
  assert again["final_test_accuracy"] == first["final_test_accuracy"]


@pytest.fixture
def read_only_view(tmp_path):
  """`make(directory)` -> a read-only bind mount of it (root only; skipped elsewhere)."""
  mounts = []

  def make(directory):
    view = tmp_path / f"read_only_{len(mounts)}"
    view.mkdir()
    for command in (["mount", "--bind", str(directory), str(view)],
                    ["mount", "-o", "remount,ro,bind", str(view)]):
      if subprocess.run(command, capture_output=True).returncode != 0:
        if command[1] == "-o":
          subprocess.run(["umount", str(view)], capture_output=True)
        pytest.skip("read-only bind mounts need root and mount(8)")
    mounts.append(view)
    return view

  yield make
  for view in reversed(mounts):
    subprocess.run(["umount", str(view)], capture_output=True)


@pytest.mark.slow
def test_a_really_read_only_workdir(tiny_config, tmp_path, read_only_view):
  lotto.run_train(tiny_config, str(tmp_path / "run"))
  finished = read_only_view(tmp_path / "run")
  assert not runs.writable(str(finished))
  before = {p.name: p.stat().st_mtime for p in finished.iterdir()}
  # Re-running the finished run needs no write access: its results as they are.
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={finished}")
  assert result.returncode == 0, result.stderr[-1500:]
  assert "is read-only and holds this finished run" in result.stdout
  # `lotto report` on a read-only IMP run cannot write its report: one line, exit 2.
  (tmp_path / "imp").mkdir()
  levels = [{"level": 0, "density": 1.0, "final_test_accuracy": 0.6,
             "early_stop_test_accuracy": 0.6, "early_stop_step": 10}]
  (tmp_path / "imp" / "results.json").write_text(json.dumps(
      {"mode": "imp", "fraction": 0.2, "levels": levels, "branches": []}))
  imp_view = read_only_view(tmp_path / "imp")
  report = run_cli("report", f"--workdir={imp_view}")
  assert report.returncode == 0, report.stderr
  assert report.stdout.strip().splitlines()[-1] == (
      f"report files (tables, plots) not written: cannot write {imp_view}/imp_report.txt: "
      f"Read-only file system; make {imp_view} writable and re-run the same command")
  # A run that is not finished cannot start there: one line, exit 2, nothing changed.
  (tmp_path / "empty").mkdir()
  empty = read_only_view(tmp_path / "empty")
  started = run_cli(f"--config={TEST_CONFIG}", f"--workdir={empty}")
  assert started.returncode == 2 and len(started.stderr.strip().splitlines()) == 1
  assert f"cannot write the workdir {empty}: Read-only file system" in started.stderr
  assert {p.name: p.stat().st_mtime for p in finished.iterdir()} == before
  assert list(empty.iterdir()) == []


def test_workdir_files_go_through_epath_helpers(tmp_path):
  assert files.is_local(tmp_path) and not files.is_local("gs://bucket/run")
  assert files.absolute("gs://bucket/run") == "gs://bucket/run"
  assert files.absolute("run") == os.path.join(os.getcwd(), "run")
  for name in ("a/b", "a-c", "a/b/c"):
    files.makedirs(tmp_path / name)
  (tmp_path / "a" / "results.json").write_text("{}")
  assert sorted(files.walk(tmp_path)) == sorted((root, sorted(dirs), sorted(names))
                                                for root, dirs, names in os.walk(tmp_path))
  assert files.listdir(tmp_path) == ["a", "a-c"]
  masks = {"dense": {"kernel": np.array([[True, False], [False, True]]), "bias": np.ones(2, bool)}}
  runs.write_masks(str(tmp_path / "m.npz"), masks)
  loaded = runs.read_masks(str(tmp_path / "m.npz"), masks)
  assert jax.tree.map(lambda a, b: bool((np.asarray(a) == b).all()), loaded, masks) == {
      "dense": {"kernel": True, "bias": True}}
  assert files.listdir(tmp_path) == ["a", "a-c", "m.npz"]  # no temporary file left
  files.rmtree(tmp_path / "a")
  files.remove(tmp_path / "gone")  # missing: not an error
  assert files.listdir(tmp_path) == ["a-c", "m.npz"]
