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

  def close(self) -> None:
    self._manager.close()
