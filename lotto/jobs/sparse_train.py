"""Sparsity during training (`config.mode = "sparse_train"`).

`sparse.method` names an entry of `lotto.dynamic.methods.SPARSE_METHODS`:

- `static`: a fixed random mask (ERK or uniform, or `config.topology`'s
  wiring) trained from init: the control of every dynamic method.
- `gmp`: Zhu & Gupta's gradual magnitude pruning from dense, every
  `update_every` from `begin` to `end` (one-shot when begin == end; by
  `threshold` instead of a target density when threshold > 0; by OBD
  saliency with `criterion = "obd"`).
- `dsd`: dense, sparse (magnitude, per-layer density), dense at
  `dsd.final_lr_scale` times the LR; each phase's test accuracy is reported.
- `set` / `rigl`: a random (ERK) or topology start mask whose layers drop
  and regrow `drop_fraction` of their survivors every `update_every` steps
  until `stop`, regrowing at random (SET) or by |dense gradient| (RigL).
- `srigl`: RigL per output unit (Lasby et al.): a constant fan-in start mask
  (`distribution = "fanin"`, or a constant fan-in topology) in which every
  unit drops and regrows round(drop_fraction * k) of its k inputs, so the
  fan-in stays constant; the `output` layer stays dense; optional neuron
  ablation (`ablation_threshold`).

`distribution = "fanin"` draws every start mask (static, set, rigl, srigl)
with exactly k = max(1, round(d * fan_in)) inputs per output unit.

Masks change inside the compiled train step (`lotto.dynamic`); the log of
every update is part of the TrainState, so a killed run resumes with it.
results.json adds `mask_updates` (step, density, per-layer densities,
fraction changed per update) to the usual summary.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from lotto import dynamic
from lotto.core import masks as masks_lib
from lotto.core.distributions import layer_distribution, layer_sizes
from lotto.core.errors import ConfigError
from lotto.core.fanin import FANIN, constant_fan_in, fanin_masks
from lotto.core.rng import purpose_key
from lotto.jobs.condensed_execution import Condensed, condensed_setup, condensed_starts
from lotto.jobs.experiment import Experiment, create_experiment, job
from lotto.jobs.replicas import Replicas, cell_replicas, create_replicas, finish, run_seeds
from lotto.dynamic.methods import SPARSE_METHODS, MethodInputs, SparseSettings
from lotto.jobs.sparse_settings import method_prunable, sparse_settings
from lotto.jobs.topology import topology_masks
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.hooks import Hook
from lotto.train.loop import load_state, train_replicas
from lotto.train.state import TrainState


def _layer_densities(exp: Experiment, settings: SparseSettings) -> dict[str, float]:
  return layer_distribution(settings.distribution, settings.density,
                            layer_sizes(exp.params_shape, exp.prunable))


def start_masks(exp: Experiment, settings: SparseSettings):
  """The mask training starts from: dense (gmp, dsd), the topology's, or random at the
  layer densities of `sparse.distribution` (static, set, rigl, srigl; constant fan-in
  with "fanin").

  Raises:
    ConfigError: a topology for a method that starts dense, or a start mask that is not
      constant fan-in for a method that needs one (naming the layer).
  """
  entry = SPARSE_METHODS.get(settings.method)
  if entry.starts_dense:
    if exp.topology.name != "none":
      raise ConfigError(f"sparse.method={settings.method!r} starts dense; a topology is the "
                        f"start mask of {', '.join(_starting_sparse())} (or of a train run): set "
                        "topology.name='none' or another sparse.method")
    return None
  chosen = topology_masks(exp.topology, exp.params_shape, exp.prunable, exp.seed)
  if chosen is None:
    draw = fanin_masks if settings.distribution == FANIN else masks_lib.random_masks
    chosen = draw(purpose_key(exp.seed, "sparse_mask"), exp.params_shape, exp.prunable,
                  _layer_densities(exp, settings))
  if entry.constant_fan_in:  # a topology's wiring, say
    for name, mask, flag in zip(masks_lib.leaf_names(chosen), jax.tree.leaves(chosen),
                                jax.tree.leaves(exp.prunable)):
      if flag:
        constant_fan_in(mask, name)
  return chosen


def _starting_sparse() -> list[str]:
  return [n for n in SPARSE_METHODS.names() if not SPARSE_METHODS.get(n).starts_dense]


def mask_update(exp: Experiment, settings: SparseSettings) -> dynamic.MaskUpdate | None:
  """The mask update of `settings.method` (None for a fixed mask)."""
  return SPARSE_METHODS.get(settings.method).build(MethodInputs(
      settings, exp.prunable, exp.params_shape, _layer_densities(exp, settings)))


def _scaled_after(schedule, step: int, scale: float):
  """The LR schedule times `scale` from global step `step` on (DSD's final phase)."""
  return lambda t: schedule(t) * jnp.where(t >= step, scale, 1.0)


def build_sparse_run(config: ml_collections.ConfigDict):
  """Validates `config` and builds what a sparse_train run needs; writes nothing.

  Returns:
    (experiment (with the method's LR scaling, e.g. DSD's), settings, the mask
    update (None for a fixed mask)).
  """
  exp = create_experiment(config)
  settings = sparse_settings(config, exp)
  exp = dataclasses.replace(exp, prunable=method_prunable(SPARSE_METHODS.get(settings.method),
                                                          exp))
  method = mask_update(exp, settings)
  scaled = SPARSE_METHODS.get(settings.method).lr_scale(settings)
  if scaled is not None:
    exp = dataclasses.replace(exp, schedule=_scaled_after(exp.schedule, *scaled))
  return exp, settings, method


def initial_state(exp: Experiment, settings: SparseSettings,
                  method: dynamic.MaskUpdate | None) -> TrainState:
  """The seed's init under its start mask, with the method's initial mask-update state."""
  state = exp.init_state(start_masks(exp, settings))
  return state.replace(mask_state=dynamic.init_mask_state(method, state.params, state.masks))


@job("sparse_train")
def run_sparse_train(config: ml_collections.ConfigDict, workdir: str,
                     hooks: Sequence[Hook] = (), summary_line: bool = True) -> dict:
  """One run whose masks change during training: `config.mode == "sparse_train"`.

  Validates the `sparse` (and `dsd`) section before anything is written,
  trains (resuming from `workdir/checkpoints` after a kill) and writes
  `workdir/results.json`.

  Args:
    config: any config (see `jobs.defaults.get_base_config`).
    workdir: the run directory.
    hooks: run between train blocks (tests inject crashes with them).
    summary_line: print the one-line result at the end (a sweep prints its own).

  Returns:
    The results dict: the train summary plus method, target_density,
    mask_updates and, for DSD, the test accuracy at the end of each phase.

  Raises:
    ConfigError: an invalid field (one line naming it and the valid values).
  """
  exp, settings, method = build_sparse_run(config)
  condensed = condensed_setup(config, exp, settings)
  starts = [initial_state(dataclasses.replace(exp, seed=seed), settings, method)
            for seed in run_seeds(exp)]  # before anything is written: a bad start mask raises
  if condensed is not None:
    starts = condensed_starts(starts, condensed, exp)
  runs.prepare_workdir(exp.run_config, workdir)
  replicas = create_replicas(exp, workdir)
  results = _train_replicas(starts, replicas, settings, method, hooks,
                            summary_line and not replicas.pooled, condensed)
  return finish(workdir, replicas, results)


def _results(exp: Experiment, settings: SparseSettings, start: TrainState, final: TrainState,
             summary: dict) -> dict:
  target = settings.density if exp.topology.name == "none" else masks_lib.density(
      start.masks, exp.prunable)  # a topology's start mask sets the density
  return {"mode": "sparse_train", "config_hash": runs.config_hash(exp.run_config),
          "method": settings.method, "target_density": target,
          "topology": exp.topology.name, "control": exp.topology.control,
          "mask_updates": dynamic.update_records(final.mask_state, final.masks, exp.prunable),
          **summary}


def run_sparse_train_cells(cells: Sequence[tuple[ml_collections.ConfigDict, str]],
                           hooks: Sequence[Hook] = ()) -> list[dict]:
  """Sweep cells that differ only in their seed (one method and density), trained in one
  program; each cell's directory gets what `run_sparse_train` would write there.

  Call inside a job (its locks are released when the job ends).

  Raises:
    ConfigError: cells of different methods or densities, or as `run_sparse_train`.
  """
  built = [build_sparse_run(config) for config, _ in cells]
  settings, method = built[0][1], built[0][2]
  if any(b[1] != settings for b in built):
    raise ConfigError("cells trained in one program must share sparse.method and density")
  starts = [initial_state(b[0], settings, method) for b in built]
  condensed = condensed_setup(cells[0][0], built[0][0], settings)
  if condensed is not None:
    starts = condensed_starts(starts, condensed, built[0][0])
  replicas = cell_replicas([(b[0], directory) for b, (_, directory) in zip(built, cells)])
  return _train_replicas(starts, replicas, settings, method, hooks, summary_line=False,
                         condensed=condensed)


def _train_replicas(starts: Sequence[TrainState], replicas: Replicas, settings: SparseSettings,
                    method: dynamic.MaskUpdate | None, hooks: Sequence[Hook],
                    summary_line: bool, condensed: Condensed | None = None) -> list[dict]:
  """Trains the replicas from `starts` in one program (each its own start mask and mask
  updates; with several, the update's `lax.cond` runs batched), masked or `condensed`;
  writes and returns each replica's results."""
  exp = replicas.experiment
  phases = SPARSE_METHODS.get(settings.method).phases(settings)
  keep = set(exp.save_steps) | {step for _, step in phases}
  if condensed is None:
    trainer = replicas.trainer(mask_update=method)
  else:
    trainer = replicas.trainer(mask_update=condensed.update, layout=condensed.layout)
  finals, summaries = train_replicas(trainer, replicas.directories, starts,
                                     keep=tuple(sorted(keep)), hooks=hooks, label=settings.method)
  results = []
  for member, directory, start, final, summary in zip(
      replicas.members, replicas.directories, starts, finals, summaries):
    result = _results(member, settings, trainer.report_state(start),
                      trainer.report_state(final), summary)
    if phases:
      result["phases"] = _phase_accuracies(
          lambda s: trainer.evaluate(trainer.stack([s]), "test")[0],
          directory, start, settings, summary, exp.prunable)
    runs.write_results(directory, result)
    if exp.verbose >= (1 if summary_line else 2):
      note(f"{settings.method}: final test accuracy {result['final_test_accuracy']:.2%}, "
           f"density {result['density']:.2%}, {len(result['mask_updates'])} mask updates, "
           f"{result['wall_time_s']:.1f} s")
    results.append(result)
  return results


def _phase_accuracies(evaluate, workdir: str, like, settings: SparseSettings, summary: dict,
                      prunable) -> list[dict]:
  """The test accuracy and density at the end of each of the method's phases (DSD: dense,
  sparse, dense again); `evaluate(state)` gives a state's test metrics."""
  method = SPARSE_METHODS.get(settings.method)
  rows = []
  for name, step in method.phases(settings):
    state = load_state(workdir, step, like)
    rows.append({"phase": name, "step": step, "test_accuracy": evaluate(state)["accuracy"],
                 "density": masks_lib.density(state.masks, prunable)})
  rows.append({"phase": method.final_phase, "step": summary["steps"],
               "test_accuracy": summary["final_test_accuracy"], "density": summary["density"]})
  return rows
