"""The training state: one immutable pytree holding everything a run needs.

`step` is the *global* optimizer step: the LR schedule, the data order and the
per-step randomness are all functions of it, so a state rewound to step k
continues all three exactly where the dense run was at k.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

from lotto.core import masks as masks_lib
from lotto.core.types import Masks, Params, PyTree


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, the global step (number of updates applied so far).
    params: model parameters; pruned entries are exactly 0.
    masks: bool pytree with the params' treedef.
    opt_state: optax state of the update-direction transformation.
    batch_stats: BatchNorm running statistics ({} for models without BN).
    rng: PRNG key; the step's randomness is `fold_in(rng, step)`.
    mask_state: what a mask-update method (`lotto.dynamic`) carries between
      updates; {} for static masks. Checkpointed with the rest.
  """
  step: jax.Array
  params: Params
  masks: Masks
  opt_state: optax.OptState
  batch_stats: PyTree
  rng: jax.Array
  mask_state: PyTree = flax.struct.field(default_factory=dict)


def create_train_state(params: Params, batch_stats: PyTree, masks: Masks | None,
                       tx: optax.GradientTransformation, rng: jax.Array,
                       step: int = 0, mask_state: PyTree | None = None) -> TrainState:
  """A fresh state: params masked, optimizer state initialised.

  Args:
    params: initial params.
    batch_stats: initial BN statistics ({} if none).
    masks: the mask (None means dense, all-True).
    tx: the update-direction transformation (see `optim.create_optimizer`).
    rng: run-level key for per-step randomness (augmentation).
    step: the global step this state sits at.
    mask_state: initial state of a mask-update method ({} if none).
  """
  masks = masks_lib.ones_like(params) if masks is None else masks
  params = masks_lib.apply(params, masks)
  return TrainState(step=jnp.asarray(step, jnp.int32), params=params, masks=masks,
                    opt_state=tx.init(params), batch_stats=batch_stats, rng=rng,
                    mask_state={} if mask_state is None else mask_state)


def rewind(state_k: TrainState, masks: Masks, tx: optax.GradientTransformation) -> TrainState:
  """Rewinds to a saved state theta_k under a new mask.

  params = theta_k * masks, a fresh optimizer state, the step (hence LR
  schedule and data order) stays at k; BN statistics and rng come from the
  saved state; a fresh (empty) mask-update state.
  """
  # The masks join theta_k where it lives (a checkpoint restored onto a device mesh is
  # committed there; masks computed on the host or one device would not combine with it).
  masks = jax.tree.map(lambda m, p: jax.device_put(m, p.sharding) if isinstance(p, jax.Array)
                       else m, masks, state_k.params)
  params = masks_lib.apply(state_k.params, masks)
  return TrainState(step=jnp.asarray(state_k.step, jnp.int32), params=params, masks=masks,
                    opt_state=tx.init(params), batch_stats=state_k.batch_stats,
                    rng=state_k.rng, mask_state={})
