"""Pruning-at-initialization drivers, layer distributions and mask ablations.

`prune(...)` scores the network and selects a mask, single-shot or over
several rounds on an exponential (default) or linear density schedule,
rescoring the masked network each round. The whole iterative loop is one
compiled `lax.fori_loop` (score -> exact top-k select), not rounds of host work.
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lotto import masks as masks_lib
from lotto import selection
from lotto.errors import ConfigError
from lotto.models import conv_net_on_cpu
from lotto.scores import SCORES, ScoringContext
from lotto.types import Masks, Params, Prunable, PyTree

SCHEDULES = ("exponential", "linear")
DISTRIBUTIONS = ("none", "uniform", "erk")
ABLATIONS = ("none", "shuffle", "shuffle_global", "even", "reinit", "invert")


def default_iterations(method: str) -> int:
  """100 rounds for SynFlow, 1 (single-shot) for every other method."""
  return 100 if method == "synflow" else 1


def density_schedule(final_density: float, rounds: int, kind: str = "exponential") -> list[float]:
  """Densities after each of `rounds` rounds, ending at `final_density`.

  exponential: d_k = d ** (k / n); linear: d_k = 1 - (1 - d) * k / n.
  """
  if kind not in SCHEDULES:
    raise ConfigError(f"unknown prune schedule {kind!r}; valid choices: {', '.join(SCHEDULES)}")
  if not isinstance(rounds, int) or rounds < 1:
    raise ConfigError(f"prune.iterations must be a positive integer; got {rounds!r}")
  d = masks_lib.check_density(final_density, "prune.density")
  if kind == "exponential":
    return [d ** (k / rounds) for k in range(1, rounds + 1)]
  return [1 - (1 - d) * k / rounds for k in range(1, rounds + 1)]


def layer_sizes(params: Params, prunable: Prunable) -> dict[str, tuple[int, ...]]:
  """Shapes of the prunable leaves by name."""
  names = masks_lib.leaf_names(params)
  return {n: tuple(p.shape) for n, p, f in zip(names, jax.tree.leaves(params),
                                                jax.tree.leaves(prunable)) if f}


def layer_distribution(kind: str, density: float, shapes: Mapping[str, tuple[int, ...]]
                       ) -> dict[str, float]:
  """Per-layer densities whose weighted mean is `density`.

  uniform: every layer at `density`. erk: density_l proportional to
  sum(shape_l) / prod(shape_l), scaled to hit the target; layers that would
  exceed 1 are made dense and the scale is re-solved over the rest.
  """
  d = masks_lib.check_density(density)
  if kind == "uniform":
    return {n: d for n in shapes}
  if kind != "erk":
    raise ConfigError(f"unknown layer distribution {kind!r}; valid choices: "
                      f"{', '.join(DISTRIBUTIONS)}")
  sizes = {n: math.prod(s) for n, s in shapes.items()}
  raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
  dense: set[str] = set()
  while True:
    budget = d * sum(sizes.values()) - sum(sizes[n] for n in dense)
    free = [n for n in shapes if n not in dense]
    scale = budget / sum(raw[n] * sizes[n] for n in free)
    over = [n for n in free if scale * raw[n] > 1]
    if not over:
      out = {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
      return out
    dense.update(over)


LOOPS = ("auto", "fori", "dispatch")


def _round_counts(densities: list[float], total: int) -> list[int]:
  return [int(round(d * total)) for d in densities]


def prune(method: str, ctx: ScoringContext, params: Params, masks: Masks, prunable: Prunable,
          density: float | Mapping[str, float], key: jax.Array,
          batch_stats: PyTree = None, batch=None, iterations: int | None = None,
          schedule: str = "exponential", scope: str = "global", invert: bool = False,
          normalization: str = "none", loop: str = "auto") -> Masks:
  """Scores and prunes to `density` (single-shot or iterative).

  Args:
    method: a registered score ("magnitude", "random", "snip", "grasp",
      "grasp_abs", "synflow").
    ctx: static scoring context.
    params, masks: the network and its current mask (pruning is monotone).
    prunable: which leaves are pruned.
    density: global target, or a per-layer map (then layerwise per layer).
    key: PRNG key for random scores (round r uses fold_in(key, r)).
    batch_stats: BN statistics (eval mode) or {}.
    batch: (x, y) preprocessed for data-dependent scores, else None.
    iterations: rounds (None: 100 for SynFlow, 1 otherwise).
    schedule: "exponential" or "linear" density schedule over the rounds.
    scope: "global" or "layerwise" (ignored with a per-layer map).
    invert: keep the *lowest* scores (the inversion ablation; scores are
      negated, never replaced by 1/score).
    normalization: "none" or "layer_sum" (global scope only).
    loop: "fori" runs all rounds in one compiled `fori_loop`; "dispatch"
      dispatches one compiled round (score -> select, on device, no host
      sync) per round; "auto" picks "dispatch" for conv nets on CPU, where
      convolutions inside a compiled loop lose XLA:CPU's fast path (see
      BUILD_NOTES), and "fori" otherwise.

  Returns:
    The new masks.

  Raises:
    ConfigError: unknown method/scope/schedule or bad density.
  """
  fn = SCORES.get(method)
  selection.check_options(scope, normalization)
  rounds = default_iterations(method) if iterations in (None, 0) else iterations
  batch_stats = batch_stats or {}
  names = masks_lib.leaf_names(masks)
  mask_leaves = jax.tree.leaves(masks)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  layerwise = isinstance(density, Mapping) or scope == "layerwise"
  if layerwise:
    # ks[r, j]: survivors of the j-th prunable layer after round r.
    missing = [names[i] for i in chosen if isinstance(density, Mapping) and names[i] not in density]
    if missing:
      raise ConfigError(f"no density given for layers {missing}")
    targets = [density[names[i]] if isinstance(density, Mapping) else density for i in chosen]
    ks = np.array([_round_counts(density_schedule(d, rounds, schedule), mask_leaves[i].size)
                   for d, i in zip(targets, chosen)]).T
  else:
    total = sum(mask_leaves[i].size for i in chosen)
    ks = np.array(_round_counts(density_schedule(density, rounds, schedule), total))

  def one_round(r, m, p, k):
    s = fn(ctx, p, m, batch_stats, batch, jax.random.fold_in(key, r))
    if invert:
      s = jax.tree.map(jnp.negative, s)
    if layerwise:
      return selection.select_layerwise(s, m, prunable, [k[j] for j in range(len(chosen))])
    if normalization == "layer_sum":
      s = selection.normalize_layers(s, m, prunable)
    return selection.select_global(s, m, prunable, k)

  if loop not in LOOPS:
    raise ConfigError(f"unknown pruning loop {loop!r}; valid choices: {', '.join(LOOPS)}")
  if loop == "auto":
    loop = "dispatch" if conv_net_on_cpu(params) else "fori"

  if loop == "fori":
    @jax.jit
    def run(p, m, all_ks):
      return jax.lax.fori_loop(0, rounds, lambda r, mm: one_round(r, mm, p, all_ks[r]), m)
  else:
    round_fn = jax.jit(one_round)

    def run(p, m, all_ks):
      for r in range(rounds):
        m = round_fn(jnp.asarray(r, jnp.int32), m, p, all_ks[r])
      return m

  if method == "synflow" and ctx.synflow_dtype == "float64":
    with jax.enable_x64(True):
      p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
      return run(p64, masks, jnp.asarray(ks, jnp.int64))
  return run(params, masks, jnp.asarray(ks, jnp.int32))


# ----------------------------------------------------------------------------
# Mask ablations ("Missing the Mark")

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


def copied_distribution(masks: Masks, prunable: Prunable) -> dict[str, float]:
  """The per-layer densities of an existing mask (to reuse on other scores)."""
  return masks_lib.layer_densities(masks, prunable)


# ----------------------------------------------------------------------------
# Effective density

def _natural_key(name: str):
  # "conv_10" after "conv_2"; the output layer last.
  parts = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
  return (name.startswith("output"), parts)


def effective_density(masks: Masks, prunable: Prunable) -> float | None:
  """Density counting weights on dead paths as pruned.

  A weight is effectively pruned if its input neuron (channel) has no
  surviving incoming weight, or its output neuron no surviving outgoing one.
  Defined for plain chains of Dense/Conv layers (MLPs, LeNet-style, VGG):
  layers are ordered by name (natural order, `output` last) and must chain
  (each layer's input width equals the previous one's output width);
  otherwise (e.g. ResNets' shortcuts) returns None.
  """
  pairs = sorted(((n, np.asarray(m)) for n, m in
                  zip(masks_lib.leaf_names(masks), jax.tree.leaves(masks))
                  if n in set(masks_lib.layer_densities(masks, prunable))),
                 key=lambda t: _natural_key(t[0]))
  # Reduce every kernel to a [fan_in_units, fan_out_units] connectivity matrix.
  conns = []
  for _, m in pairs:
    if m.ndim == 2:
      conns.append(m)
    elif m.ndim == 4:
      conns.append(m.any(axis=(0, 1)))
    else:
      return None
  for a, b, (_, mb) in zip(conns, conns[1:], pairs[1:]):
    if a.shape[1] != b.shape[0]:
      if mb.ndim == 2 and b.shape[0] % a.shape[1] == 0:
        continue  # flatten after conv: handled below by channel grouping
      return None
  # Forward: a unit is reachable if it has a surviving incoming weight.
  reach = np.ones(conns[0].shape[0], bool)
  effective = [m.copy() for _, m in pairs]
  for j, (_, m) in enumerate(pairs):
    rows = _expand(reach, conns[j].shape[0])
    effective[j] = effective[j] & _broadcast_in(rows, m)
    reach = _units_out(effective[j])
  # Backward: a unit is useful if it has a surviving outgoing weight.
  useful = np.ones(_units_out(effective[-1]).shape[0], bool)
  for j in range(len(pairs) - 1, -1, -1):
    m = effective[j]
    effective[j] = m & _broadcast_out(useful, m)
    useful = _units_in(effective[j])
    if j > 0:
      useful = _shrink(useful, _units_out(effective[j - 1]).shape[0])
  alive = sum(int(e.sum()) for e in effective)
  return alive / sum(e.size for e in effective)


def _units_out(m):
  return m.any(axis=tuple(range(m.ndim - 1)))


def _units_in(m):
  return m.any(axis=-1) if m.ndim == 2 else m.any(axis=(0, 1, 3))


def _expand(units, size):
  # Conv channels -> flattened features (HWC order: channel is fastest).
  return units if units.shape[0] == size else np.tile(units, size // units.shape[0])


def _shrink(units, size):
  return units if units.shape[0] == size else units.reshape(-1, size).any(axis=0)


def _broadcast_in(units, m):
  return units[:, None] if m.ndim == 2 else units[None, None, :, None]


def _broadcast_out(units, m):
  return units[None, :] if m.ndim == 2 else units[None, None, None, :]
