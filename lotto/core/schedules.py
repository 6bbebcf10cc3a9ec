"""Density schedules: how many weights survive after each pruning round.

Iterative pruning (SynFlow's 100 rounds, IMP's levels) reaches its final
density through a sequence of intermediate ones; this module says which.
Schedules over *training steps* (gradual pruning) join it with the dynamic
sparse training methods.
"""
from __future__ import annotations

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
