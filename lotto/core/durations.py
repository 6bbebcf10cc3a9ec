"""Durations with units: "500it" (iterations) or "40ep" (epochs)."""
from __future__ import annotations

import re

from lotto.core.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


def parse_duration(text: str | int, steps_per_epoch: int, what: str = "duration") -> int:
  """Converts a duration string to a number of optimizer steps.

  Args:
    text: "<n>it" or "<n>ep" (a bare non-negative int counts as iterations).
    steps_per_epoch: optimizer steps in one epoch.
    what: the config field, named in the error message.

  Returns:
    The number of steps (>= 0).

  Raises:
    ConfigError: the text is not of the form "<n>it" or "<n>ep".
  """
  if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
    return text
  match = _DURATION.match(str(text))
  if match is None:
    raise ConfigError(
        f"{what}: cannot parse duration {text!r}; use '<n>it' (iterations) or "
        "'<n>ep' (epochs), e.g. '500it' or '2ep'")
  count, unit = int(match.group(1)), match.group(2)
  return count if unit == "it" else count * steps_per_epoch
