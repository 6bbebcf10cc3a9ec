"""Drop and grow on condensed layers: SRigL, and SET at constant fan-in.

The mask update of `sparse.execution = "condensed"` runs on the condensed
form itself (`lotto.sparse.condensed`: values V[out, k] and indices
I[out, k] per layer) through SRigL's per-unit drop and grow
(`lotto.dynamic.srigl.drop_and_grow_units`): every unit drops its
n = round(f * k) smallest-|V| slots and grows n inputs it did not hold,
ranked by |dense gradient| (`growth="gradient"`: `sparse.method="srigl"`) or
by uniform random scores (`growth="random"`: `sparse.method="set"`, which
is therefore SET at constant fan-in: per unit rather than per layer, so its
masks differ from those of masked SET). The drop fraction f follows RigL's
schedule (`core.schedules.drop_fraction`), updates run every `every` steps
in [begin, stop) (`regrow.regrow_steps`) exactly as the masked methods do.

Every unit keeps k distinct inputs: the constant fan-in holds across
updates. Grown slots start at 0 and the caller zeroes their optimizer
moments (`replaced`). SRigL's neuron ablation changes k and is not run here
(`sparse.ablation_threshold` must be 0 with condensed execution).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lotto.core.schedules import drop_fraction
from lotto.dynamic.regrow import regrow_steps
from lotto.dynamic.srigl import SriglUpdate, drop_and_grow_units

CONDENSED_GROWTH = {"static": None, "set": "random", "srigl": "gradient"}


@dataclasses.dataclass(frozen=True)
class CondensedDropAndGrow:
  """The drop-and-grow schedule and rule of condensed SRigL or constant fan-in SET.

  Attributes:
    every: steps between updates.
    stop: no update from this step on.
    alpha: the drop fraction (at step 0 for the cosine schedule).
    schedule: "cosine" or "constant".
    growth: "gradient" (SRigL) or "random" (SET at constant fan-in).
    begin: no update before this step.
  """
  every: int
  stop: int
  alpha: float = 0.3
  schedule: str = "cosine"
  growth: str = "gradient"
  begin: int = 0

  @property
  def due_steps(self) -> tuple[int, ...]:
    """The global steps at which an update runs."""
    return regrow_steps(self.every, self.begin, self.stop)

  def is_due(self, step: jax.Array) -> jax.Array:
    """Whether `step` (traced) is an update step."""
    return jnp.any(step == jnp.asarray(self.due_steps, jnp.int32))

  @property
  def needs_gradient(self) -> bool:
    """Whether updates rank inputs by the dense gradient (computed on update steps only)."""
    return self.growth == "gradient"

  def update_layer(self, step: jax.Array, values: jax.Array, indices: jax.Array,
                   fan_in: int, dense_grads: jax.Array | None, key: jax.Array) -> SriglUpdate:
    """One layer's drop and grow at global step `step` (jittable).

    Args:
      step: the update's global step (sets the drop fraction).
      values: (out, k) weights after this step's optimizer update.
      indices: (out, k) int32 inputs.
      fan_in: the layer's inputs.
      dense_grads: (in, out) d loss / d W on this step's batch (gradient growth;
        None for random growth).
      key: this layer's key (random growth).
    """
    fraction = drop_fraction(step, self.alpha, self.stop, self.schedule)
    if self.needs_gradient:
      scores = dense_grads
    else:
      scores = jax.random.uniform(key, (fan_in, indices.shape[0]))
    return drop_and_grow_units(values, indices, scores, fraction)
