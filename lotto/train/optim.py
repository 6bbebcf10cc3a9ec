"""Optimizers and learning-rate schedules.

The optimizer is an optax chain that produces an update *direction* (momentum,
Adam moments, weight decay); the train step multiplies it by `-schedule(step)`
where `step` is the TrainState's global step. Hence a schedule "starts at an
arbitrary step" for free: a state rewound to step k with a fresh optimizer
state gets learning rate schedule(k) on its first step.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError
from lotto.core.types import Params

Schedule = Callable[[jax.Array], jax.Array]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def decay_mask(params: Params, skip_bias_and_norm: bool) -> Params:
  """Which leaves get weight decay: kernels only (ndim > 1) when skipping."""
  return jax.tree.map(lambda p: (p.ndim > 1) or not skip_bias_and_norm, params)


def create_optimizer(name: str, weight_decay: float = 0.0, momentum: float = 0.9,
                     b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                     skip_bias_and_norm: bool = True) -> optax.GradientTransformation:
  """An optax transformation giving the update direction (before the LR).

  Args:
    name: sgd | momentum | nesterov | adam | adamw.
    weight_decay: L2 coefficient. For SGD variants and Adam it is added to the
      gradient (coupled, as in PyTorch); for AdamW it is decoupled.
    momentum: for momentum / nesterov.
    b1, b2, eps: Adam(W) hyperparameters.
    skip_bias_and_norm: no weight decay on leaves with ndim <= 1.

  Raises:
    ConfigError: unknown name or negative weight decay.
  """
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")
  if not weight_decay >= 0:
    raise ConfigError(f"optimizer.weight_decay must be >= 0; got {weight_decay!r}")
  mask_fn = lambda params: decay_mask(params, skip_bias_and_norm)  # noqa: E731
  decay = optax.masked(optax.add_decayed_weights(weight_decay), mask_fn)
  parts = []
  if weight_decay and name != "adamw":
    parts.append(decay)
  if name == "momentum":
    parts.append(optax.trace(decay=momentum, nesterov=False))
  elif name == "nesterov":
    parts.append(optax.trace(decay=momentum, nesterov=True))
  elif name in ("adam", "adamw"):
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
  if weight_decay and name == "adamw":
    parts.append(decay)
  return optax.chain(*parts) if parts else optax.identity()


def check_schedule(name: str, base_lr: float, warmup: str = "0it",
                   drops: Sequence[str] = ()) -> None:
  """Checks a schedule's name, LR and durations (their units) without building it.

  Raises:
    ConfigError: unknown name, non-positive LR, or a duration without units.
  """
  if name not in SCHEDULES:
    raise ConfigError(f"unknown schedule {name!r}; valid choices: {', '.join(SCHEDULES)}")
  if isinstance(base_lr, bool) or not (isinstance(base_lr, (int, float)) and base_lr > 0 and
                                       math.isfinite(base_lr)):
    raise ConfigError(f"optimizer.learning_rate must be > 0; got {base_lr!r}")
  parse_duration(warmup, 1, "schedule.warmup")
  for drop in drops:
    parse_duration(drop, 1, "schedule.drops")


def create_schedule(name: str, base_lr: float, total_steps: int, steps_per_epoch: int,
                    warmup: str = "0it", drops: Sequence[str] = (),
                    drop_factor: float = 0.1) -> Schedule:
  """Learning rate as a function of the global step.

  Args:
    name: constant | step (multiply by `drop_factor` at each of `drops`) |
      cosine (from base_lr to 0 at `total_steps`, after warmup).
    base_lr: peak learning rate (> 0).
    total_steps: the training length.
    steps_per_epoch: to parse durations given in epochs.
    warmup: linear warmup from 0 over this duration ("0it" = none).
    drops: durations at which the step schedule multiplies the LR.
    drop_factor: the multiplier at each drop.

  Raises:
    ConfigError: unknown name, non-positive LR, or bad durations.
  """
  check_schedule(name, base_lr, warmup, drops)
  warmup_steps = parse_duration(warmup, steps_per_epoch, "schedule.warmup")
  drop_steps = [parse_duration(d, steps_per_epoch, "schedule.drops") for d in drops]

  def schedule(step: jax.Array) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    if name == "constant":
      lr = jnp.asarray(base_lr, jnp.float32)
    elif name == "step":
      num_drops = sum((step >= s).astype(jnp.float32) for s in drop_steps) if drop_steps else 0.0
      lr = base_lr * jnp.power(drop_factor, num_drops)
    else:
      span = max(total_steps - warmup_steps, 1)
      progress = jnp.clip((step - warmup_steps) / span, 0.0, 1.0)
      lr = base_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    if warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, (step + 1.0) / warmup_steps)
    return jnp.asarray(lr, jnp.float32)

  return schedule
