"""The `config.oneshot` section (one-shot pruning of a finished train run), validated into
typed settings, and the finished run it starts from.

Every bad field is a one-line ConfigError naming it, raised before anything is
written: a `from_workdir` that is missing, unfinished, diverged or of another
model (the first differing fields of its config.json's model and data sections
are named), calibration examples above the training split's size, an N:M
structure whose M does not divide a layer's inputs (`pruning.oneshot.check_layer`
names the layer), a density other than n/m with N:M.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure, parse_structure
from lotto.jobs import validators
from lotto.jobs.experiment import Experiment
from lotto.pruning.oneshot import check_layer
from lotto.pruning.oneshot_methods import ONESHOT_METHODS, OneShotMethod, OneShotSettings
from lotto.runtime import files, runs
from lotto.runtime.checkpoints import read_saved_state
from lotto.runtime.identity import comparable, with_legacy
from lotto.train import optim

# The source run's config fields that must equal this run's: the model, and the data
# fields that decide the examples (the split the calibration examples come from).
SAME_MODEL_FIELDS = (("model", None), ("data", "name"), ("data", "validation_size"))


@dataclasses.dataclass(frozen=True)
class OneShotRunSettings:
  """The validated `config.oneshot` section.

  Attributes:
    from_workdir: the finished train run pruned.
    method: the registered one-shot method.
    density: the fraction kept in every prunable layer (n/m for N:M).
    structure: unstructured or N:M.
    calibration_examples: training examples drawn per calibration draw.
    calibration_seeds: the draws' seeds: `(calibration_seed,)` for one draw, or
      `calibration_seeds` for a population over draws.
    population: several draws (`oneshot.calibration_seeds` set).
    method_settings: SparseGPT's block and damp, magnitude's per-output choice.
    finetune_steps: steps of masked training after pruning (0: none).
    finetune_schedule: the learning rate over those steps (the config's schedule
      stretched to `finetune_steps`), or None.
  """
  from_workdir: str
  method: OneShotMethod
  density: float
  structure: Structure
  calibration_examples: int
  calibration_seeds: tuple[int, ...]
  population: bool
  method_settings: OneShotSettings
  finetune_steps: int
  finetune_schedule: optim.Schedule | None


@dataclasses.dataclass(frozen=True)
class SourceRun:
  """The finished train run one-shot pruning starts from.

  Attributes:
    workdir: its directory.
    config_hash: its run's hash.
    step: the step of its final checkpoint.
    params, batch_stats: its final weights (host arrays).
    test_accuracy: its own final test accuracy (results.json).
  """
  workdir: str
  config_hash: str
  step: int
  params: Any
  batch_stats: Any
  test_accuracy: float | None


def training_size(exp: Experiment) -> int:
  """The number of training examples (held in memory or streamed from files)."""
  if exp.dataset.x_train is not None:
    return len(exp.dataset.x_train)
  return len(exp.dataset.train_source)


def oneshot_settings_from_config(config: ml_collections.ConfigDict,
                                 exp: Experiment) -> OneShotRunSettings:
  """Validates `config.oneshot` against `exp` (one-line ConfigErrors naming the field).

  `oneshot.calibration_seeds`, when set, replaces `oneshot.calibration_seed`.
  """
  o = config.oneshot
  if not isinstance(o.from_workdir, str) or not o.from_workdir:
    raise ConfigError("oneshot.from_workdir must name a finished train run's workdir, e.g. "
                      "--config.oneshot.from_workdir=/tmp/lotto_train")
  method = ONESHOT_METHODS.get(o.method)
  structure = parse_structure(o.structure, "oneshot.structure")
  if structure.kind == "block":
    raise ConfigError(f"oneshot.structure {structure} is not a one-shot structure; valid "
                      "choices: unstructured, n:m (e.g. '2:4')")
  density = masks_lib.check_density(o.density, "oneshot.density")
  if structure.kind == "n:m" and abs(density - structure.max_density) > 1e-9:
    raise ConfigError(f"oneshot.structure {structure} keeps density {structure.max_density:g}; "
                      f"set oneshot.density={structure.max_density:g} (got {o.density!r})")
  for name, leaf, flag in zip(masks_lib.leaf_names(exp.params_shape),
                              jax.tree.leaves(exp.params_shape), jax.tree.leaves(exp.prunable)):
    if flag:
      check_layer(leaf.shape, density, structure, name)
  examples = validators.positive_int(o.calibration_examples, "oneshot.calibration_examples")
  available = training_size(exp)
  if examples > available:
    raise ConfigError(f"oneshot.calibration_examples={examples} exceeds the {available} "
                      f"training examples of {exp.dataset.name}")
  seeds = _calibration_seeds(o.calibration_seed, o.calibration_seeds)
  block = validators.positive_int(o.block, "oneshot.block")
  damp = validators.number(o.damp, "oneshot.damp")
  if damp < 0:
    raise ConfigError(f"oneshot.damp must be >= 0; got {o.damp!r}")
  per_output = validators.boolean(o.per_output, "oneshot.per_output")
  steps = 0 if o.finetune in ("", None) else exp.duration(o.finetune, "oneshot.finetune")
  schedule = None if steps == 0 else optim.create_schedule(
      config.schedule.name, config.optimizer.learning_rate, steps, exp.steps_per_epoch,
      config.schedule.warmup, config.schedule.drops, config.schedule.drop_factor)
  return OneShotRunSettings(
      from_workdir=o.from_workdir, method=method, density=density, structure=structure,
      calibration_examples=examples, calibration_seeds=seeds,
      population=bool(tuple(o.calibration_seeds)),
      method_settings=OneShotSettings(block=block, damp=damp, per_output=per_output),
      finetune_steps=steps, finetune_schedule=schedule)


def _calibration_seeds(seed: Any, seeds: Any) -> tuple[int, ...]:
  validators.seed(seed, "oneshot.calibration_seed")
  seeds = validators.sequence(seeds, "oneshot.calibration_seeds", "(0, 1, 2, 3, 4)")
  if not seeds:
    return (int(seed),)
  for value in seeds:
    validators.seed(value, "each of oneshot.calibration_seeds")
  validators.distinct(seeds, "oneshot.calibration_seeds")
  return tuple(int(s) for s in seeds)


def _differences(saved: Any, wanted: Any, prefix: str) -> list[str]:
  if isinstance(saved, dict) and isinstance(wanted, dict):
    return [line for key in sorted(set(saved) | set(wanted))
            for line in _differences(saved.get(key, "<missing>"), wanted.get(key, "<missing>"),
                                     f"{prefix}.{key}")]
  return [] if saved == wanted else [f"{prefix}: saved {saved!r}, now {wanted!r}"]


def model_differences(saved_config: dict, run_config: dict) -> list[str]:
  """The `SAME_MODEL_FIELDS` where the source run's config differs from this run's."""
  saved = comparable(with_legacy(saved_config, run_config))
  wanted = comparable(run_config)
  lines = []
  for section, key in SAME_MODEL_FIELDS:
    if key is None:
      lines += _differences(saved.get(section, {}), wanted.get(section, {}), section)
    else:
      lines += _differences(saved.get(section, {}).get(key, "<missing>"),
                            wanted.get(section, {}).get(key, "<missing>"), f"{section}.{key}")
  return lines


def _finished_train_results(workdir: str) -> tuple[dict, dict]:
  """(config.json, results.json) of the finished train run in `workdir`."""
  what = f"oneshot.from_workdir={workdir}"
  if not files.is_dir(workdir):
    raise ConfigError(f"{what} does not exist; train the model first (mode=train) and name its "
                      "workdir")
  saved = runs.read_intact(os.path.join(workdir, runs.CONFIG_FILE), ("mode",))
  if saved is None:
    raise ConfigError(f"{what} holds no run (no readable {runs.CONFIG_FILE})")
  results = runs.read_intact(os.path.join(workdir, runs.RESULTS_FILE), ("mode",))
  if saved.get("seeds") or (results or {}).get("mode") == "population":
    raise ConfigError(f"{what} holds a population; name one replica, e.g. "
                      f"{os.path.join(workdir, 'seed_<s>')}")
  if saved["mode"] != "train":
    raise ConfigError(f"{what} holds a {saved['mode']} run; one-shot pruning starts from a "
                      "finished train run's final params")
  if results is None or results.get("complete") is False or "steps" not in results:
    raise ConfigError(f"{what} holds an unfinished train run (no final results); finish it by "
                      "re-running its command")
  if results.get("diverged"):
    raise ConfigError(f"{what} diverged at step {results.get('diverged_at_step')}; its final "
                      "params are not finite")
  return saved, results


def load_source(settings: OneShotRunSettings, exp: Experiment) -> SourceRun:
  """The finished train run of `oneshot.from_workdir`: checked, its final params read.

  Raises:
    ConfigError: one line: the workdir is missing, not a finished single train run,
      diverged, of another model or data (naming the first differing fields), or its
      final checkpoint is missing or damaged.
  """
  workdir = settings.from_workdir
  saved, results = _finished_train_results(workdir)
  differences = model_differences(saved, exp.run_config)
  if differences:
    raise ConfigError(f"oneshot.from_workdir={workdir} holds a run of another model or data "
                      f"({'; '.join(differences[:3])}{'; ...' if len(differences) > 3 else ''})"
                      "; use the trained run's model and data sections")
  step, state = read_saved_state(os.path.join(workdir, "checkpoints"), int(results["steps"]))
  params = jax.tree.map(np.asarray, state.get("params", {}))
  expected = [(n, tuple(l.shape)) for n, l in zip(masks_lib.leaf_names(exp.params_shape),
                                                  jax.tree.leaves(exp.params_shape))]
  found = [(n, tuple(np.shape(l))) for n, l in zip(masks_lib.leaf_names(params),
                                                   jax.tree.leaves(params))]
  if found != expected:
    raise ConfigError(f"the checkpoint at step {step} in {workdir}/checkpoints holds params "
                      f"that are not this model's ({len(found)} arrays, {len(expected)} "
                      "expected)")
  bad = [n for n, leaf in found_leaves(params) if not np.isfinite(leaf).all()]
  if bad:
    raise ConfigError(f"the final params in {workdir} are not finite (first {bad[0]})")
  return SourceRun(workdir=workdir, config_hash=str(results.get("config_hash", "")), step=step,
                   params=jax.tree.unflatten(jax.tree.structure(exp.params_shape),
                                             jax.tree.leaves(params)),
                   batch_stats=jax.tree.map(np.asarray, state.get("batch_stats", {}) or {}),
                   test_accuracy=results.get("final_test_accuracy"))


def found_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
  """(name, leaf) pairs of a pytree, in flattening order."""
  return list(zip(masks_lib.leaf_names(tree), jax.tree.leaves(tree)))
