"""Multi-process launches: when and how lotto joins a `jax.distributed` job.

`config.distributed` says whether to join one:

- "auto" (default): join when the environment shows a launch of more than one
  process (below), else run as a single process;
- "on": always join (a launch must be found);
- "off": never join (a single process, whatever the environment says).

A launch is read from the environment, in this order:

- lotto's own variables, for any launcher (`ssh`, a shell loop, a test):
  `LOTTO_NUM_PROCESSES`, `LOTTO_PROCESS_ID` and `LOTTO_COORDINATOR_ADDRESS`
  (host:port of process 0; `JAX_COORDINATOR_ADDRESS` is read too);
- the clusters `jax.distributed` detects itself: an `srun` step of SLURM
  (`SLURM_NTASKS` with the step's variables; a batch script's own process is
  not a launch), Open MPI (`OMPI_COMM_WORLD_SIZE`), a multi-host Cloud TPU
  slice (`TPU_WORKER_HOSTNAMES`).

Every process runs the same command. Each holds the whole (small) dataset and
the same deterministic data order, and feeds the devices it owns its part of
each global batch (`devices.shard_rows`); the global batch, hence the
numbers, are those of a single-process run (up to the order of the gradient
all-reduce). Only process 0 writes files and prints (`devices.is_main_process`);
orbax saves checkpoints collectively.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax

from lotto.core.errors import ConfigError

DISTRIBUTED = ("auto", "on", "off")
EXPLICIT = ("LOTTO_NUM_PROCESSES", "LOTTO_PROCESS_ID")
COORDINATOR = ("LOTTO_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")
# Process counts that launchers export: (the count's variable, what must be set with it,
# as for jax's own cluster detection). A SLURM batch script's single process has
# SLURM_NTASKS but no step: only an `srun` step is a launch.
SCHEDULER_COUNTS = (
    ("SLURM_NTASKS", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")),
    ("OMPI_COMM_WORLD_SIZE", ("OMPI_COMM_WORLD_RANK",)),
)


@dataclasses.dataclass(frozen=True)
class Launch:
  """A multi-process launch found in the environment.

  Attributes:
    num_processes: how many processes the launch has.
    process_id: this process's rank, or None when jax's cluster detection finds it.
    coordinator: process 0's host:port, or None when jax's cluster detection finds it.
    source: what the launch was read from (for messages).
  """
  num_processes: int
  process_id: int | None
  coordinator: str | None
  source: str


def _integer(env: Mapping[str, str], name: str) -> int:
  value = env[name].strip()
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f"{name}={value!r} is not an integer") from None


def _scheduler_count(env: Mapping[str, str]) -> tuple[int, str] | None:
  """(process count, variable) a scheduler exported, if any."""
  for name, required in SCHEDULER_COUNTS:
    if env.get(name, "").strip() and all(env.get(other, "").strip() for other in required):
      return _integer(env, name), name
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  if len(hosts) > 1:
    return len(hosts), "TPU_WORKER_HOSTNAMES"
  return None


def find_launch(env: Mapping[str, str] | None = None) -> Launch | None:
  """The multi-process launch the environment describes, or None for a single process.

  Raises:
    ConfigError: lotto's variables set only in part, not integers, a rank out of
      range, no coordinator address, or a process count that disagrees with the
      scheduler's (inconsistent process counts).
  """
  env = os.environ if env is None else env
  given = [name for name in EXPLICIT if env.get(name, "").strip()]
  scheduled = _scheduler_count(env)
  if given:
    if len(given) < len(EXPLICIT):
      missing = [name for name in EXPLICIT if name not in given]
      raise ConfigError(f"{given[0]} is set but {missing[0]} is not; a launch sets "
                        f"{', '.join(EXPLICIT)} and {COORDINATOR[0]} (host:port of process 0) "
                        "on every process")
    count, rank = _integer(env, EXPLICIT[0]), _integer(env, EXPLICIT[1])
    if count < 1 or not 0 <= rank < count:
      raise ConfigError(f"inconsistent launch: LOTTO_PROCESS_ID={rank} with "
                        f"LOTTO_NUM_PROCESSES={count}; ranks run from 0 to {count - 1}")
    if scheduled is not None and scheduled[0] != count:
      raise ConfigError(f"inconsistent process counts: LOTTO_NUM_PROCESSES={count} but "
                        f"{scheduled[1]}={scheduled[0]}; launch one lotto process per task")
    coordinator = next((env[name].strip() for name in COORDINATOR if env.get(name, "").strip()),
                       None)
    if count > 1 and coordinator is None:
      raise ConfigError(f"LOTTO_NUM_PROCESSES={count} needs {COORDINATOR[0]} (host:port of "
                        "process 0, the same on every process)")
    return Launch(count, rank, coordinator, "LOTTO_NUM_PROCESSES") if count > 1 else None
  if scheduled is not None and scheduled[0] > 1:
    return Launch(scheduled[0], None, None, scheduled[1])
  return None


def _initialized() -> bool:
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  return distributed.global_state.client is not None


def initialize(mode: str, env: Mapping[str, str] | None = None) -> int:
  """Joins the launch `config.distributed` asks for; returns the number of processes.

  Call it before any JAX computation (jobs do, first thing). Joining twice
  (a notebook re-running a cell) is a no-op.

  Raises:
    ConfigError: an unknown mode; "on" without a launch; a bad launch
      (`find_launch`); a coordinator that cannot be reached; or a process
      count the coordinator does not confirm (processes launched with
      different counts).
  """
  if mode not in DISTRIBUTED:
    raise ConfigError(f"unknown distributed {mode!r}; valid choices: {', '.join(DISTRIBUTED)}")
  if mode == "off" or _initialized():
    return jax.process_count() if _initialized() else 1
  launch = find_launch(env)
  if launch is None:
    if mode == "on":
      raise ConfigError("distributed=on but the environment shows no multi-process launch; "
                        f"set {', '.join(EXPLICIT)} and {COORDINATOR[0]} on every process, "
                        "launch under SLURM/MPI, or use distributed=auto")
    return 1
  try:
    jax.distributed.initialize(coordinator_address=launch.coordinator,
                               num_processes=launch.num_processes,
                               process_id=launch.process_id)
  except (RuntimeError, ValueError, TypeError) as error:
    raise ConfigError(f"cannot join the {launch.num_processes}-process launch from "
                      f"{launch.source}: {' '.join(str(error).split())[:300]}") from None
  if jax.process_count() != launch.num_processes:
    raise ConfigError(f"inconsistent process counts: this process was launched as one of "
                      f"{launch.num_processes} ({launch.source}) but the job has "
                      f"{jax.process_count()}; launch every process with the same count")
  return launch.num_processes
