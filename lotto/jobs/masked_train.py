"""The train job (`config.mode = "train"`): one dense or masked run from the seed's init."""
from __future__ import annotations

from typing import Sequence

import ml_collections

from lotto.jobs.experiment import create_experiment, job
from lotto.jobs.replicas import create_replicas, finish, run_seeds
from lotto.jobs.topology import topology_masks
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.hooks import Hook
from lotto.train.loop import train_replicas


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
  masks = [topology_masks(exp.topology, exp.params_shape, exp.prunable, seed)
           for seed in run_seeds(exp)]
  runs.prepare_workdir(exp.run_config, workdir)
  replicas = create_replicas(exp, workdir)
  _, summaries = train_replicas(replicas.trainer(), replicas.directories,
                                replicas.init_states(masks), keep=tuple(exp.save_steps),
                                hooks=hooks)
  results = [_results(member, summary)
             for member, summary in zip(replicas.members, summaries)]
  for directory, result in zip(replicas.directories, results):
    runs.write_results(directory, result)
    if exp.verbose and not replicas.pooled:
      note(f"final test accuracy {result['final_test_accuracy']:.2%}; early stop at step "
           f"{result['early_stop_step']} with test accuracy "
           f"{_percent(result['early_stop_test_accuracy'])}; density {result['density']:.2%}; "
           f"{result['wall_time_s']:.1f} s")
  return finish(workdir, replicas, results)


def _results(exp, summary: dict) -> dict:
  return {"mode": "train", "config_hash": runs.config_hash(exp.run_config),
          "topology": exp.topology.name, "control": exp.topology.control, **summary}


def _percent(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.2%}"
