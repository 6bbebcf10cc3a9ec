"""Iterative magnitude pruning with rewinding: the lottery-ticket job (`mode = "imp"`).

Level 0 trains the dense network from theta_0 to T, keeping the rewind point
theta_k (k = `imp.rewind`) and theta_T as checkpoints. Level L >= 1 ranks the
surviving weights by |theta_T of level L-1|, keeps the target density
((1 - f)**L of each layer's or of all weights), rewinds
(params = theta_k * mask, a fresh optimizer state, the LR schedule and the data
order continuing at step k) and trains to T. Branches (`lotto.jobs.branches`) run
controls over chosen levels.

Workdir layout (re-running the command resumes at any point):

  config.json, results.json      the run's config; levels + branches so far
  imp_report.txt, imp_*.png      level table and plots
  level_<L>/masks.npz            the level's mask (written once)
  level_<L>/layer_report.txt     per-layer counts and collapsed layers
  level_<L>/checkpoints/         resume points and the kept final state
  level_<L>/results.json         the level's metrics (written last: "done")
  level_<L>/branches/<name>/     each branch's checkpoints and results.json
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from lotto import reports
from lotto.core import connectivity, selection
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.core.types import Masks, Prunable
from lotto.jobs import branches as branches_lib
from lotto.jobs.defaults import LEGACY_FIELDS
from lotto.jobs.imp_settings import ImpSettings, Target, imp_settings_from_config
from lotto.jobs.experiment import Experiment, create_experiment, job
from lotto.runtime import files, runs
from lotto.runtime.devices import is_main_process, note
from lotto.train.hooks import Hook
from lotto.train.loop import load_state, train_run
from lotto.train.state import TrainState, rewind
from lotto.train.trainer import Trainer

def level_dir(workdir: str, level: int) -> str:
  return os.path.join(workdir, f"level_{level}")


def prune_level(final_params, masks: Masks, prunable: Prunable, target: Target,
                scope: str, open_lth_fraction: float | Mapping[str, float] | None = None,
                structure: Structure = Structure()) -> Masks:
  """IMP's pruning step: keep the largest |theta_T| among survivors, to `target`.

  With `open_lth_fraction` (the per-level fraction, global or per layer), the
  count is open_lth's rule on the current survivors instead of the target.
  """
  scores = jax.tree.map(jnp.abs, final_params)
  if open_lth_fraction is not None:
    return selection.prune_fraction_open_lth(scores, masks, prunable, open_lth_fraction,
                                             scope=scope)
  return selection.prune_to_density(scores, masks, prunable, target, scope=scope,
                                    structure=structure)


def _record(level: int, summary: dict, masks: Masks, prunable: Prunable,
            report: list[dict] | None = None) -> dict:
  report = masks_lib.layer_report(masks, prunable) if report is None else report
  history = summary.get("history") or [{}]
  return {"level": level, "collapsed_layers": [r["name"] for r in report if r["collapsed"]],
          "effective_density": connectivity.effective_density(masks, prunable),
          "final_train_loss": history[-1].get("train_loss"), **summary}


def _without_history(record: dict) -> dict:
  return {k: v for k, v in record.items() if k != "history"}


class ImpRun:
  """One IMP run's state while it executes (lazy access to kept checkpoints)."""

  def __init__(self, exp: Experiment, settings: ImpSettings, workdir: str,
               hooks: Sequence[Hook], trainer: Trainer | None = None):
    self.exp, self.settings, self.workdir = exp, settings, workdir
    self.trainer = Trainer(exp) if trainer is None else trainer
    self.hooks = hooks
    self.theta_0 = exp.init_state()
    self._theta_k: TrainState | None = None
    self._finals: dict[int, TrainState] = {}

  def theta_k(self) -> TrainState:
    if self._theta_k is None:
      k = self.settings.rewind_step
      self._theta_k = self.theta_0 if k == 0 else load_state(
          level_dir(self.workdir, 0), k, self.theta_0)
    return self._theta_k

  def final(self, level: int) -> TrainState:
    """The trained state at the end of `level` (restored from its kept checkpoint)."""
    if level not in self._finals:
      self._finals = {level: load_state(level_dir(self.workdir, level), self.exp.total_steps,
                                        self.theta_0)}
    return self._finals[level]

  def label(self, level: int) -> str:
    return f"level {level}/{self.settings.levels}"

  def remember_final(self, level: int, state: TrainState) -> None:
    """Caches the state a level just ended with (the next level prunes it)."""
    self._finals = {level: state}

  def train(self, directory: str, initial: TrainState, label: str,
            keep: tuple[int, ...] = ()) -> tuple[TrainState, dict]:
    return train_run(self.trainer, directory, initial, keep=keep, label=label,
                     hooks=self.hooks)


def _print(exp: Experiment, text: str, verbosity: int = 1) -> None:
  if exp.verbose >= verbosity:
    note(text)


def run_level(run: ImpRun, level: int) -> tuple[dict, Masks]:
  """Runs (or resumes, or reads back) one level; returns (its record, its mask)."""
  record, masks = finished_level(run, level)
  if record is not None:
    return record, masks
  masks, report = level_masks(run, level, masks)
  initial, keep = level_start(run, level, masks)
  state, summary = run.train(level_dir(run.workdir, level), initial, run.label(level),
                             keep=keep)
  return finish_level(run, level, state, summary, masks, report), masks


def finished_level(run: ImpRun, level: int) -> tuple[dict | None, Masks | None]:
  """(record, mask) of a level already done; (None, its mask or None) otherwise."""
  directory = level_dir(run.workdir, level)
  record = runs.read_intact(os.path.join(directory, runs.RESULTS_FILE),
                            ("level", "final_test_accuracy"))
  masks = runs.read_masks_intact(os.path.join(directory, masks_lib.MASK_FILE),
                                 run.theta_0.masks)
  return (record if masks is not None else None), masks


def level_masks(run: ImpRun, level: int, masks: Masks | None) -> tuple[Masks, list[dict]]:
  """The level's mask (read back, or dense at level 0, or the previous final pruned; written
  once) and its per-layer report (written)."""
  settings = run.settings
  directory = level_dir(run.workdir, level)
  if is_main_process():
    files.makedirs(directory)
  if masks is None:
    if level == 0:
      masks = masks_lib.ones_like(run.theta_0.params)
    else:
      previous = run.final(level - 1)
      masks = prune_level(previous.params, previous.masks, settings.prunable,
                          settings.target(level), settings.scope, settings.open_lth_fraction(),
                          settings.structure)
    runs.write_masks(os.path.join(directory, masks_lib.MASK_FILE), masks)
  report, _ = runs.write_layer_report(directory, masks, settings.prunable)
  return masks, report


def level_start(run: ImpRun, level: int, masks: Masks) -> tuple[TrainState, tuple[int, ...]]:
  """(start, kept steps): theta_0 keeping the rewind point at level 0, theta_k * mask after."""
  settings = run.settings
  if level == 0:
    return run.theta_0, ((settings.rewind_step,) if settings.rewind_step > 0 else ())
  _print(run.exp, f"{run.label(level)} | density "
                  f"{masks_lib.density(masks, settings.prunable):.2%} | rewinding to step "
                  f"{settings.rewind_step}", verbosity=2)
  return rewind(run.theta_k(), masks, run.exp.tx), ()


def finish_level(run: ImpRun, level: int, state: TrainState, summary: dict, masks: Masks,
                 report: list[dict]) -> dict:
  """Remembers the level's final state and writes its record (the level is then done)."""
  run.remember_final(level, state)
  record = {"mode": "imp_level", **_record(level, summary, masks, run.settings.prunable, report)}
  runs.write_json(os.path.join(level_dir(run.workdir, level), runs.RESULTS_FILE), record)
  _print(run.exp, f"== {run.label(level)} done | density {record['density']:.2%} | final "
                  f"test accuracy {record['final_test_accuracy']:.2%} | "
                  f"{record['wall_time_s']:.1f} s")
  return record


def run_branch(run: ImpRun, name: str, inputs: branches_lib.LevelInputs) -> dict:
  """Runs (or resumes, or reads back) one branch of one level."""
  directory = os.path.join(level_dir(run.workdir, inputs.level), "branches", name)
  results_path = os.path.join(directory, runs.RESULTS_FILE)
  record = runs.read_intact(results_path, ("branch", "final_test_accuracy"))
  if record is not None:
    return record
  initial = branches_lib.BRANCHES.get(name)(inputs)
  _, summary = run.train(directory, initial, f"level {inputs.level} | {name}")
  record = {"mode": "imp_branch", "branch": name,
            **_record(inputs.level, summary, initial.masks, run.settings.prunable)}
  runs.write_json(results_path, record)
  _print(run.exp, f"== level {inputs.level} | {name} done | density {record['density']:.2%} | "
                  f"final test accuracy {record['final_test_accuracy']:.2%}")
  return record


@job("imp")
def run_imp(config: ml_collections.ConfigDict, workdir: str,
            hooks: Sequence[Hook] = ()) -> dict:
  """Runs (or resumes) IMP with rewinding and its branches; writes results and plots.

  Args:
    config: a config with `mode = "imp"` (see `jobs/defaults.py`, section imp).
    workdir: the run directory (created; resumed if it holds this config).
    hooks: run between train blocks of every level and branch
      (`lotto.train.hooks`); tests simulate a crash with them.

  Returns:
    The results dict written to `workdir/results.json`.

  Raises:
    ConfigError: an invalid field (before anything is written).
  """
  exp = create_experiment(config)
  settings = imp_settings_from_config(config, exp)
  exp = dataclasses.replace(exp, prunable=settings.prunable)
  if exp.seeds and settings.branches:
    raise ConfigError(f"imp.branches {settings.branches!r} run per seed: set seeds=() and run "
                      "each seed, or imp.branches=() for a population")
  runs.prepare_workdir(exp.run_config, workdir, LEGACY_FIELDS)
  if exp.seeds:
    from lotto.jobs import imp_population  # pylint: disable=import-outside-toplevel
    return imp_population.run_population(config, exp, settings, workdir, hooks)
  run = ImpRun(exp, settings, workdir, hooks)
  header = run_header(run)
  levels: list[dict] = []
  masks_by_level: list[Masks] = []
  for level in range(settings.levels + 1):
    record, masks = run_level(run, level)
    levels.append(_without_history(record))
    masks_by_level.append(masks)
    runs.write_results(workdir, {**header, "complete": False, "levels": levels, "branches": []})

  branch_records: list[dict] = []
  if settings.branches:
    theta_T = run.final(0)
    for level in settings.branch_levels:
      inputs = branches_lib.LevelInputs(
          exp=exp, level=level, masks=masks_by_level[level],
          previous_masks=masks_by_level[level - 1],
          previous_final=run.final(level - 1).params, theta_0=run.theta_0,
          theta_k=run.theta_k(), theta_T=theta_T, target=settings.target(level),
          scope=settings.scope, start_point=settings.start_point, mat_from=settings.mat_from)
      for name in settings.branches:
        branch_records.append(_without_history(run_branch(run, name, inputs)))
      runs.write_results(workdir, {**header, "complete": False, "levels": levels,
                                   "branches": branch_records})
  return finish_run(run, header, levels, branch_records)


def run_header(run: ImpRun) -> dict:
  """What every version of a run's results.json starts with."""
  exp, settings = run.exp, run.settings
  return {"mode": "imp", "config_hash": runs.config_hash(exp.run_config), "seed": exp.seed,
          "rewind_step": settings.rewind_step, "fraction": settings.fraction,
          "scope": settings.scope, "total_steps": exp.total_steps}


def finish_run(run: ImpRun, header: dict, levels: list[dict], branch_records: list[dict]) -> dict:
  """Writes the complete results.json and the IMP report (printed) of one run."""
  results = {**header, "complete": True, "levels": levels, "branches": branch_records}
  runs.write_results(run.workdir, results)
  text = reports.write_imp_report(run.workdir)
  if run.exp.verbose:
    note(text)
  return results
