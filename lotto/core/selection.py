"""Scores -> masks: exact top-k selection, global or layerwise.

Split from masks.py (which holds mask bookkeeping) because selection is its
own algorithm: keep exactly k = round(d * n) of the *surviving* weights
(the new mask is a subset of the old one), breaking ties deterministically.

Cost: a full sort of 14.7M scores per round is what makes iterative SynFlow
slow in the reference code. Here the k-th largest score is found by radix
selection on the scores' order-preserving integer keys (one 16-bit digit
histogram per pass: 2 passes over the scores for float32, 4 for float64:
linear in n), then ties at the threshold are kept in flat-index order
(lowest index first) until exactly k survive.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp

from lotto.core import structure as structure_lib
from lotto.core.errors import ConfigError
from lotto.core.masks import check_density, leaf_names
from lotto.core.structure import Structure
from lotto.core.types import Masks, Prunable, Scores

SCOPES = ("global", "layerwise")
NORMALIZATIONS = ("none", "layer_sum")


def sortable_keys(scores: jax.Array) -> jax.Array:
  """Maps floats to unsigned ints with the same order (NaN is not allowed).

  float32 -> uint32, float64 -> uint64. -0.0 and +0.0 map to equal keys.
  """
  if scores.dtype == jnp.float64:
    itype, utype, sign = jnp.int64, jnp.uint64, jnp.uint64(1 << 63)
  else:
    scores = scores.astype(jnp.float32)
    itype, utype, sign = jnp.int32, jnp.uint32, jnp.uint32(1 << 31)
  scores = jnp.where(scores == 0, jnp.zeros_like(scores), scores)  # -0.0 == +0.0
  bits = jax.lax.bitcast_convert_type(scores, itype)
  unsigned = jax.lax.bitcast_convert_type(bits, utype)
  # Negative floats: flip all bits (reverses their order); positive: set sign bit.
  return jnp.where(bits < 0, ~unsigned, unsigned | sign)


_DIGIT_BITS = 16


def _kth_largest_key(keys: jax.Array, cand: jax.Array, k: jax.Array) -> jax.Array:
  """The k-th largest key among candidates (k >= 1), by radix selection.

  One histogram of a 16-bit digit per pass (4 passes for 64-bit keys, 2 for
  32-bit), most significant digit first, among the candidates whose higher
  digits equal the prefix chosen so far. Equals the largest t with
  count(candidate keys >= t) >= k; 5x faster on CPU than bisecting on t bit by
  bit (64 passes; BUILD_NOTES.md).
  """
  utype = keys.dtype
  bits = 64 if utype == jnp.uint64 else 32
  buckets = 1 << _DIGIT_BITS
  prefix, remaining = jnp.asarray(0, utype), k
  for step in range(bits // _DIGIT_BITS):
    shift = jnp.asarray(bits - _DIGIT_BITS * (step + 1), utype)
    digit = ((keys >> shift) & jnp.asarray(buckets - 1, utype)).astype(jnp.int32)
    if step == 0:
      match = cand
    else:
      high = shift + jnp.asarray(_DIGIT_BITS, utype)
      match = cand & ((keys >> high) == (prefix >> high))
    histogram = jnp.zeros(buckets, k.dtype).at[digit].add(match.astype(k.dtype))
    at_least = jnp.cumsum(histogram[::-1])[::-1]  # matches with digit >= d
    chosen = jnp.sum(at_least >= remaining) - 1  # the largest d with at_least[d] >= remaining
    above = jnp.where(chosen + 1 < buckets, at_least[jnp.minimum(chosen + 1, buckets - 1)], 0)
    remaining = remaining - above
    prefix = prefix | (chosen.astype(utype) << shift)
  return prefix


def top_k_mask(scores: jax.Array, candidates: jax.Array, k: jax.Array) -> jax.Array:
  """Bool mask of exactly min(k, #candidates) highest-scoring candidates.

  Ties are broken by flat index (lower index kept first). Jittable; k may be a
  traced integer.

  Args:
    scores: float array (any shape).
    candidates: bool array of the same shape; only these can be kept.
    k: number to keep.
  """
  shape = scores.shape
  keys = sortable_keys(scores.ravel())
  cand = candidates.ravel()
  count_type = jnp.int64 if keys.dtype == jnp.uint64 else jnp.int32
  k = jnp.minimum(jnp.asarray(k, count_type), cand.sum(dtype=count_type))
  threshold = _kth_largest_key(keys, cand, k)
  above = cand & (keys > threshold)
  at = cand & (keys == threshold)
  need = k - above.sum()
  # The first `need` ties in flat order. A cumsum over every score costs more than the
  # threshold search on CPU (0.24 s of 0.34 s on 14.76M), and usually every tie is kept.
  keep_at = jax.lax.cond(at.sum(dtype=count_type) == need, lambda: at,
                         lambda: at & (jnp.cumsum(at, dtype=count_type) <= need))
  keep = jnp.where(k > 0, above | keep_at, jnp.zeros_like(cand))
  return keep.reshape(shape)


def check_options(scope: str, normalization: str = "none") -> None:
  """Raises ConfigError for an unknown scope or normalization."""
  if scope not in SCOPES:
    raise ConfigError(f"unknown scope {scope!r}; valid choices: {', '.join(SCOPES)}")
  if normalization not in NORMALIZATIONS:
    raise ConfigError(f"unknown normalization {normalization!r}; valid choices: "
                      f"{', '.join(NORMALIZATIONS)}")


def normalize_layers(scores: Scores, masks: Masks, prunable: Prunable) -> Scores:
  """Divides each prunable layer's scores by their sum over survivors (jittable)."""
  def normalize(s, m, f):
    if not f:
      return s
    total = jnp.sum(jnp.where(m, s, 0))
    return s / jnp.where(total == 0, 1, total)
  return jax.tree.map(normalize, scores, masks, prunable)


def select_global(scores: Scores, masks: Masks, prunable: Prunable, k) -> Masks:
  """Keeps the k highest-scoring surviving weights across all prunable leaves.

  Jittable (k may be traced). Non-prunable leaves are returned unchanged.
  """
  mask_leaves, treedef = jax.tree.flatten(masks)
  score_leaves = jax.tree.leaves(scores)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  dtype = jnp.result_type(*[score_leaves[i].dtype for i in chosen])
  all_scores = jnp.concatenate([score_leaves[i].astype(dtype).ravel() for i in chosen])
  all_masks = jnp.concatenate([mask_leaves[i].ravel() for i in chosen])
  kept = top_k_mask(all_scores, all_masks, k)
  out, offset = list(mask_leaves), 0
  for i in chosen:
    size = mask_leaves[i].size
    out[i] = kept[offset:offset + size].reshape(mask_leaves[i].shape)
    offset += size
  return jax.tree.unflatten(treedef, out)


def select_layerwise(scores: Scores, masks: Masks, prunable: Prunable, ks) -> Masks:
  """Keeps ks[j] highest-scoring survivors in the j-th prunable leaf (jittable)."""
  mask_leaves, treedef = jax.tree.flatten(masks)
  score_leaves = jax.tree.leaves(scores)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  out = list(mask_leaves)
  for j, i in enumerate(chosen):
    out[i] = top_k_mask(score_leaves[i], mask_leaves[i], ks[j])
  return jax.tree.unflatten(treedef, out)


def structured_select(scores: Scores, masks: Masks, prunable: Prunable, k,
                      structure: Structure = Structure(), layerwise: bool = False) -> Masks:
  """`select_global` (k weights) or `select_layerwise` (k: one count per prunable leaf)
  under `structure` (`core.structure`): N:M groups first, then unstructured top-k among
  their survivors; or whole tiles, round(k / tile area) of them. Jittable; k may be traced."""
  if structure.kind == "block":
    area = structure.bh * structure.bw
    tile_scores, tile_masks = structure_lib.tile_view(scores, masks, prunable, structure)
    if layerwise:
      counts = [jnp.round(jnp.asarray(kj) / area).astype(jnp.int32) for kj in k]
      kept = select_layerwise(tile_scores, tile_masks, prunable, counts)
    else:
      kept = select_global(tile_scores, tile_masks, prunable,
                           jnp.round(jnp.asarray(k) / area).astype(jnp.int32))
    return structure_lib.expand_tiles(kept, masks, prunable, structure)
  if structure.kind == "n:m":
    masks = structure_lib.nm_masks(scores, masks, prunable, structure.n, structure.m)
  if layerwise:
    return select_layerwise(scores, masks, prunable, k)
  return select_global(scores, masks, prunable, k)


def _keep_count(density: float, total: int, alive: int) -> int:
  return max(0, min(int(round(density * total)), alive))


def open_lth_keep_count(alive: int, fraction: float) -> int:
  """open_lth's count: of `alive` survivors it prunes ceil(fraction * alive) weights plus
  the one at the threshold, so ceil(fraction * alive) + 1 (as its float arithmetic does)."""
  return max(0, alive - math.ceil(fraction * alive) - 1)


def prune_fraction_open_lth(scores: Scores, masks: Masks, prunable: Prunable,
                            fraction: float | Mapping[str, float],
                            scope: str = "global") -> Masks:
  """open_lth's IMP step: prune `open_lth_keep_count` of the current survivors.

  Applied level after level to each level's survivors (recursively, as
  open_lth does), LeNet-300-100 global f = 0.2 keeps 212,959, 170,366,
  136,291, 109,031, ... 3,062 at level 20 (README.md, "Conventions"). Only for
  reproducing open_lth's numbers.

  Args:
    scores, masks, prunable: as `prune_to_density`.
    fraction: the fraction of survivors pruned, or per layer (a map from
      layer name; then layerwise).
    scope: "global" (one count over all prunable survivors) or "layerwise".

  Raises:
    ConfigError: bad scope, or a layer missing from a fraction map.
  """
  check_options(scope)
  names = leaf_names(masks)
  mask_leaves = jax.tree.leaves(masks)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  if isinstance(fraction, Mapping) or scope == "layerwise":
    missing = [names[i] for i in chosen if isinstance(fraction, Mapping) and names[i] not in fraction]
    if missing:
      raise ConfigError(f"no fraction given for layers {missing}")
    ks = [open_lth_keep_count(int(mask_leaves[i].sum()),
                              fraction[names[i]] if isinstance(fraction, Mapping) else fraction)
          for i in chosen]
    return select_layerwise(scores, masks, prunable, ks)
  alive = sum(int(mask_leaves[i].sum()) for i in chosen)
  return select_global(scores, masks, prunable, open_lth_keep_count(alive, fraction))


def prune_to_density(scores: Scores, masks: Masks, prunable: Prunable,
                     density: float | Mapping[str, float], scope: str = "global",
                     normalization: str = "none", structure: Structure = Structure()) -> Masks:
  """Keeps the highest-scoring surviving weights.

  Args:
    scores: "higher = keep" scores, same treedef as `masks` (non-prunable
      leaves are ignored).
    masks: the current masks; only surviving weights are candidates, so the
      result is a subset (monotone pruning).
    prunable: which leaves are pruned.
    density: target fraction of *all* prunable weights to keep (a float), or a
      map from layer name to that layer's target density (then per layer).
    scope: "global" ranks raw scores across all prunable layers; "layerwise"
      keeps round(density * n_l) in every layer.
    normalization: "none" (default) or "layer_sum": divide each layer's scores
      by their sum over survivors before a global ranking.
    structure: `core.structure.Structure` (default unstructured): N:M groups
      or whole tiles (`structured_select`).

  Returns:
    New masks with exactly round(d * n) survivors (globally or per layer).

  Raises:
    ConfigError: bad scope, normalization or density.
  """
  check_options(scope, normalization)
  names = leaf_names(masks)
  mask_leaves = jax.tree.leaves(masks)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]

  if isinstance(density, Mapping) or scope == "layerwise":
    ks = []
    for i in chosen:
      if isinstance(density, Mapping) and names[i] not in density:
        raise ConfigError(f"no density given for layer {names[i]!r}")
      d = density[names[i]] if isinstance(density, Mapping) else density
      d = check_density(d, f"density of {names[i]}")
      m = mask_leaves[i]
      ks.append(_keep_count(d, m.size, int(m.sum())))
    return structured_select(scores, masks, prunable, ks, structure, layerwise=True)

  d = check_density(density)
  if normalization == "layer_sum":
    scores = normalize_layers(scores, masks, prunable)
  total = sum(mask_leaves[i].size for i in chosen)
  alive = sum(int(mask_leaves[i].sum()) for i in chosen)
  return structured_select(scores, masks, prunable, _keep_count(d, total, alive), structure)
