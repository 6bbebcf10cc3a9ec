"""Gradual magnitude pruning (Zhu & Gupta 2017), its one-shot special case, and DSD.

GMP prunes every `every` steps from `begin` to `end` toward a final density
along the cubic schedule of `core.schedules.cubic_density`; pruned weights
stay pruned (every new mask is a subset of the old one). The count kept at
an update is round(d_t * n), per layer (`scope="layerwise"`, any per-layer
final densities: uniform or ERK) or over all prunable weights
(`scope="global"`), ranked by |w| or by OBD saliency (`criterion`). With
`begin == end` it prunes once at that step (one-shot). With a `threshold`
it instead drops every surviving weight with |w| < threshold at each update
(the slides' `weights[np.abs(weights) < threshold] = 0`).

DSD (Han et al. 2017) is a dense phase, a sparse phase (magnitude, per-layer
density) and a dense phase: `DenseSparseDense` prunes at `sparse_at` and
restores the all-True mask at `dense_at`, where `maybe_update_masks` restarts
the pruned weights at exactly 0 with zero moments.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lotto.core import selection
from lotto.core.schedules import cubic_density
from lotto.core.scores import obd_saliency
from lotto.core.structure import Structure
from lotto.core.types import Masks, Params, Prunable, PyTree
from lotto.dynamic.update import UpdateInputs, alive_counts, prunable_leaves

CRITERIA = ("magnitude", "obd")


def gmp_steps(begin: int, end: int, every: int) -> tuple[int, ...]:
  """The update steps: begin, begin + every, ... before `end`, and `end` itself."""
  return tuple(range(begin, end, every)) + (end,)


@dataclasses.dataclass(frozen=True)
class GradualMagnitude:
  """Zhu & Gupta's gradual pruning (a `MaskUpdate`).

  Attributes:
    prunable: which leaves are pruned.
    begin, end, every: the schedule in steps (updates at `gmp_steps`).
    final_densities: per prunable leaf (in leaf order), the density at `end`
      (layerwise scope); with global scope only their size-weighted mean,
      the global final density, matters.
    scope: "layerwise" or "global".
    criterion: "magnitude" (|w|) or "obd" (0.5 h_ii w^2 on the step's batch).
    threshold: > 0: prune |w| < threshold at each update instead.
    obd_probes: Hutchinson probes for the OBD criterion.
    structure: N:M groups or whole tiles (`core.structure`): N:M holds from
      the first update on, the cubic schedule continuing unstructured below
      n/m; blocks are pruned whole at every update.
  """
  prunable: Prunable
  begin: int
  end: int
  every: int
  final_densities: tuple[float, ...]
  scope: str = "layerwise"
  criterion: str = "magnitude"
  threshold: float = 0.0
  obd_probes: int = 10
  structure: Structure = Structure()

  @property
  def due_steps(self) -> tuple[int, ...]:
    return gmp_steps(self.begin, self.end, self.every)

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    """The survivors per prunable leaf at the start (the schedule's initial density)."""
    del params
    return {"initial_alive": alive_counts(masks, self.prunable)}

  def _scores(self, inputs: UpdateInputs) -> Params:
    if self.criterion == "obd":
      return obd_saliency(inputs.loss, inputs.params, inputs.key, self.obd_probes)
    return jax.tree.map(jnp.abs, inputs.params)

  def update(self, inputs: UpdateInputs, state: PyTree) -> tuple[Masks, PyTree]:
    masks = inputs.masks
    if self.threshold > 0:
      return jax.tree.map(lambda m, p, f: m & (jnp.abs(p) >= self.threshold) if f else m,
                          masks, inputs.params, self.prunable), state
    sizes = jnp.asarray([m.size for m in prunable_leaves(masks, self.prunable)], jnp.float32)
    final = jnp.asarray(self.final_densities, jnp.float32)
    initial_alive = state["initial_alive"].astype(jnp.float32)
    scores = self._scores(inputs)
    if self.scope == "global":
      total = sizes.sum()
      density = cubic_density(inputs.step, self.begin, self.end, initial_alive.sum() / total,
                              (final * sizes).sum() / total)
      keep = jnp.round(density * total).astype(jnp.int32)
      return selection.structured_select(scores, masks, self.prunable, keep,
                                         self.structure), state
    density = cubic_density(inputs.step, self.begin, self.end, initial_alive / sizes, final)
    keeps = jnp.round(density * sizes).astype(jnp.int32)
    return selection.structured_select(scores, masks, self.prunable, list(keeps), self.structure,
                                       layerwise=True), state


@dataclasses.dataclass(frozen=True)
class DenseSparseDense:
  """DSD's mask changes (a `MaskUpdate`): prune by magnitude at `sparse_at`, re-densify at
  `dense_at`.

  Attributes:
    prunable: which leaves are pruned.
    sparse_at: the step the sparse phase starts (the end of the first dense phase).
    dense_at: the step the final dense phase starts.
    keep_counts: per prunable leaf (leaf order), the survivors of the sparse phase.
    structure: N:M groups or whole tiles for the sparse phase.
  """
  prunable: Prunable
  sparse_at: int
  dense_at: int
  keep_counts: tuple[int, ...]
  structure: Structure = Structure()

  @property
  def due_steps(self) -> tuple[int, ...]:
    return (self.sparse_at, self.dense_at)

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    del params, masks
    return {}

  def update(self, inputs: UpdateInputs, state: PyTree) -> tuple[Masks, PyTree]:
    def sparsify():
      scores = jax.tree.map(jnp.abs, inputs.params)
      return selection.structured_select(scores, inputs.masks, self.prunable,
                                         list(self.keep_counts), self.structure, layerwise=True)

    def densify():
      return jax.tree.map(jnp.ones_like, inputs.masks)

    return jax.lax.cond(inputs.step == self.sparse_at, sparsify, densify), state
