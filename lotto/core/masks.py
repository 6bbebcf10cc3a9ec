"""Mask pytrees: which weights exist.

A mask has exactly the treedef of the params it masks; every leaf is a bool
array of the param's shape. Leaves that are never pruned (biases and norm
params by default) are all-True. "Prunable" leaves are chosen by regexes over
key paths such as ``stage0_block0/conv_0/kernel``; the default choice is every
leaf with ndim > 1 (Dense and Conv kernels).

Everything here is a pure function over pytrees; nothing reads a config.
"""
from __future__ import annotations

import math
import re
from typing import IO, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.types import Masks, Params, Prunable, PyTree


def key_path_name(path) -> str:
  """Joins a jax key path into "a/b/c" (dict keys and sequence indices)."""
  parts = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        parts.append(str(getattr(entry, attribute)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def leaf_names(tree: PyTree) -> list[str]:
  """The "a/b/c" names of a pytree's leaves, in flattening order."""
  return [key_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def select_prunable(params: Params, include: str = "", exclude: str = "") -> Prunable:
  """Chooses the prunable leaves.

  Args:
    params: the params pytree (arrays or ShapeDtypeStructs).
    include: regex searched in each leaf's key path; empty means "every leaf
      with ndim > 1" (all Dense/Conv kernels).
    exclude: regex; leaves whose path matches are never pruned (e.g.
      ``^output/`` keeps the output layer dense). Empty excludes nothing.

  Returns:
    A pytree of Python bools with the params' treedef.

  Raises:
    ConfigError: a regex does not compile, or nothing is left prunable.
  """
  try:
    include_re = re.compile(include) if include else None
    exclude_re = re.compile(exclude) if exclude else None
  except re.error as error:
    raise ConfigError(f"bad prunable-layer regex ({include!r} / {exclude!r}): {error}") from None

  def choose(path, leaf) -> bool:
    name = key_path_name(path)
    chosen = bool(include_re.search(name)) if include_re else len(leaf.shape) > 1
    return chosen and not (exclude_re and exclude_re.search(name))

  prunable = jax.tree_util.tree_map_with_path(choose, params)
  if not any(jax.tree.leaves(prunable)):
    raise ConfigError(
        f"no prunable layers: include={include!r} exclude={exclude!r} matched nothing in "
        f"{leaf_names(params)}")
  return prunable


def ones_like(params: Params) -> Masks:
  """The dense mask: all-True leaves shaped like `params`."""
  return jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)


def apply(params: Params, masks: Masks) -> Params:
  """params * masks, leafwise (pruned weights become exactly 0)."""
  return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def _prunable_pairs(masks: Masks, prunable: Prunable) -> list[tuple[str, np.ndarray]]:
  names = leaf_names(masks)
  leaves = jax.tree.leaves(masks)
  flags = jax.tree.leaves(prunable)
  return [(n, np.asarray(m)) for n, m, f in zip(names, leaves, flags) if f]


def count(masks: Masks, prunable: Prunable) -> tuple[int, int]:
  """(surviving, total) weights over the prunable leaves."""
  pairs = _prunable_pairs(masks, prunable)
  return int(sum(m.sum() for _, m in pairs)), int(sum(m.size for _, m in pairs))


def density(masks: Masks, prunable: Prunable) -> float:
  """Fraction of prunable weights that survive."""
  alive, total = count(masks, prunable)
  return alive / total


def layer_densities(masks: Masks, prunable: Prunable) -> dict[str, float]:
  """Density of each prunable leaf, keyed by its key path."""
  return {name: float(m.mean()) for name, m in _prunable_pairs(masks, prunable)}


def layer_report(masks: Masks, prunable: Prunable) -> list[dict]:
  """One row per prunable leaf: name, shape, surviving, total, density, collapsed."""
  rows = []
  for name, m in _prunable_pairs(masks, prunable):
    alive = int(m.sum())
    rows.append(dict(name=name, shape=list(m.shape), surviving=alive, total=int(m.size),
                     density=alive / m.size, collapsed=alive == 0))
  return rows


def format_layer_report(rows: list[dict]) -> str:
  """The per-layer report as an aligned text table."""
  width = max([len("layer")] + [len(r["name"]) for r in rows])
  lines = [f"{'layer':<{width}}  {'surviving':>10}  {'total':>10}  {'density':>8}"]
  for r in rows:
    flag = "  COLLAPSED" if r["collapsed"] else ""
    lines.append(f"{r['name']:<{width}}  {r['surviving']:>10}  {r['total']:>10}  "
                 f"{r['density']:>8.2%}{flag}")
  alive, total = sum(r["surviving"] for r in rows), sum(r["total"] for r in rows)
  lines.append(f"{'total':<{width}}  {alive:>10}  {total:>10}  {alive / total:>8.2%}")
  return "\n".join(lines)


def check_density(value: float, what: str = "density") -> float:
  """Returns `value` if it lies in (0, 1].

  Raises:
    ConfigError: otherwise.
  """
  if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
    raise ConfigError(f"{what} must lie in (0, 1]; got {value!r}")
  return float(value)


def random_masks(key: jax.Array, params: Params, prunable: Prunable,
                 densities: float | Mapping[str, float]) -> Masks:
  """Random masks with exactly round(d_l * n_l) survivors in each prunable leaf.

  Args:
    key: PRNG key; each leaf uses `fold_in(key, leaf_index)`.
    params: params pytree (only shapes are used).
    prunable: which leaves are pruned (others get all-True).
    densities: one density for every prunable leaf, or a map from key path
      to density (every prunable leaf must appear).

  Raises:
    ConfigError: a density outside (0, 1] or a missing layer.
  """
  names = leaf_names(params)
  leaves, treedef = jax.tree.flatten(params)
  flags = jax.tree.leaves(prunable)
  out = []
  for index, (name, leaf, flag) in enumerate(zip(names, leaves, flags)):
    if not flag:
      out.append(jnp.ones(leaf.shape, bool))
      continue
    if isinstance(densities, Mapping):
      if name not in densities:
        raise ConfigError(f"no density given for layer {name!r}; layers: {list(densities)}")
      d = check_density(densities[name], f"density of {name}")
    else:
      d = check_density(densities)
    size = math.prod(leaf.shape)
    keep = int(round(d * size))
    order = jax.random.permutation(jax.random.fold_in(key, index), size)
    flat = jnp.zeros(size, bool).at[order[:keep]].set(True)
    out.append(flat.reshape(leaf.shape))
  return jax.tree.unflatten(treedef, out)


MASK_FILE = "masks.npz"


def save(file: IO[bytes], masks: Masks) -> None:
  """Writes masks as an .npz keyed by leaf name to an open binary file.

  Files on disk are written by `runtime.runs.write_masks` (atomically, on the
  main process), which passes a buffer here.
  """
  np.savez(file, **{n: np.asarray(m) for n, m in zip(leaf_names(masks), jax.tree.leaves(masks))})


def load(path: str | IO[bytes], like: Masks) -> Masks:
  """Reads masks saved by `save` (a path or an open file) into the treedef of `like`."""
  with np.load(path) as stored:
    leaves = [jnp.asarray(stored[n]) for n in leaf_names(like)]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)
