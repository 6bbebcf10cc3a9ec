"""Structured masks: N:M groups and whole blocks (`selection.structured_select` uses them).

- `n:m` (e.g. "2:4"): in every group of m consecutive weights along a
  kernel's input axis (axis -2: the rows of a Dense (in, out) kernel, the
  input channels of a conv (kh, kw, in, out) kernel) keep the n surviving
  weights with the highest scores (ties: the lower index). From a dense start
  every group keeps exactly n, density n/m; a lower target density is then
  reached by unstructured top-k among those survivors ("N:M, then
  unstructured on top"); a higher one is capped at what N:M leaves.
- `block:BHxBW` (e.g. "block:4x4"): the kernel, viewed as (prod(shape[:-1]),
  out), is cut into (BH, BW) tiles scored by the sum of their scores; whole
  tiles are kept or removed, round(k / (BH * BW)) tiles for a budget of k
  weights (globally over every prunable layer, or per layer). A tile is a
  candidate only if all of it survives, so the result is a subset of the old
  mask.

Exact counts, determinism and monotonicity hold as for unstructured masks
(tests/core/test_structure.py).
"""
from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.core.masks import leaf_names
from lotto.core.types import Masks, Prunable, Scores

STRUCTURES = ("unstructured", "n:m (e.g. '2:4')", "block:BHxBW (e.g. 'block:4x4')")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_BLOCK = re.compile(r"^\s*block\s*:\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclasses.dataclass(frozen=True)
class Structure:
  """A parsed structure: kind "unstructured", "n:m" (n of every m) or "block" (bh x bw)."""
  kind: str = "unstructured"
  n: int = 0
  m: int = 0
  bh: int = 0
  bw: int = 0

  @property
  def max_density(self) -> float:
    """The highest density the structure allows from a dense start."""
    return self.n / self.m if self.kind == "n:m" else 1.0

  def __str__(self) -> str:
    if self.kind == "n:m":
      return f"{self.n}:{self.m}"
    return f"block:{self.bh}x{self.bw}" if self.kind == "block" else "unstructured"


def parse_structure(text: str, what: str = "structure") -> Structure:
  """Parses "unstructured", "n:m" or "block:BHxBW".

  Raises:
    ConfigError: anything else, n >= m (n = m would keep everything), or a zero size
      (one line with the valid forms).
  """
  text = str(text)
  if text.strip() == "unstructured":
    return Structure()
  nm, block = _NM.match(text), _BLOCK.match(text)
  if nm and 0 < int(nm.group(1)) < int(nm.group(2)):
    return Structure("n:m", n=int(nm.group(1)), m=int(nm.group(2)))
  if block and int(block.group(1)) > 0 and int(block.group(2)) > 0:
    return Structure("block", bh=int(block.group(1)), bw=int(block.group(2)))
  raise ConfigError(f"unknown {what} {text!r}; valid choices: {', '.join(STRUCTURES)} "
                    "with 0 < n < m")


def check_shapes(structure: Structure, masks: Masks, prunable: Prunable,
                 what: str = "structure") -> None:
  """Every prunable kernel must split into whole groups or tiles.

  Raises:
    ConfigError: naming the first layer that does not, its shape and the rule.
  """
  if structure.kind == "unstructured":
    return
  for name, leaf, flag in zip(leaf_names(masks), jax.tree.leaves(masks), jax.tree.leaves(prunable)):
    if not flag:
      continue
    shape = leaf.shape
    if len(shape) < 2:
      raise ConfigError(f"{what} {structure}: prunable leaf {name} has shape {shape}; N:M and "
                        "block structure need kernels (ndim >= 2)")
    if structure.kind == "n:m" and shape[-2] % structure.m:
      raise ConfigError(f"{what} {structure}: layer {name} has {shape[-2]} inputs (shape "
                        f"{shape}), not a multiple of m = {structure.m}")
    if structure.kind == "block" and (shape[-2] % structure.bh or shape[-1] % structure.bw):
      raise ConfigError(f"{what} {structure}: layer {name} of shape {shape} does not split into "
                        f"{structure.bh}x{structure.bw} tiles (inputs and outputs must be "
                        "multiples of the tile)")


def _nm_leaf(scores: jax.Array, mask: jax.Array, n: int, m: int) -> jax.Array:
  moved = jnp.moveaxis(scores, -2, -1)  # (..., out, in)
  cand = jnp.moveaxis(mask, -2, -1)
  grouped = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
  cand_grouped = cand.reshape(grouped.shape)
  keyed = jnp.where(cand_grouped, grouped, -jnp.inf)
  order = jnp.argsort(-keyed, axis=-1, stable=True)  # highest first, ties: lower index first
  ranks = jnp.argsort(order, axis=-1, stable=True)
  keep = (ranks < n) & cand_grouped
  return jnp.moveaxis(keep.reshape(moved.shape), -1, -2)


def nm_masks(scores: Scores, masks: Masks, prunable: Prunable, n: int, m: int) -> Masks:
  """Keeps the n highest-scoring survivors of every group of m along each kernel's input axis."""
  return jax.tree.map(lambda s, k, f: _nm_leaf(s, k, n, m) if f else k, scores, masks, prunable)


def _tiles(x: jax.Array, bh: int, bw: int) -> jax.Array:
  """(rows, cols) view of a kernel cut into tiles: [rows/bh, bh, cols/bw, bw]."""
  rows, cols = math.prod(x.shape[:-1]), x.shape[-1]
  return x.reshape(rows // bh, bh, cols // bw, bw)


def tile_view(scores: Scores, masks: Masks, prunable: Prunable, structure: Structure
              ) -> tuple[Scores, Masks]:
  """Per-tile scores (sums over surviving entries) and per-tile candidacy (all of the tile
  survives) with the params' treedef; non-prunable leaves become 1-element placeholders."""
  bh, bw = structure.bh, structure.bw
  mask_leaves, treedef = jax.tree.flatten(masks)
  tile_scores, tile_masks = [], []
  for s, m, f in zip(jax.tree.leaves(scores), mask_leaves, jax.tree.leaves(prunable)):
    if not f:
      tile_scores.append(jnp.zeros((1,), jnp.float32))
      tile_masks.append(m.ravel()[:1])
      continue
    tm = _tiles(m, bh, bw)
    tile_masks.append(tm.all(axis=(1, 3)))
    tile_scores.append(jnp.where(tm, _tiles(s, bh, bw), 0).sum(axis=(1, 3)))
  return jax.tree.unflatten(treedef, tile_scores), jax.tree.unflatten(treedef, tile_masks)


def expand_tiles(kept_tiles: Masks, masks: Masks, prunable: Prunable,
                 structure: Structure) -> Masks:
  """The weight-level mask of kept tiles (non-prunable leaves of `masks` unchanged)."""
  mask_leaves, treedef = jax.tree.flatten(masks)
  out = []
  for keep, m, f in zip(jax.tree.leaves(kept_tiles), mask_leaves, jax.tree.leaves(prunable)):
    if not f:
      out.append(m)
      continue
    full = jnp.repeat(jnp.repeat(keep, structure.bh, axis=0), structure.bw, axis=1)
    out.append(full.reshape(m.shape))
  return jax.tree.unflatten(treedef, out)
