"""The pruning-at-initialization job (`config.mode = "prune"`).

score(theta_k, mask, batch) -> prune_to_density -> optional ablation ->
train the masked network from theta_k (k = 0: at initialization; k > 0:
"pruning early in training", the LR schedule and data order continuing at k).

Workdir layout: `dense_to_k/` (only for k > 0), `masks.npz` (the pruned mask,
written once; a re-run reuses it), `layer_report.txt`, `train/` (the sparse
run's checkpoints), `results.json`.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lotto import data as data_lib
from lotto import pruning
from lotto.core import ablations, connectivity, distributions
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.rng import purpose_key
from lotto.core.scores import DATA_DEPENDENT, ScoringContext
from lotto.core.types import Masks
from lotto.jobs.experiment import Experiment, create_experiment, job
from lotto.jobs.prune_settings import PruneSettings, prune_settings_from_config
from lotto.jobs.replicas import Replicas, cell_replicas, create_replicas, finish
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.hooks import Hook
from lotto.train.loop import train_replicas
from lotto.train.state import TrainState, create_train_state, rewind

MASK_FILE = masks_lib.MASK_FILE


def scoring_batch(exp: Experiment, per_class: int) -> tuple[jax.Array, jax.Array]:
  """A class-balanced, preprocessed batch from the training set.

  Labels per position (a language model's next-token windows, [n, context]) have no class
  to balance: then `per_class` windows drawn at random (each holds `context` labels).
  """
  key, examples = purpose_key(exp.seed, "prune_batch"), exp.dataset.train_examples()
  if len(examples.label_shape):
    rows = np.asarray(jax.random.permutation(key, len(examples)))[:per_class]
    x, y = examples.read(np.sort(rows).astype(np.int64))
  else:
    x, y = data_lib.balanced_sample(key, examples, exp.dataset.num_classes, per_class)
  inputs = data_lib.InputSpec.of(exp.dataset)
  return inputs(jnp.asarray(x), None), jnp.asarray(y)


def compute_masks(exp: Experiment, settings: PruneSettings, params, batch_stats) -> Masks:
  """Scores `params`, prunes, and applies the mask-level ablation if any."""
  ablation = ablations.ABLATIONS.get(settings.ablation)
  ones = masks_lib.ones_like(params)
  ctx = ScoringContext(exp.model.apply, exp.dataset.input_shape,
                       synflow_dtype=settings.synflow_dtype, grasp_params=settings.grasp_params,
                       prunable=exp.prunable,
                       synflow_abs_batch_stats=settings.synflow_abs_batch_stats,
                       obd_probes=settings.obd_probes)
  batch = scoring_batch(exp, settings.samples_per_class) if settings.method in DATA_DEPENDENT \
      else None
  target = settings.density
  if settings.distribution != "none":
    target = distributions.layer_distribution(settings.distribution, settings.density,
                                              distributions.layer_sizes(params, exp.prunable))
  masks = pruning.prune(settings.method, ctx, params, ones, exp.prunable, target,
                        purpose_key(exp.seed, "prune_scores"), batch_stats=batch_stats,
                        batch=batch, iterations=settings.iterations,
                        schedule=settings.schedule, scope=settings.scope,
                        invert=ablation.invert_scores,
                        normalization=settings.normalization, count_rule=settings.count_rule,
                        structure=settings.structure)
  if ablation.transform is not None:
    masks = ablation.transform(purpose_key(exp.seed, f"ablation_{ablation.name}"), masks,
                               exp.prunable)
  return masks


@job("prune")
def run_prune(config: ml_collections.ConfigDict, workdir: str,
              hooks: Sequence[Hook] = (), summary_line: bool = True) -> dict:
  """Prunes at initialization (or at step k), trains the mask, writes results.json.

  Args:
    config: a config with `mode = "prune"` (section `prune`).
    workdir: the run directory (created; resumed if it holds this config).
    hooks: run between train blocks of the sparse run.
    summary_line: print the one-line result at the end (a sweep prints its own).

  Returns:
    The results dict (method, target/achieved/effective density, collapsed
    layers, accuracies, history).

  Raises:
    ConfigError: an invalid field (before anything is written).
  """
  exp = create_experiment(config)
  settings = prune_settings_from_config(config, exp)
  runs.prepare_workdir(exp.run_config, workdir)
  replicas = create_replicas(exp, workdir)
  results = _train_replicas(replicas, [settings] * len(replicas.members), hooks,
                            summary_line and not replicas.pooled)
  return finish(workdir, replicas, results)


def pruned_masks(exp: Experiment, settings: PruneSettings, workdir: str,
                 state_k: TrainState) -> tuple[Masks, list[dict]]:
  """The run's mask (read back from `workdir/masks.npz`, or computed from `state_k` and
  written there) and its per-layer report (also written)."""
  mask_path = os.path.join(workdir, MASK_FILE)
  masks = runs.read_masks_intact(mask_path, state_k.masks)
  if masks is None:
    masks = compute_masks(exp, settings, state_k.params, state_k.batch_stats)
    runs.write_masks(mask_path, masks)
  report, text = runs.write_layer_report(workdir, masks, exp.prunable)
  if exp.verbose >= 2:
    note(f"{settings.method} -> density {masks_lib.density(masks, exp.prunable):.4%}\n{text}")
  return masks, report


def sparse_start(exp: Experiment, settings: PruneSettings, state_k: TrainState,
                 masks: Masks) -> TrainState:
  """Where the sparse run starts: theta_k * mask (rewound), or a fresh init for "reinit"."""
  if ablations.ABLATIONS.get(settings.ablation).fresh_values:
    params, stats = exp.init_params(purpose_key(exp.seed, "reinit"))
    return create_train_state(params, stats, masks, exp.tx, state_k.rng, step=settings.at_step)
  return rewind(state_k, masks, exp.tx)


def _results(exp: Experiment, settings: PruneSettings, masks: Masks, report: list[dict],
             summary: dict) -> dict:
  collapsed = [r["name"] for r in report if r["collapsed"]]
  return {
      "mode": "prune", "config_hash": runs.config_hash(exp.run_config), "method": settings.method,
      "ablation": settings.ablation, "scope": settings.scope, "iterations": settings.iterations,
      "at_step": settings.at_step, "target_density": settings.density,
      "achieved_density": masks_lib.density(masks, exp.prunable),
      "effective_density": connectivity.effective_density(masks, exp.prunable),
      "collapsed_layers": collapsed, **summary}


def _summary_line(exp: Experiment, settings: PruneSettings, results: dict,
                  summary_line: bool) -> None:
  if exp.verbose >= (1 if summary_line else 2):
    collapsed = results["collapsed_layers"]
    note(f"{settings.method} ({settings.ablation}) at density {results['achieved_density']:.4%}: "
         f"final test accuracy {results['final_test_accuracy']:.2%}"
         f"{'; COLLAPSED: ' + ', '.join(collapsed) if collapsed else ''}")


def run_prune_cells(cells: Sequence[tuple[ml_collections.ConfigDict, str]],
                    hooks: Sequence[Hook] = ()) -> list[dict]:
  """Sweep cells of one method, ablation and pruning step (any densities and seeds), trained
  in one program; each cell's directory gets what `run_prune` would write there.

  Call inside a job (its locks are released when the job ends).

  Raises:
    ConfigError: cells that prune at different steps, or as `run_prune`.
  """
  exps = [create_experiment(config) for config, _ in cells]
  settings = [prune_settings_from_config(config, exp) for (config, _), exp in zip(cells, exps)]
  if len({s.at_step for s in settings}) > 1:
    raise ConfigError("cells trained in one program must prune at the same step")
  replicas = cell_replicas([(exp, directory) for exp, (_, directory) in zip(exps, cells)])
  return _train_replicas(replicas, settings, hooks, summary_line=False)


def _train_replicas(replicas: Replicas, settings: Sequence[PruneSettings],
                    hooks: Sequence[Hook], summary_line: bool) -> list[dict]:
  """Dense runs to k, each replica's masks, the sparse runs, all replicas in one program;
  writes and returns each replica's results."""
  trainer = replicas.trainer()
  states_k = replicas.init_states()
  at_step = settings[0].at_step
  if at_step > 0:
    states_k, _ = train_replicas(trainer, replicas.subdirectories("dense_to_k"), states_k,
                                 end_step=at_step, label="dense")
  starts, pruned = [], []
  for member, member_settings, directory, state_k in zip(
      replicas.members, settings, replicas.directories, states_k):
    masks, report = pruned_masks(member, member_settings, directory, state_k)
    starts.append(sparse_start(member, member_settings, state_k, masks))
    pruned.append((masks, report))
  _, summaries = train_replicas(trainer, replicas.subdirectories("train"), starts,
                                label=settings[0].method, hooks=hooks)
  results = []
  for member, member_settings, directory, (masks, report), summary in zip(
      replicas.members, settings, replicas.directories, pruned, summaries):
    result = _results(member, member_settings, masks, report, summary)
    runs.write_results(directory, result)
    _summary_line(member, member_settings, result, summary_line)
    results.append(result)
  return results
