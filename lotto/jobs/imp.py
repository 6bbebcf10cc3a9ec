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
from lotto.core.structure import Structure
from lotto.core.types import Masks, Prunable
from lotto.jobs import branches as branches_lib
from lotto.jobs.imp_settings import ImpSettings, Target, imp_settings_from_config
from lotto.jobs.experiment import Experiment, create_experiment, job
from lotto.jobs.replicas import create_replicas, finish
from lotto.runtime import files, runs
from lotto.runtime.devices import is_main_process, note
from lotto.train.hooks import Hook
from lotto.train.loop import load_state, train_replicas
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
  """One replica's IMP run while it executes (lazy access to kept checkpoints)."""

  def __init__(self, exp: Experiment, settings: ImpSettings, workdir: str):
    self.exp, self.settings, self.workdir = exp, settings, workdir
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


def _print(exp: Experiment, text: str, verbosity: int = 1) -> None:
  if exp.verbose >= verbosity:
    note(text)


def run_level(trainer: Trainer, replicas: Sequence[ImpRun], level: int,
              hooks: Sequence[Hook]) -> tuple[list[dict], list[Masks]]:
  """One level of every replica: read back where all are done, else trained together
  (a replica already done retrains from its checkpoints to the same numbers).

  Returns:
    (each replica's record, each replica's mask).
  """
  finished = [finished_level(run, level) for run in replicas]
  if all(record is not None for record, _ in finished):
    return [record for record, _ in finished], [masks for _, masks in finished]
  prepared = [level_masks(run, level, masks) for run, (_, masks) in zip(replicas, finished)]
  starts = [level_start(run, level, masks) for run, (masks, _) in zip(replicas, prepared)]
  finals, summaries = train_replicas(
      trainer, [level_dir(run.workdir, level) for run in replicas],
      [initial for initial, _ in starts], keep=starts[0][1], label=replicas[0].label(level),
      hooks=hooks)
  records = [finish_level(run, level, final, summary, masks, report)
             for run, final, summary, (masks, report) in zip(replicas, finals, summaries,
                                                              prepared)]
  return records, [masks for masks, _ in prepared]


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


def run_branch(trainer: Trainer, replicas: Sequence[ImpRun], name: str,
               inputs: Sequence[branches_lib.LevelInputs], hooks: Sequence[Hook]) -> list[dict]:
  """Runs (or resumes, or reads back) one branch of one level for every replica."""
  level = inputs[0].level
  directories = [os.path.join(level_dir(run.workdir, level), "branches", name)
                 for run in replicas]
  paths = [os.path.join(directory, runs.RESULTS_FILE) for directory in directories]
  records = [runs.read_intact(path, ("branch", "final_test_accuracy")) for path in paths]
  if all(record is not None for record in records):
    return records
  branch = branches_lib.BRANCHES.get(name)
  initials = [branch(each) for each in inputs]
  _, summaries = train_replicas(trainer, directories, initials, label=f"level {level} | {name}",
                                hooks=hooks)
  records = []
  for run, initial, summary, path in zip(replicas, initials, summaries, paths):
    record = {"mode": "imp_branch", "branch": name,
              **_record(level, summary, initial.masks, run.settings.prunable)}
    runs.write_json(path, record)
    _print(run.exp, f"== level {level} | {name} done | density {record['density']:.2%} | "
                    f"final test accuracy {record['final_test_accuracy']:.2%}")
    records.append(record)
  return records


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
  runs.prepare_workdir(exp.run_config, workdir)
  replicas = create_replicas(exp, workdir)
  trainer = replicas.trainer()
  imp_runs = [ImpRun(member, settings, directory)
              for member, directory in zip(replicas.members, replicas.directories)]
  headers = [run_header(run) for run in imp_runs]
  levels: list[list[dict]] = [[] for _ in imp_runs]
  masks_by_level: list[list[Masks]] = [[] for _ in imp_runs]
  for level in range(settings.levels + 1):
    records, masks = run_level(trainer, imp_runs, level, hooks)
    for run, header, done, kept, record, mask in zip(imp_runs, headers, levels, masks_by_level,
                                                    records, masks):
      done.append(_without_history(record))
      kept.append(mask)
      runs.write_results(run.workdir, {**header, "complete": False, "levels": done,
                                       "branches": []})

  branch_records: list[list[dict]] = [[] for _ in imp_runs]
  for level in settings.branch_levels if settings.branches else ():
    inputs = [level_inputs(run, level, kept) for run, kept in zip(imp_runs, masks_by_level)]
    for name in settings.branches:
      for done, record in zip(branch_records, run_branch(trainer, imp_runs, name, inputs, hooks)):
        done.append(_without_history(record))
    for run, header, done, branched in zip(imp_runs, headers, levels, branch_records):
      runs.write_results(run.workdir, {**header, "complete": False, "levels": done,
                                       "branches": branched})
  results = [finish_run(run, header, done, branched) for run, header, done, branched
             in zip(imp_runs, headers, levels, branch_records)]
  last = [{**result["levels"][-1], "wall_time_s": sum(l["wall_time_s"] for l in result["levels"])}
          for result in results]
  return results[0] if not replicas.pooled else finish(workdir, replicas, last)


def level_inputs(run: ImpRun, level: int, masks_by_level: Sequence[Masks]
                 ) -> branches_lib.LevelInputs:
  """What the branches of `level` start from, for one replica."""
  settings = run.settings
  return branches_lib.LevelInputs(
      exp=run.exp, level=level, masks=masks_by_level[level],
      previous_masks=masks_by_level[level - 1], previous_final=run.final(level - 1).params,
      theta_0=run.theta_0, theta_k=run.theta_k(), theta_T=run.final(0),
      target=settings.target(level), scope=settings.scope, start_point=settings.start_point,
      mat_from=settings.mat_from)


def run_header(run: ImpRun) -> dict:
  """What every version of a run's results.json starts with."""
  exp, settings = run.exp, run.settings
  return {"mode": "imp", "config_hash": runs.config_hash(exp.run_config), "seed": exp.seed,
          "rewind_step": settings.rewind_step, "fraction": settings.fraction,
          "scope": settings.scope, "total_steps": exp.total_steps}


def finish_run(run: ImpRun, header: dict, levels: list[dict], branch_records: list[dict]) -> dict:
  """Writes the complete results.json and the IMP report (printed) of one run; a level or
  branch that trained on through a non-finite loss (`train.on_nan = "continue"`) marks the
  run `"diverged": true` at its first such step."""
  results = {**header, "complete": True, "levels": levels, "branches": branch_records}
  diverged = [r["diverged_at_step"] for r in levels + branch_records if r.get("diverged")]
  if diverged:
    results.update(diverged=True, diverged_at_step=min(diverged))
  runs.write_results(run.workdir, results)
  text = reports.write_imp_report(run.workdir)
  if run.exp.verbose:
    note(text)
  return results
