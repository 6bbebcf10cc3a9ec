"""Mask updates during training (gradual pruning, DSD, SET, RigL), one protocol.

The train step calls a `MaskUpdate` through `maybe_update_masks` after this
step's optimizer update (`lotto.train.step`); `maybe_update_masks` zeroes
what was dropped or grown, with its optimizer moments, and logs the update.
Methods: `GradualMagnitude` (Zhu & Gupta, one-shot when begin == end),
`DenseSparseDense` (Han et al.), `DropAndGrow` (SET with random growth, RigL
with gradient growth). `srigl` / `srigl_ablation`: SRigL's per-unit drop and grow and
its neuron ablation on condensed constant fan-in layers (pure functions, not yet a method).
"""
from lotto.dynamic.gmp import CRITERIA, DenseSparseDense, GradualMagnitude, gmp_steps
from lotto.dynamic.regrow import GROWTH, DropAndGrow, drop_and_grow, regrow_steps
from lotto.dynamic.srigl import SriglUpdate, drop_and_grow_units, zero_replaced
from lotto.dynamic.srigl_ablation import srigl_update
from lotto.dynamic.update import (MaskUpdate, UpdateInputs, init_mask_state, maybe_update_masks,
                                  update_records)

__all__ = ["CRITERIA", "DenseSparseDense", "DropAndGrow", "GROWTH", "GradualMagnitude",
           "MaskUpdate", "SriglUpdate", "UpdateInputs", "drop_and_grow", "drop_and_grow_units",
           "gmp_steps", "init_mask_state", "maybe_update_masks", "regrow_steps", "srigl_update",
           "update_records", "zero_replaced"]
