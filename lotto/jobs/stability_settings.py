"""The `config.stability` section (the rewinding study), validated into typed settings:
one-line ConfigErrors naming the field, raised before anything is written."""
from __future__ import annotations

import dataclasses

import ml_collections

from lotto.core.errors import ConfigError
from lotto.jobs import validators
from lotto.jobs.experiment import Experiment


# Each point of the path is one evaluation of the test set; 1,001 points is a 0.001 step in
# alpha, finer than any barrier a study reports (a larger count only costs time and memory).
MAX_POINTS = 1001


@dataclasses.dataclass(frozen=True)
class StabilitySettings:
  """The validated `config.stability` section (rewind steps in steps)."""
  rewind_texts: tuple[str, ...]
  rewind_steps: tuple[int, ...]
  points: int
  levels: int


def stability_settings_from_config(config: ml_collections.ConfigDict,
                                   exp: Experiment) -> StabilitySettings:
  """Validates `config.stability` (one-line ConfigErrors)."""
  s = config.stability
  validators.sequence(s.rewind_steps, "stability.rewind_steps", "('0it', '100it')")
  if not s.rewind_steps:
    raise ConfigError("stability.rewind_steps must list at least one rewind step, e.g. ('0it',)")
  steps = []
  for text in s.rewind_steps:
    step = exp.duration(text, "stability.rewind_steps entry")
    if step >= exp.total_steps:
      raise ConfigError(f"stability.rewind_steps entry {text!r} ({step} steps) is not before the "
                        f"end of training ({exp.total_steps} steps)")
    steps.append(step)
  if len(set(steps)) != len(steps):
    raise ConfigError(f"stability.rewind_steps repeats a step: {tuple(s.rewind_steps)!r}")
  validators.integer(s.points, "stability.points", minimum=3, maximum=MAX_POINTS)
  validators.integer(s.levels, "stability.levels", minimum=0)
  return StabilitySettings(tuple(s.rewind_steps), tuple(steps), s.points, s.levels)
