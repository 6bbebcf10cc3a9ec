"""Config fields whose meaning depends on the machine, resolved once where a job starts.

- `prune.synflow_dtype = "auto"` (the default): float64 where the backend
  computes it natively (CPU, GPU; x64 scoped to the scoring), and
  "float32_rescaled" on a TPU, which has no native 64-bit arithmetic. An
  explicit "float64" on a TPU is refused in one line.
- `data.per_device_batch_size`: the global batch is it times the devices
  the step is spread over (all of them on a data-parallel mesh, else one),
  for notebooks and scripts that do not know the device count in advance.
  It and `data.batch_size` are alternatives: set the other to 0.

The resolved config is what the run's config.json holds and what its hash is
taken of (resolving an already resolved config changes nothing), so a run
resumed on a machine where a field resolves differently (another device
count, a TPU instead of a GPU) is refused as a different run, not mixed.
"""
from __future__ import annotations

import copy

import jax
import ml_collections

from lotto.core.errors import ConfigError
from lotto.core.scores import SYNFLOW_DTYPES
from lotto.jobs import validators
from lotto.runtime.devices import DATA_PARALLEL

SYNFLOW_DTYPE_CHOICES = ("auto",) + SYNFLOW_DTYPES


def synflow_dtype(value: str, backend: str | None = None) -> str:
  """The SynFlow scoring dtype `value` asks for on `backend` (default: JAX's).

  Raises:
    ConfigError: an unknown value, or float64 asked of a TPU.
  """
  validators.choice(value, SYNFLOW_DTYPE_CHOICES, "prune.synflow_dtype")
  backend = backend or jax.default_backend()
  if value == "auto":
    return "float32_rescaled" if backend == "tpu" else "float64"
  if value == "float64" and backend == "tpu":
    raise ConfigError("prune.synflow_dtype=float64 asks a TPU for 64-bit arithmetic it does not "
                      "have; use prune.synflow_dtype=auto (float32_rescaled on a TPU, float64 "
                      "elsewhere) or float32_rescaled")
  return value


def mesh_device_count(data_parallel: str) -> int:
  """How many devices a step is spread over under `data_parallel` (auto, on, off)."""
  validators.choice(data_parallel, DATA_PARALLEL, "data_parallel")
  return 1 if data_parallel == "off" else jax.device_count()


def global_batch_size(batch_size: int, per_device_batch_size: int, data_parallel: str) -> int:
  """The global batch from `data.batch_size` or `data.per_device_batch_size` (the other 0).

  Raises:
    ConfigError: both or neither set, or a negative / non-integer value.
  """
  if isinstance(per_device_batch_size, bool) or not isinstance(per_device_batch_size, int) or (
      per_device_batch_size < 0):
    raise ConfigError(f"data.per_device_batch_size must be a non-negative integer (0: use "
                      f"data.batch_size); got {per_device_batch_size!r}")
  if not per_device_batch_size:
    return validators.positive_int(batch_size, "data.batch_size")
  count = mesh_device_count(data_parallel)
  if batch_size:
    raise ConfigError(f"data.batch_size={batch_size} and data.per_device_batch_size="
                      f"{per_device_batch_size} are both set; set data.batch_size=0 to use the "
                      f"per-device batch (global batch {per_device_batch_size} x {count} "
                      f"device{'s' if count > 1 else ''} = {per_device_batch_size * count}) or "
                      "data.per_device_batch_size=0")
  return per_device_batch_size * count


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with the machine-dependent fields resolved (module docstring).

  Raises:
    ConfigError: as `synflow_dtype` and `global_batch_size`.
  """
  resolved = copy.deepcopy(config)
  resolved.prune.synflow_dtype = synflow_dtype(config.prune.synflow_dtype)
  resolved.data.batch_size = global_batch_size(config.data.batch_size,
                                               config.data.per_device_batch_size,
                                               config.get("data_parallel", "auto"))
  resolved.data.per_device_batch_size = 0
  return resolved
