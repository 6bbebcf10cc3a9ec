"""A job's replicas: K >= 1 runs of one setup trained by one `Trainer` in one program.

A job builds its replicas and trains them together (`lotto.train.loop.
train_replicas`): one replica is a single run (`config.seeds = ()`, the run
of `config.seed` in the workdir itself); `config.seeds = (0, 1, 2, 3)` makes a
population whose replica s writes what a single run of seed s writes, in
`workdir/seed_<s>/` (its own config.json with `seed = s`, checkpoints and
results.json), so `lotto report` and the single-run tools read it as such; the
workdir's results.json (`mode = "population"`) then pools the replicas (mean,
std and the per-seed values of the final and early-stop accuracy). Sweep cells
of equal shapes are replicas too (`cell_replicas`), each in its cell's
directory, not pooled.

Results of K > 1 replicas equal K separate runs within float rounding (XLA's
batched matmuls reduce in another order than single ones; BUILD_NOTES.md has
the measured differences), and a killed population resumes from the newest
step every replica saved.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.types import Masks
from lotto.core.errors import ConfigError
from lotto.dynamic.update import MaskUpdate
from lotto.jobs.experiment import Experiment
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.condensed_state import CondensedLayout
from lotto.train.state import TrainState
from lotto.train.trainer import Trainer

# (A language model's results also pool its bits per character and perplexity.)
POOLED_METRICS = ("final_test_accuracy", "early_stop_test_accuracy", "final_test_loss", "density",
                  "final_test_bpc", "final_test_perplexity")


def seed_dir(workdir: str, seed: int) -> str:
  """Where replica `seed` of a population writes: what a single run of it would."""
  return os.path.join(workdir, f"seed_{seed}")


def replica_config(run_config: dict, seed: int) -> dict:
  """The run config (JSON data) of a single run of `seed`: `seed = seed` and no `seeds`."""
  return {**run_config, "seed": seed, "seeds": []}


@dataclasses.dataclass
class Replicas:
  """The replicas of a job: one experiment and directory each.

  Attributes:
    experiment: the shared setup (the first replica's seed; a population's run
      config); what compiles.
    members: each replica's experiment (its seed and single-run config).
    directories: each replica's run directory.
    pooled: a population (`config.seeds`): the workdir's results pool the
      replicas'; False for a single run and for sweep cells.
  """
  experiment: Experiment
  members: list[Experiment]
  directories: list[str]
  pooled: bool = False

  @property
  def seeds(self) -> tuple[int, ...]:
    return tuple(member.seed for member in self.members)

  def trainer(self, mask_update: MaskUpdate | None = None,
              layout: CondensedLayout | None = None) -> Trainer:
    """The trainer of these replicas (vmapped over them only when there are several);
    `layout`: condensed execution (`train.condensed_state`)."""
    return Trainer(self.experiment, mask_update=mask_update, seeds=self.seeds, layout=layout)

  def init_states(self, masks: Sequence[Masks | None] | None = None) -> list[TrainState]:
    """Each replica's fresh state from its seed's init (with its mask if given)."""
    masks = [None] * len(self.members) if masks is None else masks
    return [member.init_state(m) for member, m in zip(self.members, masks)]

  def subdirectories(self, name: str) -> list[str]:
    return [os.path.join(d, name) for d in self.directories]


def run_seeds(exp: Experiment) -> tuple[int, ...]:
  """The seeds of the replicas `create_replicas` builds: `config.seeds`, or the run's seed."""
  return exp.seeds or (exp.seed,)


def create_replicas(exp: Experiment, workdir: str) -> Replicas:
  """A single run in `workdir`, or for `config.seeds` a population in `workdir/seed_<s>`.

  Call after `runs.prepare_workdir(exp.run_config, workdir)` (which locks the
  workdir). A population checks that it fits in memory and claims each
  replica directory for the replica's single-run config (without a lock of
  its own); it runs on one device.

  Raises:
    ConfigError: the population does not fit in memory, or a replica
      directory holds another config's run.
  """
  if not exp.seeds:
    return Replicas(exp, [exp], [workdir])
  seeds = exp.seeds
  if exp.mesh is not None:
    note(f"a population runs on one device: {len(seeds)} replicas on {jax.local_devices()[0]}")
    exp = dataclasses.replace(exp, mesh=None)
  check_memory(exp, len(seeds))
  members, directories = [], []
  for seed in seeds:
    single = replica_config(exp.run_config, seed)
    members.append(dataclasses.replace(exp, seed=seed, run_config=single))
    directories.append(seed_dir(workdir, seed))
    runs.claim_identity(single, directories[-1])
  # The shared setup keeps the population's run config (its hash names the workdir).
  return Replicas(dataclasses.replace(exp, seed=seeds[0]), members, directories, pooled=True)


def cell_replicas(cells: Sequence[tuple[Experiment, str]]) -> Replicas:
  """Sweep cells of equal shapes as replicas: each cell's experiment trains as a replica
  and writes its own directory, exactly what the cell run alone writes.

  Each cell directory is checked and locked as a single run's (`runs.prepare_workdir`).

  Raises:
    ConfigError: the cells do not fit in memory together, or a cell directory holds
      another config's run.
  """
  members = [dataclasses.replace(exp, mesh=None) for exp, _ in cells]
  check_memory(members[0], len(cells))
  for exp, directory in cells:
    runs.prepare_workdir(exp.run_config, directory)
  return Replicas(members[0], members, [directory for _, directory in cells])


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


def pool(results: Sequence[dict], seeds: Sequence[int],
         metrics: Sequence[str] = POOLED_METRICS) -> dict:
  """Mean, std (population, ddof=0) and per-seed values of `metrics` (those every result
  holds), keyed by seed."""
  pooled = {}
  for key in metrics:
    values = [r.get(key) for r in results]
    if any(v is None for v in values):
      continue
    pooled[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                   "values": dict(zip(map(str, seeds), map(float, values)))}
  return pooled


def finish(workdir: str, replicas: Replicas, results: Sequence[dict]) -> dict:
  """What a job returns once each replica wrote its results: a single run's results, or
  for a population the workdir's results.json of pooled metrics (written here)."""
  if not replicas.pooled:
    return results[0]
  exp = replicas.experiment
  summary = {"mode": "population", "base_mode": exp.mode,
             "config_hash": runs.config_hash(exp.run_config), "seeds": list(replicas.seeds),
             "replicas": [os.path.basename(d) for d in replicas.directories],
             "pooled": pool(results, replicas.seeds), "complete": True,
             "wall_time_s": max((r.get("wall_time_s", 0.0) for r in results), default=0.0)}
  runs.write_results(workdir, summary)
  if exp.verbose:
    accuracy = summary["pooled"].get("final_test_accuracy")
    if accuracy:
      note(f"{len(replicas.seeds)} seeds: final test accuracy {accuracy['mean']:.2%} +- "
           f"{accuracy['std']:.2%}")
  return summary
