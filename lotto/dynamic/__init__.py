"""Mask updates during training (gradual pruning, DSD, SET, RigL), one protocol.

The train step calls a `MaskUpdate` through `maybe_update_masks` after it
has the dense gradient and before it masks gradients and optimizer updates
(`lotto.train.step`). The methods themselves arrive with the dynamic
sparse training issue; this package holds the protocol they implement.
"""
from lotto.dynamic.update import MaskUpdate, maybe_update_masks

__all__ = ["MaskUpdate", "maybe_update_masks"]
