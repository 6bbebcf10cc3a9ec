"""Runs a report cannot tabulate as they are: diverged runs and damaged results files.

A run whose loss stopped being finite (`train.on_nan=stop`) holds a results.json of its
header and where it diverged (`runs.recording_divergence`: the step, the directory, the
last finite checkpoint), plus the levels an IMP run finished before; a run that trained on
(`on_nan=continue`) holds its results and `"diverged": true`. Each gets one line saying where
it diverged, beside the tables of its healthy neighbours. A results.json that is not a JSON
object (truncated, garbled) is named in one line; an IMP run or a stability study is then
rebuilt from its units' own results files (`level_<L>/`, `k_<k>/`).
"""
from __future__ import annotations

import dataclasses
import os
import re

from lotto.runtime import files, runs


@dataclasses.dataclass(frozen=True)
class Damaged:
  """A results.json that is not a JSON object: its directory and why."""
  path: str
  reason: str

  @property
  def file(self) -> str:
    return os.path.join(self.path, runs.RESULTS_FILE)


def read_results(path: str) -> dict | str:
  """The JSON object in the results file `path`, or why it is damaged (a short reason)."""
  try:
    data = runs.read_json(path)
  except (OSError, UnicodeDecodeError, ValueError) as error:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
  return data if isinstance(data, dict) else f"not a JSON object but {type(data).__name__}"


def scan(workdir: str) -> tuple[list[dict], list[Damaged]]:
  """Every results.json under `workdir` (the root included), sorted by path: the readable
  ones (each with its directory as "path") and the damaged ones."""
  found, damaged = [], []
  for root, _, names in sorted(files.walk(workdir)):
    if runs.RESULTS_FILE in names:
      result = read_results(os.path.join(root, runs.RESULTS_FILE))
      if isinstance(result, dict):
        found.append({**result, "path": root})
      else:
        damaged.append(Damaged(root, result))
  return found, damaged


def run_config(directory: str) -> dict | None:
  """The config.json of the run in `directory`, or None (missing or unreadable)."""
  path = os.path.join(directory, runs.CONFIG_FILE)
  config = read_results(path) if files.exists(path) else None
  return config if isinstance(config, dict) else None


def label(path: str, workdir: str) -> str:
  """`path` relative to the report's `workdir` (the workdir itself at its root)."""
  relative = os.path.relpath(path, workdir)
  return path if relative == "." else relative


def span(numbers: list[int]) -> str:
  """"0-3" for consecutive numbers, else "0, 2, 5"."""
  numbers = sorted(numbers)
  if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
    return f"{numbers[0]}-{numbers[-1]}"
  return ", ".join(str(n) for n in numbers)


_UNITS = (("level_", "level "), ("k_", "rewind step "), ("seed_", "seed "))
_CONTAINERS = {"branches": "branch ", "cells": "cell "}


def where(result: dict) -> str | None:
  """Where in the run it diverged ("level 3, branch reinit", "rewind step 100, dense"), or
  None for the run's own training."""
  directory = result.get("diverged_in")
  if not directory:  # trained on: an IMP run's records say which levels and branches
    units = [f"level {r['level']}" for r in result.get("levels", []) if r.get("diverged")]
    units += [f"level {r['level']} branch {r['branch']}" for r in result.get("branches", [])
              if r.get("diverged")]
    return ", ".join(units) or None
  relative = _inside(directory, result["path"])
  if relative is None:
    return directory
  if relative == ".":
    return None
  parts, prefix = [], ""
  for part in relative.split(os.sep):
    if part in _CONTAINERS:
      prefix = _CONTAINERS[part]
      continue
    unit = [name + part[len(start):] for start, name in _UNITS
            if re.fullmatch(re.escape(start) + r"-?\d+", part)]
    parts.append(prefix + part if prefix else unit[0] if unit else f"{part}/")
    prefix = ""
  return ", ".join(parts)


def _inside(directory: str, run: str) -> str | None:
  """`directory` relative to the run's directory `run`, also when the run was moved since
  (its part that exists under `run`, or "." when it names the run itself); None if neither."""
  relative = os.path.relpath(directory, run)
  if not relative.startswith(".."):
    return relative
  parts = os.path.normpath(directory).split(os.sep)
  if parts[-1] == os.path.basename(os.path.normpath(run)):
    return "."
  for start in range(1, len(parts)):
    if files.is_dir(os.path.join(run, *parts[start:])):
      return os.path.join(*parts[start:])
  return None


def stopped(result: dict) -> bool:
  """Whether the run stopped at a divergence (`runs.recording_divergence` marks it)."""
  return bool(result.get("diverged")) and "diverged_in" in result


def diverged_line(result: dict, workdir: str, shown: bool) -> str:
  """One line for a run that diverged: where, and what of it the table shows."""
  place = where(result)
  head = (f"{result.get('mode', 'a')} run {label(result['path'], workdir)}: diverged "
          f"(non-finite loss by step {result.get('diverged_at_step', '?')}"
          f"{f', in {place}' if place else ''})")
  if not stopped(result):
    return f"{head} and trained on (train.on_nan=continue); non-finite numbers show as '-'"
  checkpoint = result.get("last_finite_checkpoint")
  kept = f"last finite checkpoint: step {checkpoint}" if checkpoint is not None else (
      "no finite checkpoint")
  return (f"{head} and stopped ({kept}); "
          + ("what it finished before is in the table" if shown else "not in the table"))


def unreported_line(result: dict, workdir: str, missing: list[str]) -> str:
  """One line for a run the table cannot show: where it diverged, or what it lacks."""
  if result.get("diverged"):
    return diverged_line(result, workdir, shown=False)
  return (f"{result.get('mode', 'a')} run {label(result['path'], workdir)}: its results.json "
          f"has no {', '.join(repr(m) for m in missing)} (unfinished?): not in the table; "
          "re-run its command to finish it")


def damaged_line(damaged: Damaged, workdir: str, rebuilt_from: str | None) -> str:
  """One line naming a damaged results.json and what the report does without it."""
  head = f"damaged {damaged.file} ({damaged.reason})"
  config = run_config(damaged.path)
  if config is None and not files.exists(os.path.join(damaged.path, runs.RUN_ID_FILE)):
    return (f"{head}: skipped (a unit of the run above it, whose own results.json holds its "
            "numbers; re-running that run's command recomputes it)")
  mode = (config or {}).get("mode", "unknown")
  if rebuilt_from:
    return f"{head}: the {mode} run is reported from {rebuilt_from}"
  if mode.endswith("_sweep"):
    return f"{head}: the {mode}'s cells are reported from their own results.json"
  if (config or {}).get("seeds"):
    return (f"{head}: the population's own table is lost; its replicas (seed_<s>/) are "
            "reported from their own results.json")
  return f"{head}: the {mode} run is not reported; re-run its command to rewrite it"

