"""The random control of any mask: the same count in every layer, positions at random."""
from __future__ import annotations

import jax

from lotto.core import masks as masks_lib
from lotto.core.types import Masks, Prunable


def random_like(masks: Masks, prunable: Prunable, key: jax.Array) -> Masks:
  """A random mask with exactly the per-layer survivor counts of `masks`.

  The control every chosen wiring (RadiX-Net, expander) and every ticket is
  compared with (the IMP `random` branch is this, from the level's key).

  Raises:
    ConfigError: a prunable layer of `masks` is empty (no density to draw).
  """
  return masks_lib.random_masks(key, masks, prunable,
                                masks_lib.layer_densities(masks, prunable))
