"""K >= 1 replicas of one setup: stacking their states and checkpointing them in step.

One replica is a single run's state as it is. K > 1 replicas stack their
TrainStates along a new leading axis (params, masks, optimizer state, step,
rng, mask-update state: each replica its own) so the trainer can `vmap` one
compiled step over them. Each replica keeps its own directory of
checkpoints, exactly where a single run of it would write.

Checkpoints are saved replica by replica and stale resume points are dropped
only once every replica saved the new step, so a kill between two replicas'
saves always leaves a step every replica holds; resuming restores all
replicas from the newest such step. With one replica this is a single run's
checkpointing.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp

from lotto.runtime.checkpoints import Checkpointer
from lotto.runtime.devices import note
from lotto.train.state import TrainState


def stack(states: Sequence[TrainState]) -> TrainState:
  """States of equal structure as one state with a leading replica axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def replica(state: TrainState, index: int) -> TrainState:
  """Replica `index` of a stacked state (a single run's state)."""
  return jax.tree.map(lambda leaf: leaf[index], state)


class ReplicaCheckpoints:
  """One `Checkpointer` per replica directory (`<directory>/checkpoints`), saved and
  restored in step."""

  def __init__(self, directories: Sequence[str], keep: set[int]):
    self.checkpointers = [Checkpointer(os.path.join(d, "checkpoints"), keep=keep)
                          for d in directories]

  def save(self, step: int, states: Sequence[TrainState], payloads: Sequence[dict]) -> None:
    """Saves replica i's state and payload at `step`, then drops stale resume points."""
    for checkpointer, state, payload in zip(self.checkpointers, states, payloads):
      checkpointer.save(step, state, payload, drop_stale=False)
    for checkpointer in self.checkpointers:  # only now: every replica holds `step`
      checkpointer.drop_stale(step)

  def restore_latest(self, targets: Sequence[TrainState], min_step: int
                     ) -> tuple[int, list[TrainState], list[dict]] | None:
    """The newest step >= `min_step` every replica holds and restores, or None.

    A damaged checkpoint is reported and deleted, and the next older common
    step is tried (training is deterministic, so starting earlier gives the
    same numbers).
    """
    for step in sorted((s for s in self._common_steps() if s >= min_step), reverse=True):
      restored = []
      for checkpointer, target in zip(self.checkpointers, targets):
        try:
          restored.append(checkpointer.restore(step, target))
        except Exception as error:  # pylint: disable=broad-except  # orbax raises many kinds
          note(f"damaged checkpoint {checkpointer.directory}/{step} "
               f"({type(error).__name__}): deleted; resuming from the one before")
          checkpointer.delete(step)
          break
      else:
        return step, [s for s, _ in restored], [p for _, p in restored]
    return None

  def _common_steps(self) -> set[int]:
    return set.intersection(*(set(c.steps()) for c in self.checkpointers))

  def latest_step(self) -> int | None:
    """The newest step every replica holds (None if none)."""
    return max(self._common_steps(), default=None)

  def close(self) -> None:
    for checkpointer in self.checkpointers:
      checkpointer.close()
