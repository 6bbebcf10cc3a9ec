"""Pruning at initialization (or at step k of a dense run): score -> select, single-shot
or iterative.

`prune(...)` scores the network and selects a mask, single-shot or over
several rounds on an exponential (default) or linear density schedule
(`core.schedules`), rescoring the masked network each round. All rounds run
in one compiled `lax.fori_loop` (score -> exact top-k select).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core import selection
from lotto.core.errors import ConfigError
from lotto.core.schedules import density_schedule
from lotto.core.scores import SCORES, ScoringContext, resolve_synflow
from lotto.core.structure import Structure
from lotto.core.types import Masks, Params, Prunable, PyTree


# Scores defined only for positively homogeneous networks: SynFlow's |theta| and all-ones
# input linearise the network, and its conservation law (Tanaka et al. 2020, Theorems 1-3)
# holds only for activations with phi(x) = phi'(x) x (ReLU, max pooling, eval-mode BN).
HOMOGENEOUS_ONLY = ("synflow",)


def non_homogeneous_parts(model) -> tuple[str, ...]:
  """The parts that make `model` not positively homogeneous in its weights, as its family
  declares them (`non_homogeneous_parts`, a class attribute; absent: none)."""
  return tuple(getattr(model, "non_homogeneous_parts", ()))


def methods_for(model) -> list[str]:
  """The pruning methods that apply to `model`: every registered score, less the
  `HOMOGENEOUS_ONLY` ones when the model declares non-homogeneous parts (the transformers:
  LayerNorm, softmax attention, GELU)."""
  homogeneous = not non_homogeneous_parts(model)
  return [m for m in SCORES.names() if homogeneous or m not in HOMOGENEOUS_ONLY]


def check_method(method: str, model, name: str | None = None) -> None:
  """Refuses a method that is not defined for `model` (see `methods_for`).

  Args:
    method: a pruning method name.
    model: the Flax module to be pruned (None: nothing to check).
    name: the model's name for the message (default: its class name).

  Raises:
    ConfigError: an unknown method, or one the model's family rules out (one line naming
      the method, the model, why, and the methods that apply).
  """
  SCORES.get(method)
  if model is None or method in methods_for(model):
    return
  name = name or type(model).__name__
  raise ConfigError(
      f"prune.method {method!r} needs a positively homogeneous network (its conservation law "
      f"assumes ReLU-like layers); model {name!r} has {', '.join(non_homogeneous_parts(model))}: "
      f"use one of {', '.join(methods_for(model))}")


def default_iterations(method: str) -> int:
  """100 rounds for SynFlow, 1 (single-shot) for every other method."""
  return 100 if method == "synflow" else 1


COUNT_RULES = ("round", "synaptic_flow")


def round_counts(densities: list[float], total: int, rule: str = "round") -> list[int]:
  """Survivors after each round: round(d * n), or Synaptic-Flow's n - int((1 - d) * n).

  Raises:
    ConfigError: an unknown rule.
  """
  if rule not in COUNT_RULES:
    raise ConfigError(f"unknown prune.count_rule {rule!r}; valid choices: "
                      f"{', '.join(COUNT_RULES)}")
  if rule == "synaptic_flow":
    return [total - int((1 - d) * total) for d in densities]
  return [int(round(d * total)) for d in densities]


def prune(method: str, ctx: ScoringContext, params: Params, masks: Masks, prunable: Prunable,
          density: float | Mapping[str, float], key: jax.Array,
          batch_stats: PyTree = None, batch=None, iterations: int | None = None,
          schedule: str = "exponential", scope: str = "global", invert: bool = False,
          normalization: str = "none",
          with_round_counts: bool = False,
          count_rule: str = "round",
          structure: Structure = Structure()) -> Masks | tuple[Masks, np.ndarray]:
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
    count_rule: survivors per round: "round" (round(d_k * n), exact
      targets) or "synaptic_flow" (n - int((1 - d_k) * n), the reference
      code's counts: with them lotto's SynFlow masks equal the reference's).
    structure: N:M groups or whole tiles (`core.structure`; default
      unstructured), applied at every round.
    with_round_counts: also return the survivors of every prunable layer
      after every round (to watch a schedule, or layer collapse, round by
      round).

  Returns:
    The new masks, or (masks, counts) with counts an int array
    [rounds, prunable layers in flattening order] if `with_round_counts`.

  Raises:
    ConfigError: unknown method/scope/schedule or bad density, or a method the model
      (`ctx.apply_fn`'s module, when it is a bound `Module.apply`) rules out
      (`check_method`).
  """
  fn = SCORES.get(method)
  check_method(method, getattr(ctx.apply_fn, "__self__", None))  # a bound Module.apply
  selection.check_options(scope, normalization)
  if method == "synflow":
    ctx = resolve_synflow(ctx, params, batch_stats)  # checked; the float32 rescaling plan
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
    ks = np.array([round_counts(density_schedule(d, rounds, schedule), mask_leaves[i].size,
                                count_rule)
                   for d, i in zip(targets, chosen)]).T
  else:
    total = sum(mask_leaves[i].size for i in chosen)
    ks = np.array(round_counts(density_schedule(density, rounds, schedule), total, count_rule))

  def select(r, m, p, k):
    s = fn(ctx, p, m, batch_stats, batch, jax.random.fold_in(key, r))
    if invert:
      s = jax.tree.map(jnp.negative, s)
    if layerwise:
      return selection.structured_select(s, m, prunable, [k[j] for j in range(len(chosen))],
                                         structure, layerwise=True)
    if normalization == "layer_sum":
      s = selection.normalize_layers(s, m, prunable)
    return selection.structured_select(s, m, prunable, k, structure)

  def one_round(r, m, p, k):
    m = select(r, m, p, k)
    leaves = jax.tree.leaves(m)
    return m, jnp.stack([leaves[i].sum(dtype=jnp.int32) for i in chosen])

  counts0 = jnp.zeros((rounds, len(chosen)), jnp.int32)

  @jax.jit
  def run(p, m, all_ks):
    def body(r, carry):
      m, counts = carry
      m, row = one_round(r, m, p, all_ks[r])
      return m, counts.at[r].set(row)
    return jax.lax.fori_loop(0, rounds, body, (m, counts0))

  if method == "synflow" and ctx.synflow_dtype == "float64":
    with jax.enable_x64(True):
      p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
      masks, counts = run(p64, masks, jnp.asarray(ks, jnp.int64))
  else:
    masks, counts = run(params, masks, jnp.asarray(ks, jnp.int32))
  return (masks, np.asarray(counts)) if with_round_counts else masks
