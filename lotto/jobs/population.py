"""Populations (`config.seeds = (0, 1, 2, 3)`): K runs of one mode in one compiled program.

`train`, `prune`, `imp` and `sparse_train` run the K seeds' replicas together
(`lotto.train.population`): one stacked TrainState, the train block
`vmap`ped over it. Replica s writes what a single run of seed s writes, in
`workdir/seed_<s>/` (its own config.json with `seed = s`, checkpoints and
results.json), so `lotto report` and the single-run tools read it as such;
the workdir's results.json (`mode = "population"`) pools the replicas
(mean, std and the per-seed values of the final and early-stop accuracy).

Results equal K separate runs within float rounding (XLA's batched matmuls
reduce in another order than single ones; BUILD_NOTES.md has the measured
differences), and a killed population resumes from the newest step every
replica saved.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lotto.core.errors import ConfigError
from lotto.jobs.experiment import Experiment
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.state import TrainState

POOLED_METRICS = ("final_test_accuracy", "early_stop_test_accuracy", "final_test_loss", "density")


def seed_dir(workdir: str, seed: int) -> str:
  """Where replica `seed` of a population writes: what a single run of it would."""
  return os.path.join(workdir, f"seed_{seed}")


def replica_config(run_config: dict, seed: int) -> dict:
  """The run config (JSON data) of a single run of `seed`: `seed = seed` and no `seeds`."""
  return {**run_config, "seed": seed, "seeds": []}


@dataclasses.dataclass
class Population:
  """The replicas of a population: one experiment and directory per seed.

  Attributes:
    experiment: the shared setup (seed of the first replica); what compiles.
    seeds: the replicas' seeds.
    replicas: each seed's experiment (its seed and single-run config).
    directories: each seed's directory, `workdir/seed_<s>`.
  """
  experiment: Experiment
  seeds: tuple[int, ...]
  replicas: list[Experiment]
  directories: list[str]

  def init_states(self, masks: Sequence | None = None) -> list[TrainState]:
    """Each replica's fresh state from its seed's init (with its mask if given)."""
    masks = [None] * len(self.seeds) if masks is None else masks
    return [exp.init_state(m) for exp, m in zip(self.replicas, masks)]

  def subdirectories(self, name: str) -> list[str]:
    return [os.path.join(d, name) for d in self.directories]


def create_population(exp: Experiment, workdir: str, legacy: dict) -> Population:
  """Checks memory, claims `workdir/seed_<s>` for each replica's single-run config.

  Call after `runs.prepare_workdir(exp.run_config, workdir)` (which locks the
  workdir; the replica directories are claimed without a lock of their own).

  Raises:
    ConfigError: the population does not fit in memory, or a replica
      directory holds another config's run.
  """
  seeds = exp.seeds
  if exp.mesh is not None:
    note(f"a population runs on one device: {len(seeds)} replicas on {jax.local_devices()[0]}")
    exp = dataclasses.replace(exp, mesh=None)
  check_memory(exp, len(seeds))
  replicas, directories = [], []
  for seed in seeds:
    single = replica_config(exp.run_config, seed)
    replicas.append(dataclasses.replace(exp, seed=seed, run_config=single))
    directories.append(seed_dir(workdir, seed))
    runs.claim_identity(single, directories[-1], legacy)
  first = dataclasses.replace(exp, seed=seeds[0])
  return Population(first, seeds, replicas, directories)


def cell_population(cells: Sequence[tuple[Experiment, str]], legacy: dict) -> Population:
  """Sweep cells of equal shapes as one population: each cell's experiment trains as a
  replica and writes its own directory, exactly what the cell run alone writes.

  Each cell directory is checked and locked as a single run's (`runs.prepare_workdir`).

  Raises:
    ConfigError: the cells do not fit in memory together, or a cell directory holds
      another config's run.
  """
  first = cells[0][0]
  if first.mesh is not None:
    first = dataclasses.replace(first, mesh=None)
  check_memory(first, len(cells))
  for exp, directory in cells:
    runs.prepare_workdir(exp.run_config, directory, legacy)
  replicas = [dataclasses.replace(exp, mesh=None) for exp, _ in cells]
  return Population(first, tuple(exp.seed for exp in replicas), replicas,
                    [directory for _, directory in cells])


def replica_bytes(exp: Experiment) -> int:
  """An upper estimate of one replica's training memory, in bytes.

  The state (params, masks, two optimizer moments), the step's gradients and
  updates (three more params-sized buffers), and every layer's activations of
  one batch kept for the backward pass (forward and gradient, float32).
  """
  params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(exp.params_shape))

  def activations():  # traced by eval_shape only: no arrays are created
    x = jnp.zeros((1, *exp.dataset.input_shape), jnp.float32)
    variables = exp.model.init(jax.random.PRNGKey(0), x, train=False)
    return exp.model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=["intermediates"])[1]

  per_example = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(jax.eval_shape(activations)))
  return params * 4 * 6 + params + per_example * exp.batch_size * 4 * 2


def available_bytes() -> int:
  """Memory the replicas can use: the accelerator's limit, or the host's available RAM."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  try:  # MemAvailable counts reclaimable page cache; free pages alone would undercount
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(exp: Experiment, count: int, available: int | None = None) -> None:
  """Refuses a population whose estimate (`replica_bytes` x K) exceeds the available memory.

  Raises:
    ConfigError: naming the estimate, what is available and the largest K that fits.
  """
  available = available_bytes() if available is None else available
  each = replica_bytes(exp)
  if each * count > available:
    fits = max(0, available // each)
    raise ConfigError(f"a population of {count} replicas needs about {_gib(each * count)} "
                      f"({_gib(each)} each), more than the {_gib(available)} available on "
                      f"{jax.local_devices()[0].platform}; use at most {fits} seeds per run")


def _gib(count: int) -> str:
  return f"{count / 2**30:.2f} GiB"


def pool(results: Sequence[dict], seeds: Sequence[int]) -> dict:
  """Mean, std (population, ddof=0) and per-seed values of `POOLED_METRICS`."""
  pooled = {}
  for key in POOLED_METRICS:
    values = [r.get(key) for r in results]
    if any(v is None for v in values):
      continue
    pooled[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                   "values": dict(zip(map(str, seeds), map(float, values)))}
  return pooled


def write_population_results(workdir: str, exp: Experiment, config: ml_collections.ConfigDict,
                             population: Population, results: Sequence[dict]) -> dict:
  """The workdir's results.json: the replicas' directories and pooled metrics."""
  summary = {"mode": "population", "base_mode": config.mode,
             "config_hash": runs.config_hash(exp.run_config), "seeds": list(population.seeds),
             "replicas": [os.path.basename(d) for d in population.directories],
             "pooled": pool(results, population.seeds), "complete": True,
             "wall_time_s": max((r.get("wall_time_s", 0.0) for r in results), default=0.0)}
  runs.write_results(workdir, summary)
  if exp.verbose:
    accuracy = summary["pooled"].get("final_test_accuracy")
    if accuracy:
      note(f"{len(population.seeds)} seeds: final test accuracy {accuracy['mean']:.2%} +- "
           f"{accuracy['std']:.2%}")
  return summary
