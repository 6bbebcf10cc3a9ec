"""Checkpoints of TrainStates (the only module that imports orbax).

A `Checkpointer` owns one directory of numbered step checkpoints. Each holds
the state pytree and a JSON payload (the metrics history so far), written
synchronously (the next train block donates the state's buffers, so an async
save must not read them later).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import jax
import orbax.checkpoint as ocp

from lotto.core.types import PyTree
from lotto.runtime.devices import note


class Checkpointer:
  """Numbered checkpoints of one training run.

  Steps named in `keep` are kept forever (the rewind point, the end); any
  other step is a resume point and is deleted once a newer checkpoint exists.
  """

  def __init__(self, directory: str, keep: Iterable[int] = ()):
    self.directory = os.path.abspath(directory)
    self.keep = set(int(s) for s in keep)
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    """The steps that have a complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: PyTree, payload: dict[str, Any] | None = None) -> None:
    """Saves `state` and a JSON `payload` at `step`; prunes stale resume points."""
    step = int(step)
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), payload=ocp.args.JsonSave(payload or {})))
    self._manager.wait_until_finished()
    for old in self._manager.all_steps():
      if old < step and old not in self.keep:
        self._manager.delete(old)

  def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Restores (state, payload) at `step` into the structure of `target`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), payload=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["payload"] or {})

  def restore_latest(self, target: PyTree, min_step: int = 0
                     ) -> tuple[int, PyTree, dict[str, Any]] | None:
    """The newest checkpoint at or after `min_step` that restores: (step, state, payload).

    A damaged one (truncated or garbled files: orbax or tensorstore raise) is
    reported, deleted so the run can write that step again, and the next
    older one is tried; None if none is left (the caller starts over, which
    gives the same numbers: training is deterministic).
    """
    for step in reversed([s for s in self.steps() if s >= min_step]):
      try:
        state, payload = self.restore(step, target)
      except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many
        note(f"damaged checkpoint {self.directory}/{step} ({type(error).__name__}): deleted; "
             "resuming from the one before")
        self._manager.delete(step)
        continue
      return step, state, payload
    return None

  def close(self) -> None:
    self._manager.close()
