"""Mask ablations of "Pruning at Initialization: Missing the Mark".

Each keeps *how many* weights a method chose (per layer or overall) and
destroys *which*: shuffling within layers, shuffling across layers, or an
even random mask at the global density. `invert` (keep the lowest scores) is
applied by the pruning driver to the scores, and `reinit` (same mask, fresh
values) by the job that builds the initial state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lotto.core import masks as masks_lib
from lotto.core.types import Masks, Prunable

ABLATIONS = ("none", "shuffle", "shuffle_global", "even", "reinit", "invert")


def shuffle_within_layers(key: jax.Array, masks: Masks, prunable: Prunable) -> Masks:
  """Permutes each prunable leaf's entries: per-layer counts kept exactly."""
  leaves, treedef = jax.tree.flatten(masks)
  out = [jax.random.permutation(jax.random.fold_in(key, i), m.ravel()).reshape(m.shape)
         if f else m for i, (m, f) in enumerate(zip(leaves, jax.tree.leaves(prunable)))]
  return jax.tree.unflatten(treedef, out)


def shuffle_globally(key: jax.Array, masks: Masks, prunable: Prunable) -> Masks:
  """Permutes mask entries across all prunable leaves (global count kept)."""
  leaves, treedef = jax.tree.flatten(masks)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  flat = jax.random.permutation(key, jnp.concatenate([leaves[i].ravel() for i in chosen]))
  out, offset = list(leaves), 0
  for i in chosen:
    out[i] = flat[offset:offset + leaves[i].size].reshape(leaves[i].shape)
    offset += leaves[i].size
  return jax.tree.unflatten(treedef, out)


def even_masks(key: jax.Array, masks: Masks, prunable: Prunable) -> Masks:
  """A random mask with every prunable layer at the global density of `masks`."""
  return masks_lib.random_masks(key, masks, prunable, masks_lib.density(masks, prunable))
