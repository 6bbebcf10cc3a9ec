"""The train job (`config.mode = "train"`): one dense or masked run from the seed's init."""
from __future__ import annotations

from typing import Sequence

import ml_collections

from lotto.jobs.defaults import LEGACY_FIELDS
from lotto.jobs.experiment import create_experiment, job
from lotto.jobs.population import create_population, write_population_results
from lotto.jobs.topology import topology_masks
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.hooks import Hook
from lotto.train.loop import train_run
from lotto.train.population import PopulationTrainer, population_train_run
from lotto.train.trainer import Trainer


@job("train")
def run_train(config: ml_collections.ConfigDict, workdir: str,
              hooks: Sequence[Hook] = ()) -> dict:
  """One (masked or dense) training run: `config.mode == "train"`.

  Trains the model of `config` from the seed's init to `train.duration`,
  keeping checkpoints at `train.save_at` and the end, resuming from
  `workdir/checkpoints` if a previous run was interrupted, and writes
  `workdir/results.json`.

  Args:
    config: any config (see `jobs.defaults.get_base_config`).
    workdir: the run directory (created; resumed if it holds this config).
    hooks: run between train blocks (`lotto.train.hooks`); tests inject
      crashes with them.

  Returns:
    The results dict (final and early-stop test accuracy, density, per-layer
    density, steps, wall time, evaluation history).

  Raises:
    ConfigError: an invalid field, or a workdir holding another config.
    Diverged: a non-finite loss with `train.on_nan = "stop"` (results.json
      then says `"diverged": true`).
  """
  exp = create_experiment(config)
  if exp.seeds:
    return _run_population(config, exp, workdir, hooks)
  masks = topology_masks(config, exp.params_shape, exp.prunable, exp.seed)
  runs.prepare_workdir(exp.run_config, workdir, LEGACY_FIELDS)
  trainer = Trainer(exp)
  _, summary = train_run(trainer, workdir, exp.init_state(masks), keep=tuple(exp.save_steps),
                         hooks=hooks)
  results = _results(config, exp, summary)
  runs.write_results(workdir, results)
  if exp.verbose:
    note(f"final test accuracy {results['final_test_accuracy']:.2%}; early stop at step "
         f"{results['early_stop_step']} with test accuracy "
         f"{_percent(results['early_stop_test_accuracy'])}; density {results['density']:.2%}; "
         f"{results['wall_time_s']:.1f} s")
  return results


def _results(config: ml_collections.ConfigDict, exp, summary: dict) -> dict:
  return {"mode": "train", "config_hash": runs.config_hash(exp.run_config),
          "topology": config.topology.name, "control": config.topology.control, **summary}


def _run_population(config: ml_collections.ConfigDict, exp, workdir: str,
                    hooks: Sequence[Hook]) -> dict:
  """`config.seeds`: the seeds' runs in one program, each written to `workdir/seed_<s>`."""
  masks = [topology_masks(config, exp.params_shape, exp.prunable, seed) for seed in exp.seeds]
  runs.prepare_workdir(exp.run_config, workdir, LEGACY_FIELDS)
  population = create_population(exp, workdir, LEGACY_FIELDS)
  trainer = PopulationTrainer(population.experiment, population.seeds)
  _, summaries = population_train_run(trainer, population.directories,
                                      population.init_states(masks),
                                      keep=tuple(exp.save_steps), hooks=hooks)
  results = [_results(config, replica, summary)
             for replica, summary in zip(population.replicas, summaries)]
  for directory, result in zip(population.directories, results):
    runs.write_results(directory, result)
  return write_population_results(workdir, exp, config, population, results)


def _percent(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.2%}"
