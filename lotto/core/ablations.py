"""Mask ablations of "Pruning at Initialization: Missing the Mark" (`prune.ablation`).

Each keeps *how many* weights a method chose (per layer or overall) and
destroys *which*, or *what values* they start from: shuffling within layers,
shuffling across layers, an even random mask at the global density, the
inverted ranking (keep the lowest scores), or the same mask from a fresh
init. An `Ablation` entry says which of these it does, so the pruning job
applies any of them without comparing names.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from lotto.core import masks as masks_lib
from lotto.core.registry import Registry
from lotto.core.types import Masks, Prunable

MaskTransform = Callable[[jax.Array, Masks, Prunable], Masks]


@dataclasses.dataclass(frozen=True)
class Ablation:
  """One ablation of a pruned mask.

  Attributes:
    name: its `prune.ablation` value.
    summary: one line for the docs.
    transform: (key, masks, prunable) -> masks, applied to the pruned mask
      (None: the mask is kept).
    invert_scores: prune by the lowest scores instead of the highest.
    fresh_values: train the mask from a fresh init drawn from another key,
      instead of the weights it was chosen from.
  """
  name: str
  summary: str
  transform: MaskTransform | None = None
  invert_scores: bool = False
  fresh_values: bool = False


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


ABLATIONS: Registry[Ablation] = Registry("prune.ablation", ordered=True)
for _ablation in (
    Ablation("none", "the method's mask as it is"),
    Ablation("shuffle", "the mask permuted within each layer (per-layer counts kept)",
             transform=shuffle_within_layers),
    Ablation("shuffle_global", "the mask permuted across layers (the global count kept)",
             transform=shuffle_globally),
    Ablation("even", "a random mask with every layer at the global density", transform=even_masks),
    Ablation("reinit", "the same mask trained from a fresh init", fresh_values=True),
    Ablation("invert", "keep the lowest scores instead of the highest", invert_scores=True),
):
  ABLATIONS.register(_ablation.name, _ablation)
