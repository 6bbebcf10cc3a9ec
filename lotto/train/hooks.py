"""Hooks: work the train loop runs between blocks, at steps of the hook's choosing.

A hook names the next step it wants (`next_step`), so block boundaries fall
on it, and is called there with the state; it may return a new state (a DSD
phase change, a between-block SET or RigL update) or None to keep it. Hooks
run before that step's evaluation and checkpoint, so a resumed run never
skips a hook's change. Tests inject crashes the same way.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Protocol

from lotto.train.state import TrainState

HookFn = Callable[[int, TrainState], "TrainState | None"]


class Hook(Protocol):
  """Something to run between blocks at chosen global steps."""

  def next_step(self, step: int) -> int | None:
    """The first step strictly after `step` at which to run (None: never again)."""

  def __call__(self, step: int, state: TrainState) -> TrainState | None:
    """Runs at `step`; returns a replacement state or None to keep `state`."""


@dataclasses.dataclass(frozen=True)
class EveryHook:
  """Runs `fn(step, state)` at every multiple of `every` steps."""
  fn: HookFn
  every: int

  def next_step(self, step: int) -> int | None:
    return (step // self.every + 1) * self.every

  def __call__(self, step: int, state: TrainState) -> TrainState | None:
    return self.fn(step, state)


@dataclasses.dataclass(frozen=True)
class AtStepsHook:
  """Runs `fn(step, state)` at each of `steps`."""
  fn: HookFn
  steps: tuple[int, ...]

  @classmethod
  def of(cls, fn: HookFn, steps: Iterable[int]) -> "AtStepsHook":
    return cls(fn, tuple(sorted(set(int(s) for s in steps))))

  def next_step(self, step: int) -> int | None:
    return next((s for s in self.steps if s > step), None)

  def __call__(self, step: int, state: TrainState) -> TrainState | None:
    return self.fn(step, state)
