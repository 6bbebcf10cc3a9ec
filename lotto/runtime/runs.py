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
import hashlib
import json
import os
from typing import Any, Iterator

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError, Diverged
from lotto.core.types import Masks, Prunable
from lotto.runtime.devices import is_main_process

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"

# Fields that do not change what a run computes: they may differ on resume.
# on_nan only decides whether a diverging run stops: a stopped run may be resumed
# with on_nan=continue.
_COSMETIC = (("train", "verbose"), ("train", "tensorboard"), ("train", "on_nan"))


def _comparable(config: dict) -> dict:
  config = json.loads(json.dumps(config))
  for section, key in _COSMETIC:
    config.get(section, {}).pop(key, None)
  return config


def config_hash(run_config: dict) -> str:
  """A short hash of the run's config as JSON data (ignoring cosmetic fields)."""
  text = json.dumps(_comparable(run_config), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_json(path: str, payload: Any) -> None:
  """Writes JSON atomically (temp file + rename): readers never see half a file.

  Only the main process writes (a no-op elsewhere).
  """
  if not is_main_process():
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as handle:
    json.dump(payload, handle, indent=2, sort_keys=True)
    handle.write("\n")
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  """The JSON data in `path`."""
  with open(path) as handle:
    return json.load(handle)


def check_workdir(run_config: dict, workdir: str) -> None:
  """Refuses a workdir that holds a run of a different config (writes nothing).

  Raises:
    ConfigError: naming the first differing fields.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = _comparable(read_json(path))
  wanted = _comparable(run_config)
  if saved != wanted:
    diffs = _differences(saved, wanted)
    raise ConfigError(f"workdir {workdir} holds a run with a different config ({'; '.join(diffs[:3])}"
                      f"{'; ...' if len(diffs) > 3 else ''}); use a new --workdir or the same config")


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
  """Creates the workdir and saves the resolved config (after `check_workdir`)."""
  check_workdir(run_config, workdir)
  if is_main_process():
    os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    write_json(path, run_config)


def write_results(workdir: str, results: dict) -> str:
  """Writes `results.json` at the workdir root; returns its path."""
  path = os.path.join(workdir, RESULTS_FILE)
  write_json(path, results)
  return path


def write_text(path: str, text: str) -> None:
  """Writes a text file (a report) on the main process, atomically."""
  if not is_main_process():
    return
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as handle:
    handle.write(text)
  os.replace(tmp, path)


def write_masks(path: str, masks: Masks) -> None:
  """Saves masks (`core.masks.save`, atomic .npz) on the main process."""
  if is_main_process():
    masks_lib.save(path, masks)


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
    results = read_json(path) if os.path.exists(path) else dict(header)
    results.update(diverged=True, diverged_at_step=error.step, diverged_in=error.directory,
                   last_finite_checkpoint=error.last_checkpoint)
    write_json(path, results)
    raise
