"""Shared validators of config fields: every parser of a config section uses these.

Each returns the value in its typed form or raises a one-line `ConfigError`
that names the field (`what`, e.g. "sparse.drop_fraction"), says what is
valid and shows what was given, so the CLI exits with code 2 before anything
is written. Booleans are never accepted as numbers (`True` is not 1 here).
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError


def choice(value: Any, valid: Iterable[str], what: str) -> str:
  """`value` if it is one of `valid`.

  Raises:
    ConfigError: "unknown <what> <value>; valid choices: ...".
  """
  valid = list(valid)
  if not isinstance(value, str) or value not in valid:
    raise ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(valid)}")
  return value


def boolean(value: Any, what: str) -> bool:
  """`value` if it is True or False (not 0, 1 or a string)."""
  if not isinstance(value, bool):
    raise ConfigError(f"{what} must be True or False; got {value!r}")
  return value


def integer(value: Any, what: str, minimum: int | None = None,
            maximum: int | None = None) -> int:
  """`value` if it is an integer in [minimum, maximum] (either bound may be absent)."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"{what} must be an integer{_bounds(minimum, maximum)}; got {value!r}")
  if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
    raise ConfigError(f"{what} must be an integer{_bounds(minimum, maximum)}; got {value!r}")
  return value


def positive_int(value: Any, what: str) -> int:
  """`value` if it is an integer >= 1."""
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f"{what} must be a positive integer; got {value!r}")
  return value


def _bounds(minimum: int | None, maximum: int | None) -> str:
  if minimum is not None and maximum is not None:
    return f" in [{minimum}, {maximum}]"
  if minimum is not None:
    return f" >= {minimum}"
  if maximum is not None:
    return f" <= {maximum}"
  return ""


def number(value: Any, what: str) -> float:
  """`value` as a float if it is a finite int or float."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ConfigError(f"{what} must be a number; got {value!r}")
  return float(value)


def positive_number(value: Any, what: str) -> float:
  """`value` as a float if it is a finite number > 0."""
  if number(value, what) <= 0:
    raise ConfigError(f"{what} must be > 0; got {value!r}")
  return float(value)


def open_fraction(value: Any, what: str) -> float:
  """`value` as a float if it lies in the open interval (0, 1)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
    raise ConfigError(f"{what} must lie in (0, 1); got {value!r}")
  return float(value)


SEED_LIMIT = 2**32  # PRNGKey(seed) keeps 32 bits: larger seeds would alias smaller ones


def seed(value: Any, what: str) -> int:
  """`value` if it is an integer in [0, 2**32) (a larger seed would alias a smaller one)."""
  if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
    raise ConfigError(f"{what} must be an integer in [0, 2**32); got {value!r}")
  return value


def sequence(value: Any, what: str, example: str, allow_empty: bool = True) -> tuple:
  """`value` as a tuple if it is a tuple or list (not a string), non-empty unless allowed."""
  if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or (
      not value and not allow_empty):
    kind = "a tuple" if allow_empty else "a non-empty tuple"
    raise ConfigError(f"{what} must be {kind}, e.g. {what}={example}; got {value!r}")
  return tuple(value)


def positive_duration(value: Any, what: str) -> str:
  """`value` if it is a duration with units ("500it", "2ep") of more than zero steps."""
  if parse_duration(value, 1, what) <= 0:
    raise ConfigError(f"{what} must be a positive duration, e.g. '100it' or '1ep'; "
                      f"got {value!r}")
  return value


def regex(pattern: str, what: str) -> re.Pattern:
  """`pattern` compiled, if it is a valid regular expression."""
  try:
    return re.compile(pattern)
  except (re.error, TypeError) as error:
    raise ConfigError(f"{what}: bad regex {pattern!r} ({error})") from None


def distinct(values: Sequence[Any], what: str) -> None:
  """Refuses a list that names a value twice."""
  repeated = sorted({repr(v) for v in values if list(values).count(v) > 1})
  if repeated:
    raise ConfigError(f"{what} lists {', '.join(repeated)} more than once: {tuple(values)!r}")
