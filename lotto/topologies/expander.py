"""Random expander layers (Prabhu et al. 2018, Deep Expander Networks): every output unit
connects to `degree` distinct input units chosen at random from an explicit key."""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from lotto.core.errors import ConfigError


def expander(widths: Sequence[int], degree: int | Sequence[int], key: jax.Array
             ) -> list[np.ndarray]:
  """Per-layer adjacency matrices (widths[l], widths[l + 1]), in-degree `degree` per output.

  Args:
    widths: neuron counts, input first.
    degree: connections per output unit, one for all layers or one per layer.
    key: PRNG key; layer l uses fold_in(key, l).

  Raises:
    ConfigError: fewer than two widths, or a degree outside 1..fan_in.
  """
  if len(widths) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
    raise ConfigError(f"expander widths must list at least two positive integers; got "
                      f"{widths!r}")
  degrees = [degree] * (len(widths) - 1) if isinstance(degree, int) else list(degree)
  if len(degrees) != len(widths) - 1:
    raise ConfigError(f"expander degree must be one integer or one per layer "
                      f"({len(widths) - 1}); got {degree!r}")
  layers = []
  for l, (fan_in, fan_out, d) in enumerate(zip(widths[:-1], widths[1:], degrees)):
    if not isinstance(d, int) or not 1 <= d <= fan_in:
      raise ConfigError(f"expander degree of layer {l} must lie in 1..{fan_in} (its fan-in); "
                        f"got {d!r}")
    scores = np.asarray(jax.random.uniform(jax.random.fold_in(key, l), (fan_in, fan_out)))
    chosen = np.argsort(-scores, axis=0, kind="stable")[:d]  # d distinct rows per column
    adjacency = np.zeros((fan_in, fan_out), bool)
    adjacency[chosen, np.arange(fan_out)[None, :]] = True
    layers.append(adjacency)
  return layers
