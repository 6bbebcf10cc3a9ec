"""Ablation branches over a finished IMP level: is the ticket really a ticket?

Each branch builds the *initial state* of one control run from what a level
left behind (its mask, the rewind point theta_k, the dense run's theta_0 and
theta_T, the previous level's trained weights); `imp.run_imp` then trains it
with the same budget as the ticket (from step k to the end, the LR schedule
and data order continuing at k, unless the branch says otherwise) and writes
its results beside the level in `level_<L>/branches/<name>/`.

| branch | mask | weights at the start |
|---|---|---|
| reinit | the ticket's | fresh init from another key |
| shuffle | ticket's, shuffled within each layer | theta_k |
| random | random, the ticket's per-layer densities | theta_k |
| invert | this level's pruning reversed, among the previous level's survivors (weak: shares most weights with the ticket) | theta_k |
| invert_after_training | the *smallest* abs(theta_T) of the dense run, one shot, the level's density (strong, as Missing the Mark) | theta_k |
| start | the ticket's | theta_0 (from step 0), theta_k, or theta_T (at step k) |
| magnitude_after_training | one-shot magnitude of the dense theta_T, the level's density | theta_T (fine-tune) or theta_k (retrain) |
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from lotto.core import ablations, selection
from lotto.core import masks as masks_lib
from lotto.core.registry import Registry
from lotto.core.rng import purpose_key
from lotto.core.types import Masks, Params
from lotto.jobs.experiment import Experiment
from lotto.topologies import random_like
from lotto.train.state import TrainState, create_train_state, rewind

START_POINTS = ("init", "rewind", "final")
MAT_FROM = ("final", "rewind")


@dataclasses.dataclass(frozen=True)
class LevelInputs:
  """What a branch may use from a finished IMP level.

  Attributes:
    exp: the experiment (prunable = the layers IMP prunes).
    level: the IMP level L >= 1.
    masks: the level's ticket mask.
    previous_masks: the mask of level L - 1 (the one IMP pruned from).
    previous_final: level L - 1's trained params (the magnitudes IMP ranked).
    theta_0: the dense run's initial state.
    theta_k: the rewind point (the dense run's state at step k).
    theta_T: the dense run's final state.
    target: the level's target density (global float or per-layer map).
    scope: "global" | "layerwise".
    start_point: the "start" branch's starting weights (START_POINTS).
    mat_from: where magnitude_after_training starts (MAT_FROM).
  """
  exp: Experiment
  level: int
  masks: Masks
  previous_masks: Masks
  previous_final: Params
  theta_0: TrainState
  theta_k: TrainState
  theta_T: TrainState
  target: float | Mapping[str, float]
  scope: str
  start_point: str = "init"
  mat_from: str = "final"

  @property
  def rewind_step(self) -> int:
    return int(self.theta_k.step)

  def key(self, branch: str) -> jax.Array:
    """The branch's own random stream at this level."""
    return purpose_key(self.exp.seed, f"branch_{branch}/level_{self.level}")


Branch = Callable[[LevelInputs], TrainState]
BRANCHES: Registry[Branch] = Registry("branch")


def _at_step(state: TrainState, step: int) -> TrainState:
  return state.replace(step=jnp.asarray(step, jnp.int32))


@BRANCHES.register("reinit")
def reinit(inputs: LevelInputs) -> TrainState:
  """Same mask, fresh initial values from another key, trained from step k."""
  params, batch_stats = inputs.exp.init_params(inputs.key("reinit"))
  return create_train_state(params, batch_stats, inputs.masks, inputs.exp.tx,
                            inputs.theta_k.rng, step=inputs.rewind_step)


@BRANCHES.register("shuffle")
def shuffle(inputs: LevelInputs) -> TrainState:
  """The mask permuted within each layer (exact per-layer counts), from theta_k."""
  masks = ablations.shuffle_within_layers(inputs.key("shuffle"), inputs.masks, inputs.exp.prunable)
  return rewind(inputs.theta_k, masks, inputs.exp.tx)


@BRANCHES.register("random")
def random_mask(inputs: LevelInputs) -> TrainState:
  """A random mask with the ticket's exact per-layer densities, from theta_k."""
  masks = random_like(inputs.masks, inputs.exp.prunable, inputs.key("random"))
  return rewind(inputs.theta_k, masks, inputs.exp.tx)


def inverted_masks(inputs: LevelInputs) -> Masks:
  """Level L's pruning with the order reversed: the smallest magnitudes survive."""
  scores = jax.tree.map(lambda p: -jnp.abs(p), inputs.previous_final)
  return selection.prune_to_density(scores, inputs.previous_masks, inputs.exp.prunable,
                                    inputs.target, scope=inputs.scope)


@BRANCHES.register("invert")
def invert(inputs: LevelInputs) -> TrainState:
  """Keeps the weights IMP pruned at this level's step (smallest |theta|), from theta_k."""
  return rewind(inputs.theta_k, inverted_masks(inputs), inputs.exp.tx)


def inverted_after_training_masks(inputs: LevelInputs) -> Masks:
  """One shot from the dense run: keep the level's density worth of the *smallest* |theta_T|."""
  scores = jax.tree.map(lambda p: -jnp.abs(p), inputs.theta_T.params)
  ones = masks_lib.ones_like(inputs.theta_T.params)
  return selection.prune_to_density(scores, ones, inputs.exp.prunable, inputs.target,
                                    scope=inputs.scope)


@BRANCHES.register("invert_after_training")
def invert_after_training(inputs: LevelInputs) -> TrainState:
  """The strong inversion: the smallest magnitudes of the trained dense net, from theta_k.

  `invert` reverses only this level's step among the previous survivors, so at
  high levels its mask shares most of its weights with the ticket; this one
  inverts magnitude pruning after training, as "Missing the Mark" does.
  """
  return rewind(inputs.theta_k, inverted_after_training_masks(inputs), inputs.exp.tx)


@BRANCHES.register("start")
def start(inputs: LevelInputs) -> TrainState:
  """The ticket's mask trained from theta_0 (all T steps), theta_k, or theta_T (from k)."""
  if inputs.start_point == "init":
    return rewind(inputs.theta_0, inputs.masks, inputs.exp.tx)
  if inputs.start_point == "rewind":
    return rewind(inputs.theta_k, inputs.masks, inputs.exp.tx)
  return rewind(_at_step(inputs.theta_T, inputs.rewind_step), inputs.masks, inputs.exp.tx)


def magnitude_after_training_masks(inputs: LevelInputs) -> Masks:
  """One-shot magnitude pruning of the dense theta_T to the level's target."""
  scores = jax.tree.map(jnp.abs, inputs.theta_T.params)
  ones = masks_lib.ones_like(inputs.theta_T.params)
  return selection.prune_to_density(scores, ones, inputs.exp.prunable, inputs.target,
                                    scope=inputs.scope)


@BRANCHES.register("magnitude_after_training")
def magnitude_after_training(inputs: LevelInputs) -> TrainState:
  """One-shot magnitude mask of theta_T; fine-tuned from theta_T or retrained from theta_k.

  Both train from step k to the end (the ticket's budget): fine-tuning starts
  from theta_T * mask with the LR schedule and data order at step k.
  """
  masks = magnitude_after_training_masks(inputs)
  if inputs.mat_from == "rewind":
    return rewind(inputs.theta_k, masks, inputs.exp.tx)
  return rewind(_at_step(inputs.theta_T, inputs.rewind_step), masks, inputs.exp.tx)
