"""What every compressed kernel shares: the input check, pytree layers with static shapes,
and the split into arrays and metadata that `lotto.sparse.serialize` stores.

A compressed layer holds one masked Dense kernel W[in, out] with mask M in a
kernel-specific layout. Its arrays (values, indices) are pytree leaves; its
shapes and counts are static metadata, so every kernel traces to one program
with static shapes (exact-k selection fixes each layer's number of survivors).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from lotto.core.errors import ConfigError


def static(**kwargs: Any) -> Any:
  """A dataclass field that is static metadata of the pytree (an int or a tuple of ints)."""
  return dataclasses.field(metadata={"static": True}, **kwargs)


def sparse_layer(cls: type) -> type:
  """Class decorator: a frozen dataclass registered as a pytree (fields marked `static()`
  are metadata; the others are arrays)."""
  return jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(cls))


def array_fields(layer: Any) -> dict[str, np.ndarray]:
  """The layer's array fields, as numpy arrays keyed by field name."""
  return {f.name: np.asarray(getattr(layer, f.name)) for f in dataclasses.fields(layer)
          if not f.metadata.get("static")}


def static_fields(layer: Any) -> dict[str, Any]:
  """The layer's static fields as JSON data (tuples become lists)."""
  out = {}
  for f in dataclasses.fields(layer):
    if f.metadata.get("static"):
      value = getattr(layer, f.name)
      out[f.name] = list(value) if isinstance(value, tuple) else value
  return out


def rebuild(cls: type, static_data: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
  """The layer of type `cls` from `static_fields` and `array_fields` output.

  Raises:
    ConfigError: a field is missing (a damaged or foreign file).
  """
  kwargs = {}
  for f in dataclasses.fields(cls):
    source = static_data if f.metadata.get("static") else arrays
    if f.name not in source:
      raise ConfigError(f"compressed layer of type {cls.__name__} lacks field {f.name!r}")
    value = source[f.name]
    kwargs[f.name] = tuple(value) if isinstance(value, list) else value
  return cls(**kwargs)


def check_kernel(weights: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
  """(W * M, M) as numpy arrays, for a Dense kernel W[in, out] and its bool mask.

  Raises:
    ConfigError: not a 2-D kernel, or the mask's shape differs.
  """
  weights, mask = np.asarray(weights), np.asarray(mask)
  if weights.ndim != 2:
    raise ConfigError(f"compressed kernels take a Dense kernel of shape (in, out); got shape "
                      f"{weights.shape}")
  if mask.shape != weights.shape:
    raise ConfigError(f"mask shape {mask.shape} differs from the kernel's {weights.shape}")
  mask = mask.astype(bool)
  return np.where(mask, weights, np.zeros_like(weights)), mask


def divisors(n: int) -> list[int]:
  """The divisors of n >= 1, ascending."""
  small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
  return sorted(set(small + [n // d for d in small]))
