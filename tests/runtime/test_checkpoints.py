"""A checkpoint write that fails inside orbax (disk full, read-only) is one line from lotto:
none of the library's own reports (absl log records with tracebacks from its writer threads,
asyncio's "exception was never retrieved", tensorstore's "Event loop is closed") reach the
terminal; they go to a log file beside the checkpoints. The half-written step is removed, the
complete ones restore, and once there is space the same write succeeds."""
import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging

from lotto.core.errors import StorageError
from lotto.runtime import checkpoints
from lotto.runtime.checkpoints import Checkpointer
from lotto.runtime.runs import free_space
from lotto.runtime.write_failures import ERROR_LOG, HeldLibraryOutput
from tests.jobs.test_cli import REPO, TEST_CONFIG, run_cli


def _state(seed):
  rng = np.random.default_rng(seed)
  return {"params": {"kernel": jnp.asarray(rng.normal(size=(256, 256)), jnp.float32),
                     "bias": jnp.asarray(rng.normal(size=256), jnp.float32)},
          "step": jnp.asarray(seed, jnp.int32)}


def _equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.fixture
def small_disk(tmp_path):
  """A 2 MB tmpfs (root only; skipped elsewhere): a disk that can really fill up."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                           capture_output=True)
  if mounted.returncode != 0:
    pytest.skip("a size-limited tmpfs needs root and mount(8)")
  yield disk
  subprocess.run(["umount", str(disk)], capture_output=True)


def _fill(disk, leave_kb):
  """Writes a file until the disk is full (ENOSPC), then frees `leave_kb` KB of it: a write
  larger than that starts (in orbax's threads) and fails part way. Returns its path."""
  filler = disk / "filler"
  with open(filler, "wb", buffering=0) as handle:
    try:
      while True:
        handle.write(bytes(4096))
    except OSError as error:
      assert error.errno == errno.ENOSPC
    handle.truncate(handle.tell() - leave_kb * 1024)
  return filler


def test_a_full_disk_inside_tensorstore_is_one_error_and_nothing_on_the_terminal(
    small_disk, capfd, caplog, recwarn):
  checkpointer = Checkpointer(str(small_disk / "checkpoints"), keep=())
  checkpointer.save(10, _state(10), {"history": [1.0]})  # 260 KB
  capfd.readouterr()
  filler = _fill(small_disk, leave_kb=64)  # the disk fills up between two checkpoints
  with pytest.raises(StorageError) as error:
    checkpointer.save(20, _state(20), {"history": [1.0, 2.0]})
  message = str(error.value)
  # Neither orbax's nor tensorstore's nor asyncio's reports: not printed, not logged (under
  # the lotto command absl prints every record on stderr), no warning; no lotto note either.
  assert capfd.readouterr() == ("", "") and caplog.records == [] and len(recwarn) == 0
  log = small_disk / ERROR_LOG
  assert "Traceback" in log.read_text() and message.endswith(
      f"; the full library traceback is in {log}")
  assert "\n" not in message
  assert message.startswith(f"cannot write checkpoint {small_disk / 'checkpoints'}/20: "
                            "No space left on device (")
  assert "free space and re-run the same command to resume from step 10" in message
  # The half-written step is gone; the complete one restores, as saved.
  assert os.listdir(small_disk / "checkpoints") == ["10"] and checkpointer.steps() == [10]
  state, payload = checkpointer.restore(10, _state(0))
  assert _equal(state, _state(10)) and payload == {"history": [1.0]}
  # Space freed: the same write succeeds and replaces the resume point.
  os.remove(filler)
  checkpointer.save(20, _state(20), {"history": [1.0, 2.0]})
  assert checkpointer.steps() == [20]
  state, payload = checkpointer.restore(20, _state(0))
  assert _equal(state, _state(20)) and payload == {"history": [1.0, 2.0]}
  assert capfd.readouterr() == ("", "")
  checkpointer.close()


def test_a_read_only_error_in_orbax_writer_threads_goes_to_the_log_file(tmp_path, capfd, caplog,
                                                                         monkeypatch):
  from orbax.checkpoint._src.path import async_path  # pylint: disable=import-outside-toplevel
  directory = tmp_path / "run" / "checkpoints"
  checkpointer = Checkpointer(str(directory), keep=())
  checkpointer.save(10, _state(10))
  capfd.readouterr()

  async def read_only(path, text):  # what every metadata write inside orbax's threads meets
    raise OSError(errno.EROFS, "Read-only file system", str(path))

  monkeypatch.setattr(async_path, "write_text", read_only)
  with pytest.raises(StorageError) as error:
    checkpointer.save(20, _state(20))
  log = tmp_path / "run" / ERROR_LOG
  assert str(error.value) == (
      f"cannot write checkpoint {directory}/20: Read-only file system "
      f"({free_space(str(directory))}); make {directory} writable and re-run the "
      f"same command to resume from step 10; the full library traceback is in {log}")
  # orbax logged the failure with tracebacks (an absl ERROR from each writer thread): in the
  # log file, not on the terminal (nor logged: absl would print it on stderr).
  assert capfd.readouterr() == ("", "") and caplog.records == []
  text = log.read_text()
  assert text.startswith(f"lotto could not write checkpoint {directory}/20 ")
  assert "OSError: [Errno 30] Read-only file system" in text
  assert "_SignalingThread.run() raised an exception" in text  # orbax's own report
  assert os.listdir(directory) == ["10"]
  monkeypatch.undo()
  checkpointer.save(20, _state(20))
  assert _equal(checkpointer.restore(20, _state(0))[0], _state(20))
  checkpointer.close()


def test_a_failure_orbax_only_logs_is_still_an_error(tmp_path, capfd, caplog, monkeypatch):
  # pylint: disable-next=import-outside-toplevel
  from orbax.checkpoint._src.checkpointers import checkpointer
  directory = tmp_path / "checkpoints"
  saver = Checkpointer(str(directory), keep=())
  saver.save(10, _state(10))

  def logs_and_returns(self, path, *args, **kwargs):
    # What orbax does when a writer thread fails at the wrong moment: it logs the error and
    # skips finalizing the step, and the save returns.
    (directory / "20.orbax-checkpoint-tmp").mkdir()
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
      absl_logging.exception("Checkpointer failed: skipping finalization")

  monkeypatch.setattr(checkpointer.Checkpointer, "save", logs_and_returns)
  with pytest.raises(StorageError, match=r"checkpoints/20: No space left on device \(.*resume "
                                         r"from step 10; the full library traceback is in"):
    saver.save(20, _state(20))
  assert capfd.readouterr() == ("", "") and caplog.records == []
  assert os.listdir(directory) == ["10"] and saver.steps() == [10]
  text = (tmp_path / ERROR_LOG).read_text()
  assert "RuntimeError: orbax did not finish writing step 20" in text
  assert "Checkpointer failed: skipping finalization" in text
  saver.close()


def test_writer_threads_still_running_after_the_failure_are_waited_for():
  class WriterThread(threading.Thread):
    """Like orbax's writer threads: join() raises the error the thread ended with."""

    def run(self):
      time.sleep(0.3)  # its own write fails later than the one orbax raised
      self.error = OSError(errno.ENOSPC, "No space left on device")

    def join(self, timeout=None):
      super().join(timeout)
      raise self.error

  before = set(threading.enumerate())
  writer = WriterThread()
  writer.start()
  with HeldLibraryOutput() as library:
    library.wait_for_threads(before)  # neither raises nor returns before the thread ended
  assert not writer.is_alive()


def test_no_checkpoint_yet_says_the_run_starts_again(tmp_path, monkeypatch):
  from orbax.checkpoint._src.path import async_path  # pylint: disable=import-outside-toplevel

  async def full(path, text):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))

  monkeypatch.setattr(async_path, "write_text", full)
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), keep=())
  with pytest.raises(StorageError, match=r"No space left on device \(.*\); free space and re-run "
                                         r"the same command \(no checkpoint was complete yet: "
                                         r"it starts again\)"):
    checkpointer.save(20, _state(20))
  assert os.listdir(tmp_path / "checkpoints") == []


def test_what_the_libraries_log_during_a_successful_write_is_still_logged(tmp_path, caplog,
                                                                           monkeypatch):
  from orbax.checkpoint._src.path import async_path  # pylint: disable=import-outside-toplevel
  real_write_text = async_path.write_text
  hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook, warnings.showwarning)
  calls = []

  async def warning_write_text(path, text):
    calls.append(path)
    absl_logging.warning("orbax says: slow disk")  # a warning from inside orbax's write
    return await real_write_text(path, text)

  monkeypatch.setattr(async_path, "write_text", warning_write_text)
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), keep=())
  checkpointer.save(10, _state(10))
  # Held back during the write, then handed to the handlers it would have reached (pytest's
  # here; absl's on stderr under the lotto command).
  assert calls and [r.getMessage() for r in caplog.records] == ["orbax says: slow disk"] * len(
      calls)
  assert (sys.excepthook, threading.excepthook, sys.unraisablehook,
          warnings.showwarning) == hooks  # put back
  assert checkpointer.steps() == [10]
  checkpointer.close()


_FILL_BEFORE_STEP_40 = textwrap.dedent("""
  import errno, os
  from lotto.runtime import checkpoints
  real_save = checkpoints.Checkpointer.save

  def save(self, step, *args, **kwargs):
    if step == 40:  # another job fills the disk but for 32 KB, less than a checkpoint
      with open(os.environ["FILLER"], "wb", buffering=0) as handle:
        try:
          while True:
            handle.write(bytes(4096))
        except OSError as error:
          assert error.errno == errno.ENOSPC
        handle.truncate(handle.tell() - 32 * 1024)
    return real_save(self, step, *args, **kwargs)

  checkpoints.Checkpointer.save = save
  from lotto.main import run
  run()
""")


@pytest.mark.slow
def test_the_command_on_a_disk_that_fills_up_prints_one_line_and_the_rerun_resumes(
    tmp_path, small_disk):
  straight = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'straight'}")
  assert straight.returncode == 0, straight.stderr[-2000:]
  workdir, filler = small_disk / "run", small_disk / "filler"
  result = subprocess.run(
      [sys.executable, "-c", _FILL_BEFORE_STEP_40, f"--config={TEST_CONFIG}",
       f"--workdir={workdir}"], env={**os.environ, "FILLER": str(filler)},
      capture_output=True, text=True, timeout=300, cwd=REPO)
  # One line on the terminal (before: 40 to 450 lines of orbax, asyncio and tensorstore
  # tracebacks, depending on where the disk filled up); they are in the log it names.
  assert result.returncode == 2 and result.stdout == "", result.stderr[-3000:]
  assert len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
  log = workdir / ERROR_LOG
  assert result.stderr.startswith(f"lotto: error: cannot write checkpoint {workdir}/checkpoints"
                                  "/40: No space left on device (")
  assert result.stderr.endswith("free space and re-run the same command to resume from step 20; "
                                f"the full library traceback is in {log}\n")
  assert "No space left on device" in log.read_text()
  assert os.listdir(workdir / "checkpoints") == ["20"]  # the half-written step removed
  # Space freed: the same command resumes from step 20 and ends with the same numbers.
  os.remove(filler)
  resumed = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}")
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  final = json.loads((workdir / "results.json").read_text())
  expected = json.loads((tmp_path / "straight" / "results.json").read_text())
  assert final["history"] == expected["history"]
  assert final["final_test_accuracy"] == expected["final_test_accuracy"]
