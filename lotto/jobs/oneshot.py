"""The one-shot pruning job (`config.mode = "oneshot"`): prune a finished train run with a
little calibration data, evaluate, optionally fine-tune.

1. The run of `oneshot.from_workdir` is checked (finished, a single train run, the
   same model and data: `oneshot_settings.load_source`) and its final params and
   BatchNorm statistics are read.
2. Per calibration draw (seed s): `oneshot.calibration_examples` training examples
   drawn without replacement by s (`calibration_examples`); every prunable kernel
   pruned in the order the forward pass calls it, each on the inputs of the network
   pruned before it (`oneshot_walk.prune_network`) with `oneshot.method`; the test
   loss and accuracy of the pruned network.
3. With `oneshot.finetune`, every draw's pruned network is trained on under its
   masks with the existing masked training (`train.loop.train_replicas`: the
   config's optimizer, its schedule stretched to the fine-tune length, data order of
   `config.seed`), all draws in one vmapped program.

A population over calibration draws (`oneshot.calibration_seeds = (0, 1, 2, 3, 4)`)
prunes the same trained model once per draw: pruning runs as a Python loop over the
draws (each layer's pruning is a host-driven sequence of compiled steps whose
one-line errors need the host), fine-tuning in one program; results.json then
holds each draw and the mean +- std (population, ddof = 0).

Workdir layout: config.json, run_id.json, results.json; for one draw masks.npz,
layer_report.txt and finetune/ (its checkpoints) at the root; for several,
calibration_<s>/ holding each draw's masks.npz, layer_report.txt, draw.json and
finetune/. Every draw is pruned before the workdir is written, so a layer that
cannot be pruned leaves nothing behind. Re-running a finished run returns its
results.json without computing; an interrupted one recomputes the pruning
(deterministic: the same masks and weights) and resumes fine-tuning from its
checkpoints.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lotto import data as data_lib
from lotto.core import masks as masks_lib
from lotto.core.rng import purpose_key
from lotto.jobs.experiment import Experiment, create_experiment, job
from lotto.jobs.oneshot_settings import (OneShotRunSettings, SourceRun, load_source,
                                         oneshot_settings_from_config, training_size)
from lotto.jobs.oneshot_walk import EvalForward, PrunedNetwork, prune_network
from lotto.jobs.replicas import check_memory, pool
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.evaluate import LANGUAGE_METRICS, prefixed
from lotto.train.loop import train_replicas
from lotto.train.state import TrainState, create_train_state
from lotto.train.trainer import Trainer

MASK_FILE = masks_lib.MASK_FILE
DRAW_FILE = "draw.json"
FINETUNE_DIR = "finetune"
# Per-draw metrics pooled over the draws (mean, std, values) when there are several.
# (A language model's draws also pool bits per character and perplexity.)
POOLED = ("pruned_test_accuracy", "pruned_test_loss", "finetuned_test_accuracy",
          "finetuned_test_loss", "final_test_accuracy", "final_test_loss", "achieved_density",
          *(f"{stage}_test_{k}" for stage in ("pruned", "finetuned", "final")
            for k in LANGUAGE_METRICS))
CALIBRATION_CHUNK = 64  # calibration examples per forward pass


def draw_dir(workdir: str, seed: int) -> str:
  """Where a population's draw `seed` writes its files."""
  return os.path.join(workdir, f"calibration_{seed}")


def calibration_examples(exp: Experiment, count: int, seed: int) -> np.ndarray:
  """`count` preprocessed training examples drawn without replacement by `seed` (the
  "calibration" stream of that seed), in the drawn order."""
  order = np.asarray(jax.random.permutation(purpose_key(seed, "calibration"),
                                            training_size(exp)))[:count]
  if exp.dataset.x_train is not None:
    raw = exp.dataset.x_train[order]
  else:
    raw, _ = exp.dataset.train_source.read(order)
  inputs = data_lib.InputSpec.of(exp.dataset)
  return np.asarray(inputs(jnp.asarray(raw), None))


def _state(exp: Experiment, params, batch_stats, masks) -> TrainState:
  return create_train_state(jax.tree.map(jnp.asarray, params),
                            jax.tree.map(jnp.asarray, batch_stats), masks, exp.tx,
                            purpose_key(exp.seed, "step"))


def _test(trainer: Trainer, state: TrainState) -> dict[str, float]:
  return trainer.evaluate(trainer.place(state), "test")[0]


@job("oneshot")
def run_oneshot(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """One-shot pruning of a finished train run (`config.mode == "oneshot"`).

  Args:
    config: a config with `mode = "oneshot"` (section `oneshot`; its model and data
      sections those of the run pruned).
    workdir: the run directory (created; a finished run's results are returned).

  Returns:
    The results dict: method, structure, density per layer, calibration seed(s), the
    trained run's test accuracy and loss ("dense_*"), the pruned network's
    ("pruned_*"), the fine-tuned one's ("finetuned_*") if any; for several draws
    "draws" (each draw's) and "pooled" (mean, std and values per draw).

  Raises:
    ConfigError: a bad field or source run, or a layer SparseGPT cannot prune (a
      Hessian not positive definite: use a larger damp); raised before anything is
      written.
  """
  exp = create_experiment(config)
  settings = oneshot_settings_from_config(config, exp)
  source = load_source(settings, exp)
  runs.check_workdir(exp.run_config, workdir)  # another config's run is refused here
  finished = runs.read_intact(os.path.join(workdir, runs.RESULTS_FILE), ("config_hash",))
  if (finished is not None and finished["config_hash"] == runs.config_hash(exp.run_config)
      and finished.get("complete") is True):
    if exp.verbose:
      note(f"{workdir} holds this finished one-shot run: its results")
    return finished
  started = time.perf_counter()
  # Every draw is pruned before anything is written: a layer SparseGPT cannot prune (a
  # Hessian not positive definite) leaves no workdir behind.
  trainer = Trainer(exp)
  dense = _test(trainer, _state(exp, source.params, source.batch_stats, None))
  forward = EvalForward(exp.model)
  pruned = [_prune_draw(exp, settings, source, forward, trainer, seed)
            for seed in settings.calibration_seeds]
  networks, draws = [n for n, _ in pruned], [d for _, d in pruned]
  runs.prepare_workdir(exp.run_config, workdir)
  directories = [draw_dir(workdir, s) if settings.population else workdir
                 for s in settings.calibration_seeds]
  for directory, network in zip(directories, networks):
    runs.write_masks(os.path.join(directory, MASK_FILE), network.masks)
    runs.write_layer_report(directory, network.masks, exp.prunable)
  if settings.finetune_steps:
    _finetune(exp, settings, source, networks, directories, draws)
  if settings.population:
    for directory, draw in zip(directories, draws):
      runs.write_json(os.path.join(directory, DRAW_FILE), draw)
  results = _results(exp, settings, source, dense, draws, time.perf_counter() - started)
  runs.write_results(workdir, results)
  _summary_line(exp, settings, results)
  return results


def _prune_draw(exp: Experiment, settings: OneShotRunSettings, source: SourceRun,
                forward: EvalForward, trainer: Trainer, seed: int
                ) -> tuple[PrunedNetwork, dict]:
  """One calibration draw: the pruned network and its metrics."""
  started = time.perf_counter()
  calibration = calibration_examples(exp, settings.calibration_examples, seed)
  network = prune_network(forward, source.params, source.batch_stats, exp.prunable,
                          calibration, settings.method, settings.density, settings.structure,
                          settings.method_settings, chunk=CALIBRATION_CHUNK)
  elapsed = time.perf_counter() - started
  test = _test(trainer, _state(exp, network.params, source.batch_stats, network.masks))
  draw = {"calibration_seed": seed,
          "achieved_density": masks_lib.density(network.masks, exp.prunable),
          "layer_densities": masks_lib.layer_densities(network.masks, exp.prunable),
          "layers": network.layers, "prune_time_s": elapsed,
          **prefixed(test, "pruned_test"), **prefixed(test, "final_test")}
  if exp.verbose >= 2:
    note(f"{settings.method.name} {settings.structure} calibration draw {seed}: test accuracy "
         f"{test['accuracy']:.2%} ({elapsed:.1f} s)")
  return network, draw


def finetune_experiment(exp: Experiment, settings: OneShotRunSettings, count: int
                        ) -> Experiment:
  """`exp` trained for `oneshot.finetune` steps under its stretched schedule (one device for
  several draws, which train in one program)."""
  steps = settings.finetune_steps
  return dataclasses.replace(exp, total_steps=steps, schedule=settings.finetune_schedule,
                             save_steps=frozenset({steps}),
                             mesh=exp.mesh if count == 1 else None)


def _finetune(exp: Experiment, settings: OneShotRunSettings, source: SourceRun,
              networks: list[PrunedNetwork], directories: list[str], draws: list[dict]) -> None:
  """Masked training of every draw's pruned network, all draws in one program; adds the
  fine-tuned metrics to each draw."""
  count = len(networks)
  tuned = finetune_experiment(exp, settings, count)
  if count > 1:
    check_memory(tuned, count)
  trainer = Trainer(tuned, seeds=(exp.seed,) * count)  # every draw sees the same data order
  starts = [_state(tuned, n.params, source.batch_stats, n.masks) for n in networks]
  _, summaries = train_replicas(trainer, [os.path.join(d, FINETUNE_DIR) for d in directories],
                                starts, label=f"{settings.method.name} fine-tune")
  for draw, summary in zip(draws, summaries):
    final = {k: summary[f"final_test_{k}"] for k in ("accuracy", "loss", *LANGUAGE_METRICS)
             if f"final_test_{k}" in summary}
    draw.update(**prefixed(final, "finetuned_test"),
                finetune_early_stop_test_accuracy=summary["early_stop_test_accuracy"],
                finetune_history=summary["history"], **prefixed(final, "final_test"),
                finetune_time_s=summary.get("wall_time_s", 0.0))


def pool_draws(draws: list[dict]) -> dict:
  """Mean, std (ddof = 0) and the per-draw values of `POOLED`, keyed by calibration seed."""
  return pool(draws, [d["calibration_seed"] for d in draws], POOLED)


def _results(exp: Experiment, settings: OneShotRunSettings, source: SourceRun,
             dense: dict[str, float], draws: list[dict], wall_time: float) -> dict:
  results = {
      "mode": "oneshot", "config_hash": runs.config_hash(exp.run_config),
      "from_workdir": source.workdir, "source_config_hash": source.config_hash,
      "source_step": source.step, "method": settings.method.name,
      "structure": str(settings.structure), "target_density": settings.density,
      "calibration_examples": settings.calibration_examples,
      "calibration_seeds": list(settings.calibration_seeds),
      "damp": settings.method_settings.damp, "block": settings.method_settings.block,
      "finetune_steps": settings.finetune_steps,
      **prefixed(dense, "dense_test"),
      "complete": True, "wall_time_s": wall_time}
  if settings.population:
    return {**results, "draws": draws, "pooled": pool_draws(draws)}
  return {**results, **draws[0]}


def _summary_line(exp: Experiment, settings: OneShotRunSettings, results: dict) -> None:
  if not exp.verbose:
    return
  what = (f"{settings.method.name} {settings.structure} at density {settings.density:g}: test "
          f"accuracy {results['dense_test_accuracy']:.2%} dense")
  if settings.population:
    pooled = results["pooled"]
    parts = [f"{pooled[k]['mean']:.2%} +- {pooled[k]['std']:.2%} {label}"
             for k, label in (("pruned_test_accuracy", "pruned"),
                              ("finetuned_test_accuracy", "fine-tuned")) if k in pooled]
    note(f"{what}, {', '.join(parts)} over {len(settings.calibration_seeds)} calibration draws")
    return
  tuned = results.get("finetuned_test_accuracy")
  note(f"{what}, {results['pruned_test_accuracy']:.2%} pruned"
       f"{'' if tuned is None else f', {tuned:.2%} fine-tuned'}")
