"""One-shot pruning methods as registered objects: magnitude, Wanda, SparseGPT.

A `OneShotMethod` carries what a job needs to prune a trained network layer
by layer without comparing method names: whether it needs calibration
statistics of each layer's inputs (and the full X^T X, not only the
per-input sums of squares), whether it changes the kept weights, and
`prune_layer(kernel, stats, density, structure, settings, name) -> (kernel,
mask)`, which returns the pruned kernel (0 where the mask is False) and the
mask (True = kept). Adding a method is one `ONESHOT_METHODS.register` entry
and its tests.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.structure import Structure
from lotto.pruning.oneshot import (InputStatistics, hessian, input_norms, magnitude_mask,
                                   wanda_mask)
from lotto.pruning.sparsegpt import sparsegpt


@dataclasses.dataclass(frozen=True)
class OneShotSettings:
  """Method settings beyond density and structure.

  Attributes:
    block: SparseGPT's inputs per block of lazy updates (and of its
      adaptive unstructured mask selection); 128 in the paper.
    damp: SparseGPT's dampening, lambda = damp * mean(diag H); 0.01.
    per_output: magnitude compares |W| within each output unit instead of
      the whole layer (Wanda's baseline compares per layer).
  """
  block: int = 128
  damp: float = 0.01
  per_output: bool = False


def check_settings(settings: OneShotSettings) -> OneShotSettings:
  """Returns `settings` if block >= 1 and damp is finite and >= 0.

  Raises:
    ConfigError: one line naming the bad setting.
  """
  if not isinstance(settings.block, int) or settings.block < 1:
    raise ConfigError(f"one-shot block must be a positive integer; got {settings.block!r}")
  damp = settings.damp
  if not isinstance(damp, (int, float)) or not math.isfinite(damp) or damp < 0:
    raise ConfigError(f"one-shot damp must be a finite number >= 0; got {damp!r}")
  return settings


PruneLayer = Callable[..., tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class OneShotMethod:
  """One one-shot pruning method.

  Attributes:
    name: its registry name.
    summary: one line for `--help` and the docs.
    needs_calibration: it needs `InputStatistics` of each layer's inputs.
    needs_gram: those statistics must hold X^T X (`with_gram=True`).
    updates_weights: it changes kept weights (so the calibration inputs of
      later layers must come from the already pruned earlier ones).
    prune_layer: (kernel, stats or None, density, structure, settings,
      name="layer") -> (pruned kernel, mask).
  """
  name: str
  summary: str
  needs_calibration: bool
  needs_gram: bool
  updates_weights: bool
  prune_layer: PruneLayer


def _statistics(method: str, stats: InputStatistics | None, name: str,
                gram: bool) -> InputStatistics:
  if stats is None or (gram and stats.gram is None):
    what = "X^T X" if gram else "input norms"
    raise ConfigError(f"{method}: layer {name} needs calibration statistics with {what}")
  return stats


def prune_magnitude(kernel: jax.Array, stats: InputStatistics | None, density: float,
                    structure: Structure, settings: OneShotSettings,
                    name: str = "layer") -> tuple[jax.Array, jax.Array]:
  """Magnitude pruning (`oneshot.magnitude_mask`); `stats` is ignored."""
  del stats
  mask = magnitude_mask(kernel, density, structure, settings.per_output, name)
  return jnp.where(mask, kernel, 0).astype(kernel.dtype), mask


def prune_wanda(kernel: jax.Array, stats: InputStatistics | None, density: float,
                structure: Structure, settings: OneShotSettings,
                name: str = "layer") -> tuple[jax.Array, jax.Array]:
  """Wanda (`oneshot.wanda_mask`) with the norms of `stats`; kept weights unchanged."""
  del settings
  norms = input_norms(_statistics("wanda", stats, name, gram=False))
  mask = wanda_mask(kernel, norms, density, structure, name)
  return jnp.where(mask, kernel, 0).astype(kernel.dtype), mask


def prune_sparsegpt(kernel: jax.Array, stats: InputStatistics | None, density: float,
                    structure: Structure, settings: OneShotSettings,
                    name: str = "layer") -> tuple[jax.Array, jax.Array]:
  """SparseGPT (`sparsegpt.sparsegpt`) with H = (2 / n) X^T X of `stats`."""
  check_settings(settings)
  hess = hessian(_statistics("sparsegpt", stats, name, gram=True))
  return sparsegpt(kernel, hess, density, structure, settings.block, settings.damp, name)


ONESHOT_METHODS: Registry[OneShotMethod] = Registry("one-shot method", ordered=True)

ONESHOT_METHODS.register("magnitude", OneShotMethod(
    name="magnitude", summary="the lowest |W| pruned per layer (or per output unit); the "
    "baseline", needs_calibration=False, needs_gram=False, updates_weights=False,
    prune_layer=prune_magnitude))
ONESHOT_METHODS.register("wanda", OneShotMethod(
    name="wanda", summary="|W| x input activation norm, per output unit (Sun et al., ICLR "
    "2024); no weight update", needs_calibration=True, needs_gram=False,
    updates_weights=False, prune_layer=prune_wanda))
ONESHOT_METHODS.register("sparsegpt", OneShotMethod(
    name="sparsegpt", summary="OBS reconstruction with the inverse Hessian of the layer's "
    "inputs (Frantar & Alistarh, ICML 2023)", needs_calibration=True, needs_gram=True,
    updates_weights=True, prune_layer=prune_sparsegpt))
