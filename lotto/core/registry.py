"""Name -> object registries whose lookup errors list the valid names."""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from lotto.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
  """A plain mapping from names to objects (factories, functions).

  Attributes:
    kind: what the registry holds, used in error messages ("model").
    ordered: `names()` in registration order (a canonical order that reports and
      `--help` follow) instead of sorted.
  """

  def __init__(self, kind: str, ordered: bool = False):
    self.kind = kind
    self.ordered = ordered
    self._entries: dict[str, T] = {}

  def register(self, name: str, value: T | None = None):
    """Registers `value` under `name`; usable as a decorator without value."""
    if value is not None:
      self._entries[name] = value
      return value

    def decorator(fn: T) -> T:
      self._entries[name] = fn
      return fn

    return decorator

  def get(self, name: str) -> T:
    """Returns the entry for `name`.

    Raises:
      ConfigError: `name` is not registered; the message lists valid names.
    """
    if name not in self._entries:
      raise ConfigError(
          f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}")
    return self._entries[name]

  def names(self) -> list[str]:
    return list(self._entries) if self.ordered else sorted(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())
