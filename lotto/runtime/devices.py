"""Devices, placement and process rank: the one place lotto decides where arrays live.

- The data-parallel mesh (`create_mesh`) and how arrays are placed on it:
  replicated state and data (`replicate`), sharded batch indices
  (`shard_rows`) and streamed batches (`shard_local_rows`, from this process's
  `local_columns`).
- The train loops (`TRAIN_LOOPS`): "scan" compiles a block of steps as one
  `lax.scan` (the default on every backend: with `models.conv_grad` it is
  faster than dispatch on conv nets too), "step" dispatches one compiled step
  per step (one compile for blocks of any length).
- The process-0 rule: only the main process writes files and prints
  (`is_main_process`, `note`), as in big_vision's `write_note`.
- Meshes over several processes (`runtime.distributed`): replicated values
  are assembled from each process's identical copy, batches from each
  process's share of the columns (`spans_processes`).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from lotto.core.errors import ConfigError
from lotto.core.types import PyTree

DATA_PARALLEL = ("auto", "on", "off")
TRAIN_LOOPS = ("scan", "step")


def is_main_process() -> bool:
  """True on process 0 (every single-process run): the only one that writes."""
  return jax.process_index() == 0


def note(text: str) -> None:
  """Prints a progress line on the main process only (flushed at once)."""
  if is_main_process():
    print(text, flush=True)


def create_mesh(mode: str, batch_size: int) -> Mesh | None:
  """A 1-D "data" mesh over all devices, or None (single device).

  Args:
    mode: "auto" (a mesh when there is more than one device), "on", "off".
    batch_size: the global batch, which must split evenly over the devices.

  Raises:
    ConfigError: unknown mode, or a batch not divisible by the device count.
  """
  if mode not in DATA_PARALLEL:
    raise ConfigError(f"unknown data_parallel {mode!r}; valid choices: {', '.join(DATA_PARALLEL)}")
  devices = jax.devices()
  if mode == "off" and jax.process_count() > 1:
    raise ConfigError(f"data_parallel=off in a {jax.process_count()}-process launch: each process "
                      "would train alone; use data_parallel=auto or launch a single process")
  if mode == "off" or (mode == "auto" and len(devices) == 1):
    return None
  if batch_size % len(devices):
    count = len(devices)
    below, above = (batch_size // count) * count, (batch_size // count + 1) * count
    nearest = f"{below} or {above}" if below else f"{above}"
    raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {count} devices; "
                      f"the nearest valid sizes are {nearest} (or set "
                      "data.per_device_batch_size with data.batch_size=0, or data_parallel=off)")
  return Mesh(devices, ("data",))


def replicated_sharding(mesh: Mesh | None):
  """Where replicated arrays live: the first local device, or everywhere on the mesh."""
  if mesh is None:
    return SingleDeviceSharding(jax.local_devices()[0])
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree: PyTree, mesh: Mesh | None) -> PyTree:
  """`tree` committed to an explicit replicated sharding.

  Always commit: a state restored from a checkpoint arrives committed, a
  fresh one does not, and jit would compile once per kind.
  """
  if not spans_processes(mesh):
    return jax.device_put(tree, replicated_sharding(mesh))
  sharding = replicated_sharding(mesh)

  def assemble(leaf):  # every process holds the same value: each places its own copies
    host = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(assemble, tree)


def spans_processes(mesh: Mesh | None) -> bool:
  """True when `mesh` has devices of other processes (a multi-process launch)."""
  return mesh is not None and jax.process_count() > 1


def local_columns(mesh: Mesh | None, batch_size: int) -> tuple[int, int]:
  """The columns [start, stop) of every global batch that this process's devices own:
  the whole batch unless the mesh spans several processes (each process's devices own
  one contiguous range)."""
  if not spans_processes(mesh):
    return 0, batch_size
  sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
  columns = sorted({(index[1].start or 0, index[1].stop or batch_size)
                    for index in sharding.addressable_devices_indices_map(
                        (1, batch_size)).values()})
  return columns[0][0], columns[-1][1]


def shard_local_rows(local: Any, mesh: Mesh | None, batch_size: int) -> jax.Array:
  """A [steps, batch, ...] array (indices or examples) with its batch axis split over the
  mesh, from this process's columns of it (`local_columns`; all of it in a single
  process); with several processes `jax.make_array_from_process_local_data` assembles
  the global batch from each process's columns."""
  if mesh is None:
    return jax.device_put(local, SingleDeviceSharding(jax.local_devices()[0]))
  sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
  if not spans_processes(mesh):
    return jax.device_put(local, sharding)
  local = np.asarray(local)
  return jax.make_array_from_process_local_data(
      sharding, local, (local.shape[0], batch_size, *local.shape[2:]))


def shard_rows(array: Any, mesh: Mesh | None) -> jax.Array:
  """A [steps, batch] index array with its batch axis split over the mesh.

  Every process holds the whole (deterministic) array; with several
  processes, each contributes only the columns its devices own and
  `jax.make_array_from_process_local_data` assembles the global batch.
  """
  if not spans_processes(mesh):
    return shard_local_rows(array, mesh, np.shape(array)[1])
  array = np.asarray(array)
  start, stop = local_columns(mesh, array.shape[1])
  return shard_local_rows(array[:, start:stop], mesh, array.shape[1])


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of a batch's leading axis over the "data" axis (inside jit)."""
  return NamedSharding(mesh, PartitionSpec("data"))
