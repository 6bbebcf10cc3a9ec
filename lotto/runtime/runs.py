"""Run directories: the saved config, resume checks and results files.

Everything here takes the run's config as plain JSON data (the jobs' config
edge converts the ConfigDict once); only the main process writes.

A workdir holds one run: `config.json` (the resolved config), `results.json`
(machine-readable results, rewritten atomically), and the run's units
(`checkpoints/`, `level_<L>/`, ...). Re-running a command on the same workdir
resumes it; a workdir holding a *different* config is refused, so no result is
ever overwritten by another experiment's.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import uuid
import zipfile
from typing import Any, Iterator

import jax

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError, Diverged, StorageError
from lotto.core.types import Masks, Prunable
from lotto.runtime import files, locks
from lotto.runtime.devices import is_main_process, note

from lotto.runtime.identity import (CONFIG_FILE, RESULTS_FILE, RUN_FILES, RUN_ID_FILE,
                                    comparable, config_hash, with_legacy)


def _write_atomically(path: str, write) -> None:
  """Runs `write(tmp_path)`, then renames: readers never see half a file.

  Raises:
    StorageError: the write failed (disk full, read-only): one line with the
      free space; the temporary file is removed and `path` is unchanged.
  """
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    files.makedirs(os.path.dirname(files.absolute(path)))
    write(tmp)
    files.replace(tmp, path)
  except OSError as error:
    with contextlib.suppress(OSError):
      files.remove(tmp)
    raise StorageError(write_error_message(path, error)) from None


# A write refused by permissions or a read-only file system: freeing space would not help.
NOT_WRITABLE_ERRORS = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_error_message(path: str, error: OSError) -> str:
  """The one line for a failed write of `path`: that its directory cannot be written (a
  read-only file system, no permission), or else the free space and the advice to free it."""
  reason = error.strerror or error
  if error.errno in NOT_WRITABLE_ERRORS:
    return (f"cannot write {path}: {reason}; make {os.path.dirname(path) or '.'} writable and "
            "re-run the same command")
  return (f"cannot write {path}: {reason} ({free_space(path)}); free space and re-run the same "
          "command")


def finite_json(payload: Any) -> Any:
  """`payload` with every non-finite float (NaN, +-inf: a diverged run's losses) as None, so
  it is valid JSON (null); everything else as it is."""
  if isinstance(payload, float):
    return payload if math.isfinite(payload) else None
  if isinstance(payload, dict):
    return {key: finite_json(value) for key, value in payload.items()}
  if isinstance(payload, (list, tuple)):
    return [finite_json(value) for value in payload]
  return payload


def write_json(path: str, payload: Any) -> None:
  """Writes JSON atomically (temp file + rename), on the main process only. Non-finite
  numbers are written as null (`finite_json`): the file is always valid JSON.

  Raises:
    StorageError: the write failed.
  """
  text = json.dumps(finite_json(payload), indent=2, sort_keys=True, allow_nan=False)
  write_text(path, text + "\n")


def read_json(path: str) -> Any:
  """The JSON data in `path` (raises on a missing or damaged file; see `read_intact`)."""
  with files.open_file(path) as handle:
    return json.load(handle)


def read_intact(path: str, required: tuple[str, ...] = ()) -> dict | None:
  """A unit's results: the JSON object in `path`, or None if it must be recomputed.

  None when the file is missing, or damaged: truncated or garbled JSON, not an
  object, or lacking a `required` key (an empty `{}`). A damaged file is
  reported (one line) and left for the unit to overwrite: units are
  deterministic, so recomputing gives the numbers the file held.
  """
  if not files.exists(path):
    return None
  try:
    data = read_json(path)
  except (OSError, UnicodeDecodeError, ValueError) as error:
    note(f"damaged {path} ({type(error).__name__}): recomputing it")
    return None
  if not isinstance(data, dict) or any(key not in data for key in required):
    note(f"damaged {path} (incomplete): recomputing it")
    return None
  return data


def read_masks(path: str, like: Masks) -> Masks:
  """The masks saved at `path` (`core.masks.save`) in the treedef of `like`."""
  with files.open_file(path, "rb") as handle:
    return masks_lib.load(io.BytesIO(handle.read()), like)


def read_masks_intact(path: str, like: Masks) -> Masks | None:
  """The masks saved at `path`, or None if missing or damaged (reported, to recompute)."""
  if not files.exists(path):
    return None
  try:
    masks = read_masks(path, like)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
    note(f"damaged {path} ({type(error).__name__}): recomputing it")
    return None
  shapes_match = all(m.shape == l.shape and m.dtype == bool
                     for m, l in zip(jax.tree.leaves(masks), jax.tree.leaves(like)))
  if not shapes_match:
    note(f"damaged {path} (wrong shapes): recomputing it")
    return None
  return masks


def check_workdir(run_config: dict, workdir: str) -> None:
  """Refuses a workdir that holds a run of a different config (writes nothing).

  The run's identity is in two files, config.json and run_id.json (its hash),
  so it survives the loss of either; a workdir with run files but neither is
  refused rather than mixed with a new run. Config fields added after a
  workdir was made take the value that reproduces what the run did then, and
  values renamed since are compared in their new spelling (`runtime.identity`),
  so older runs resume.

  Raises:
    ConfigError: another config's run (naming the first differing fields), a
      workdir that is a file, or run files of unknown identity.
  """
  if files.exists(workdir) and not files.is_dir(workdir):
    raise ConfigError(f"workdir {workdir} is a file, not a directory; use a new --workdir")
  path = os.path.join(workdir, CONFIG_FILE)
  id_path = os.path.join(workdir, RUN_ID_FILE)
  wanted = comparable(run_config)
  saved_config = read_intact(path) if files.exists(path) else None
  if saved_config is not None:
    saved = comparable(with_legacy(saved_config, run_config))
    if saved != wanted:
      diffs = _differences(saved, wanted)
      raise ConfigError(f"workdir {workdir} holds a run with a different config "
                        f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); use a "
                        "new --workdir or the same config")
  elif read_intact(id_path, ("config_hash",)) is not None:
    saved_hash = read_json(id_path)["config_hash"]
    if saved_hash != config_hash(run_config):
      raise ConfigError(f"workdir {workdir} holds a run of another config (hash {saved_hash}, "
                        f"now {config_hash(run_config)}; its {CONFIG_FILE} is missing); use a "
                        "new --workdir or that run's config")
  elif any(files.exists(os.path.join(workdir, name)) for name in RUN_FILES):
    # (config.json and run_id.json both missing or damaged)
    raise ConfigError(f"workdir {workdir} holds run files but neither {CONFIG_FILE} nor "
                      f"{RUN_ID_FILE}: its config is unknown, so nothing is mixed into it; use a "
                      "new --workdir")


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
  out = []
  for key in sorted(set(saved) | set(wanted)):
    a, b = saved.get(key, "<missing>"), wanted.get(key, "<missing>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
  return out


def prepare_workdir(run_config: dict, workdir: str) -> None:
  """Checks the workdir (`check_workdir`), takes its lock, and saves the run's identity.

  Writes config.json and run_id.json when missing (either restores the other).

  Raises:
    ConfigError: as `check_workdir`; the workdir is locked by another live
      process; or it cannot be created or written (naming why).
  """
  check_workdir(run_config, workdir)
  try:
    if is_main_process():
      files.makedirs(workdir)
    locks.acquire(workdir)
    _write_identity(run_config, workdir)
  except OSError as error:
    raise ConfigError(f"cannot write the workdir {workdir}: {error.strerror or error}") from None


def claim_identity(run_config: dict, workdir: str) -> None:
  """`prepare_workdir` without the lock: for a sweep whose cells run in separate processes
  at once (`lotto --cell=i`), each cell claims the sweep directory for the sweep's config
  (identical atomic writes from several processes are harmless) and locks only its own.

  Raises:
    ConfigError: as `check_workdir`, or the workdir cannot be written.
  """
  check_workdir(run_config, workdir)
  try:
    if is_main_process():
      files.makedirs(workdir)
    _write_identity(run_config, workdir)
  except OSError as error:
    raise ConfigError(f"cannot write the workdir {workdir}: {error.strerror or error}") from None


def _write_identity(run_config: dict, workdir: str) -> None:
  """config.json and run_id.json, each written when missing (either restores the other)."""
  for name, payload in ((CONFIG_FILE, run_config),
                        (RUN_ID_FILE, {"config_hash": config_hash(run_config)})):
    path = os.path.join(workdir, name)
    if not files.exists(path) or _quietly_damaged(path):
      write_json(path, payload)


def writable(directory: str) -> bool:
  """Whether a file can be created in `directory` (tried, then removed)."""
  path = os.path.join(directory, f".lotto-write-check-{uuid.uuid4().hex}")
  try:
    with files.open_file(path, "w"):
      pass
  except OSError:
    return False
  files.remove(path)
  return True


def finished_read_only(workdir: str, run_config: dict) -> dict | None:
  """A finished run's results when its workdir cannot be written, else None.

  Re-running a finished run needs no write access: its results.json (this
  config's, complete, not diverged) is the answer. A writable workdir takes
  the normal path (damaged unit files are recomputed there).

  Raises:
    ConfigError: the workdir holds another config's run.
  """
  if not files.is_dir(workdir) or writable(workdir):
    return None
  check_workdir(run_config, workdir)
  results = read_intact(os.path.join(workdir, RESULTS_FILE), ("config_hash",))
  if (results is None or results["config_hash"] != config_hash(run_config) or
      results.get("complete", True) is not True or results.get("diverged")):
    return None
  return results


def _quietly_damaged(path: str) -> bool:
  try:
    return not isinstance(read_json(path), dict)
  except (OSError, UnicodeDecodeError, ValueError):
    return True


def write_results(workdir: str, results: dict) -> str:
  """Writes `results.json` at the workdir root; returns its path."""
  path = os.path.join(workdir, RESULTS_FILE)
  write_json(path, results)
  return path


def write_text(path: str, text: str) -> None:
  """Writes a text file (a report) on the main process, atomically."""
  write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes) -> None:
  """Writes a binary file (an exported model) on the main process, atomically.

  Raises:
    StorageError: the write failed.
  """
  if not is_main_process():
    return

  def write(tmp: str) -> None:
    with files.open_file(tmp, "wb") as handle:
      handle.write(data)

  _write_atomically(path, write)


def write_masks(path: str, masks: Masks) -> None:
  """Saves masks (`core.masks.save`, an .npz) atomically on the main process.

  Other processes return before reading the masks: a mask spread over several
  processes cannot be read whole on any but through the collective save.
  """
  if not is_main_process():
    return
  buffer = io.BytesIO()
  masks_lib.save(buffer, masks)
  write_bytes(path, buffer.getvalue())


LAYER_REPORT_FILE = "layer_report.txt"


def write_layer_report(directory: str, masks: Masks, prunable: Prunable) -> tuple[list[dict], str]:
  """Writes `directory/layer_report.txt`; returns (the `layer_report` rows, the text)."""
  rows = masks_lib.layer_report(masks, prunable)
  text = masks_lib.format_layer_report(rows)
  write_text(os.path.join(directory, LAYER_REPORT_FILE), text + "\n")
  return rows, text


@contextlib.contextmanager
def recording_divergence(workdir: str, header: dict) -> Iterator[None]:
  """Marks the run's results.json `"diverged": true` (with the step) if training diverges.

  The results written so far (an IMP run's finished levels) stay; without
  any, `header` starts the file. The `Diverged` error propagates (exit 3).
  """
  try:
    yield
  except Diverged as error:
    path = os.path.join(workdir, RESULTS_FILE)
    results = read_json(path) if files.exists(path) else dict(header)
    results.update(diverged=True, diverged_at_step=error.step, diverged_in=error.directory,
                   last_finite_checkpoint=error.last_checkpoint)
    write_json(path, results)
    raise


def free_space(path: str) -> str:
  """"12.3 GB free on <path>" for the nearest existing ancestor of `path` (local paths);
  below 1 GB in MB ("0.4 MB free on ..."), so a nearly full disk does not read "0.0 GB"."""
  if not files.is_local(path):
    return "free space unknown on a bucket"
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  try:
    free = shutil.disk_usage(path or '/').free
  except OSError:
    return "free space unknown"
  amount = f"{free / 1e9:.1f} GB" if free >= 1e9 else f"{free / 1e6:.1f} MB"
  return f"{amount} free on {path or '/'}"
