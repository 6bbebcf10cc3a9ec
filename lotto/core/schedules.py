"""Density schedules: how many weights survive after each pruning round or step.

Iterative pruning (SynFlow's 100 rounds, IMP's levels) reaches its final
density through a sequence of intermediate ones (`density_schedule`).
Schedules over *training steps* serve the mask updates during training:
Zhu & Gupta's cubic density (`cubic_density`, gradual magnitude pruning) and
RigL's cosine drop fraction (`drop_fraction`, SET and RigL). The step
schedules are jnp expressions of a traced step, so one compiled train step
serves every step.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.core.masks import check_density

SCHEDULES = ("exponential", "linear")


def density_schedule(final_density: float, rounds: int, kind: str = "exponential") -> list[float]:
  """Densities after each of `rounds` rounds, ending at `final_density`.

  exponential: d_k = d ** (k / n); linear: d_k = 1 - (1 - d) * k / n.
  """
  if kind not in SCHEDULES:
    raise ConfigError(f"unknown prune schedule {kind!r}; valid choices: {', '.join(SCHEDULES)}")
  if not isinstance(rounds, int) or rounds < 1:
    raise ConfigError(f"prune.iterations must be a positive integer; got {rounds!r}")
  d = check_density(final_density, "prune.density")
  if kind == "exponential":
    return [d ** (k / rounds) for k in range(1, rounds + 1)]
  return [1 - (1 - d) * k / rounds for k in range(1, rounds + 1)]


def cubic_density(step: jax.Array, begin: int, end: int, initial: float | jax.Array,
                  final: float | jax.Array) -> jax.Array:
  """Zhu & Gupta's density at `step`: d_f + (d_i - d_f) * (1 - p)**3, p = (t - begin)/(end - begin).

  p is clipped to [0, 1], so the density is `initial` up to `begin` and
  `final` from `end` on; with `begin == end` (one-shot pruning) it is
  `final` from `begin` on. In sparsity terms this is s_t = s_f + (s_i - s_f)
  * (1 - p)**3 of Zhu & Gupta (2017, arXiv:1710.01878).
  """
  step = jnp.asarray(step, jnp.float32)
  if end == begin:
    progress = jnp.where(step >= begin, 1.0, 0.0)
  else:
    progress = jnp.clip((step - begin) / (end - begin), 0.0, 1.0)
  return final + (initial - final) * (1.0 - progress) ** 3


DROP_SCHEDULES = ("cosine", "constant")


def drop_fraction(step: jax.Array, alpha: float, stop: int, kind: str = "cosine") -> jax.Array:
  """The fraction of surviving weights SET/RigL drop at `step`.

  cosine (RigL): alpha / 2 * (1 + cos(pi * t / stop)), 0 from `stop` on;
  constant: alpha before `stop`, 0 from it on.
  """
  if kind not in DROP_SCHEDULES:
    raise ConfigError(f"unknown sparse.drop_schedule {kind!r}; valid choices: "
                      f"{', '.join(DROP_SCHEDULES)}")
  step = jnp.asarray(step, jnp.float32)
  if kind == "constant":
    value = jnp.full_like(step, alpha)
  else:
    value = alpha / 2 * (1 + jnp.cos(math.pi * jnp.minimum(step, stop) / stop))
  return jnp.where(step < stop, value, 0.0)
