"""Condensed execution of a sparse MLP: which layers run condensed, and its TrainState.

With `sparse.execution = "condensed"` an MLP (`lotto.models.mlp.MLP`: Dense
layers, ReLU between them) trains in the condensed form of
`lotto.sparse.condensed`. Every prunable Dense kernel runs condensed, the
output layer included when it is prunable (it is by default); a Dense layer
left out of the prunable set (`masks.exclude`) runs as a plain dense matmul.
Convolutions, attention and normalization layers do not run condensed: such
a model is refused (`jobs.condensed_execution.layout_of`).

The TrainState of a condensed run is the masked run's `TrainState` class
with other leaves:

- `params[layer]`: {"values": V[out, k], "bias": b[out]} for a condensed
  layer, {"kernel", "bias"} as in the model for a dense one;
- `masks[layer]`: the mask in condensed form, {"indices": I[out, k] int32,
  "fanout": P[in, F] int32 (`condensed.fanout_slots`), "width": int32
  scalar, the largest fan-out in use}; {} for a dense layer;
- `opt_state`: the optimizer's state over those params, so every moment is
  condensed too;
- `step`, `rng`, `batch_stats`, `mask_state` as in the masked run.

Everything needed to resume is in the state, so checkpoints, resume and
populations (`seeds`) work unchanged. The fan-out table has a fixed width
for the whole run: the largest fan-out of the start masks (common to all
replicas) when the mask never changes, `out` (any mask) when a method drops
and grows, where the input gradient loops only over the `width` slots in use
(`condensed_ops.condensed_dense_tw`). Reports see the dense masks
(`dense_masks`, built on the host).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lotto.core.types import Masks, Params
from lotto.sparse.condensed import condense, fanout_slots, max_fan_out
from lotto.train.state import TrainState

EXECUTIONS = ("masked", "condensed")


@dataclasses.dataclass(frozen=True)
class CondensedLayout:
  """How an MLP's layers run in condensed execution.

  Attributes:
    layers: the Dense layers' names in forward order.
    condensed: per layer, True when it runs condensed (its kernel is prunable).
    in_features, out_features: per layer, its kernel's shape.
    dynamic: masks change during training (fan-out tables sized for any mask).
  """
  layers: tuple[str, ...]
  condensed: tuple[bool, ...]
  in_features: tuple[int, ...]
  out_features: tuple[int, ...]
  dynamic: bool = False

  def capacity(self, index: int, needed: int) -> int:
    """The fan-out table width of layer `index` whose start masks need `needed` slots."""
    return self.out_features[index] if self.dynamic else needed


def condense_state(state: TrainState, layout: CondensedLayout,
                   tx: optax.GradientTransformation) -> TrainState:
  """The condensed form of a masked state at the start of training (fresh optimizer state).

  Fan-out tables are as wide as this state's masks need (`align` widens the
  replicas' to a common width).

  Raises:
    ConfigError: a prunable layer whose mask is not constant fan-in (one
      line naming it, its fan-in range and `distribution=fanin`).
  """
  params, masks = {}, {}
  for index, layer in enumerate(layout.layers):
    dense = state.params[layer]
    if not layout.condensed[index]:
      params[layer], masks[layer] = dense, {}
      continue
    mask = np.asarray(state.masks[layer]["kernel"])
    condensed = condense(np.asarray(dense["kernel"]), mask, layer)
    fan_in = layout.in_features[index]
    needed = max_fan_out(condensed.indices, fan_in)
    capacity = layout.capacity(index, needed)
    params[layer] = {"values": condensed.values, "bias": dense["bias"]}
    masks[layer] = {"indices": condensed.indices,
                    "fanout": fanout_slots(condensed.indices, fan_in, capacity),
                    "width": jnp.asarray(needed, jnp.int32)}
  return state.replace(params=params, masks=masks, opt_state=tx.init(params))


def align(states: Sequence[TrainState], layout: CondensedLayout) -> list[TrainState]:
  """The replicas' condensed states with fan-out tables of one width per layer (the widest
  of them), so they stack into one program; padding slots read zero."""
  states = list(states)
  for index, layer in enumerate(layout.layers):
    if not layout.condensed[index]:
      continue
    width = max(int(s.masks[layer]["fanout"].shape[1]) for s in states)
    for i, state in enumerate(states):
      wiring = state.masks[layer]
      table = wiring["fanout"]
      pad = int(np.prod(wiring["indices"].shape))  # out * k: the zero slot
      widened = jnp.concatenate(
          [table, jnp.full((table.shape[0], width - table.shape[1]), pad, jnp.int32)], axis=1)
      masks = {**state.masks, layer: {**wiring, "fanout": widened}}
      states[i] = state.replace(masks=masks)
  return states


def dense_masks(state: TrainState, layout: CondensedLayout) -> Masks:
  """The dense bool masks (the model's params treedef) of one replica's condensed state,
  on the host: for reports (density, per-layer density, the mask-update log)."""
  masks = {}
  for index, layer in enumerate(layout.layers):
    shape = (layout.in_features[index], layout.out_features[index])
    kernel = np.ones(shape, bool)
    if layout.condensed[index]:
      indices = np.asarray(jax.device_get(state.masks[layer]["indices"]))
      kernel = np.zeros(shape, bool)
      kernel[indices, np.arange(shape[1])[:, None]] = True
    masks[layer] = {"bias": np.ones(shape[1], bool), "kernel": kernel}
  return masks


def dense_params(state: TrainState, layout: CondensedLayout) -> Params:
  """The dense params (zeros off the mask) of one replica's condensed state, on the host."""
  params = {}
  for index, layer in enumerate(layout.layers):
    if not layout.condensed[index]:
      params[layer] = jax.device_get(state.params[layer])
      continue
    shape = (layout.in_features[index], layout.out_features[index])
    indices = np.asarray(jax.device_get(state.masks[layer]["indices"]))
    values = np.asarray(jax.device_get(state.params[layer]["values"]))
    kernel = np.zeros(shape, values.dtype)
    kernel[indices, np.arange(shape[1])[:, None]] = values
    params[layer] = {"bias": np.asarray(jax.device_get(state.params[layer]["bias"])),
                     "kernel": kernel}
  return params


def report_view(state: TrainState, layout: CondensedLayout) -> TrainState:
  """One replica's condensed state with its dense masks (params stay condensed), for what
  reads masks by the model's layout: densities, the mask-update log, results. Never
  trained on."""
  return state.replace(masks=dense_masks(state, layout))
