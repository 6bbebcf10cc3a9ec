"""Connectivity of a mask: effective density (weights on dead paths count as pruned).

A weight whose input unit receives nothing, or whose output unit feeds
nothing, cannot affect the output: a mask can have a nominal density well
above its effective one (Vysogorets & Kempe 2023 call this "effective
sparsity"). Defined for plain chains of Dense/Conv layers.
"""
from __future__ import annotations

import re

import jax
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.types import Masks, Prunable


def _natural_key(name: str):
  # "conv_10" after "conv_2"; the output layer last.
  parts = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
  return (name.startswith("output"), parts)


def effective_density(masks: Masks, prunable: Prunable) -> float | None:
  """Density counting weights on dead paths as pruned.

  A weight is effectively pruned if its input neuron (channel) has no
  surviving incoming weight, or its output neuron no surviving outgoing one.
  Defined for plain chains of Dense/Conv layers (MLPs, LeNet-style, VGG):
  layers are ordered by name (natural order, `output` last), are top-level
  modules ("conv_0/kernel"), and must chain (each layer's input width equals
  the previous one's output width); otherwise returns None: a layer nested
  in a block belongs to a graph with shortcuts or attention (ResNets,
  transformers), whose widths can chain by accident.
  """
  pairs = sorted(((n, np.asarray(m)) for n, m in
                  zip(masks_lib.leaf_names(masks), jax.tree.leaves(masks))
                  if n in set(masks_lib.layer_densities(masks, prunable))),
                 key=lambda t: _natural_key(t[0]))
  if any(name.count("/") > 1 for name, _ in pairs):
    return None
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
