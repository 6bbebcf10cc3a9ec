"""Masked training: the jitted step, scanned blocks of steps, evaluation, loop.

The sparsity invariant lives inside the step: the forward pass uses
params * masks, gradients and optimizer updates are masked, and params are
re-masked after the update, so pruned weights are exactly zero in every state
and checkpoint and momentum never builds up on dead weights.

The compiled unit is a *block* of steps: `lax.scan` over int32 batch indices
into the training set, which lives on the device. Loops over blocks, levels
and runs stay in Python.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

import ml_collections

from lotto import data as data_lib
from lotto import masks as masks_lib
from lotto import runs
from lotto.checkpoints import Checkpointer
from lotto.errors import ConfigError
from lotto.models import conv_net_on_cpu
from lotto.experiment import create_experiment
from lotto.optim import Schedule
from lotto.state import TrainState
from lotto.types import ApplyFn

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """How raw stored inputs become model inputs (static for compilation)."""
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool

  @classmethod
  def of(cls, dataset: data_lib.Dataset) -> "InputSpec":
    return cls(dataset.scale, dataset.mean, dataset.std, dataset.augment)

  def __call__(self, raw: jax.Array, key: jax.Array | None) -> jax.Array:
    x = raw.astype(jnp.float32) * self.scale
    if self.augment and key is not None:
      x = data_lib.augment_images(key, x)
    return data_lib.preprocess(x, 1.0, self.mean, self.std)


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_step(apply_fn: ApplyFn, tx: optax.GradientTransformation, schedule: Schedule,
                    inputs: InputSpec, use_masks: bool = True,
                    mesh: Mesh | None = None) -> Callable[[TrainState, jax.Array, jax.Array],
                                                          tuple[TrainState, Metrics]]:
  """Builds the (unjitted) masked train step.

  Args:
    apply_fn: `model.apply`.
    tx: update-direction transformation from `optim.create_optimizer`.
    schedule: LR as a function of the global step.
    inputs: preprocessing/augmentation of raw inputs.
    use_masks: False gives the plain dense step (masks ignored), used to
      check that an all-True mask trains like the dense path.
    mesh: if given, the batch is sharded over its "data" axis.

  Returns:
    step(state, raw_inputs, labels) -> (new_state, {"loss", "accuracy"}).
  """

  def step(state: TrainState, raw: jax.Array, labels: jax.Array) -> tuple[TrainState, Metrics]:
    if mesh is not None:
      raw = jax.lax.with_sharding_constraint(raw, NamedSharding(mesh, PartitionSpec("data")))
      labels = jax.lax.with_sharding_constraint(labels, NamedSharding(mesh, PartitionSpec("data")))
    key = jax.random.fold_in(state.rng, state.step)
    x = inputs(raw, key)
    mask = (lambda tree: masks_lib.apply(tree, state.masks)) if use_masks else (lambda t: t)

    def loss_fn(params):
      variables = _variables(mask(params), state.batch_stats)
      if state.batch_stats:
        logits, updated = apply_fn(variables, x, train=True, mutable=["batch_stats"])
        batch_stats = updated["batch_stats"]
      else:
        logits, batch_stats = apply_fn(variables, x, train=True), state.batch_stats
      return cross_entropy(logits, labels).mean(), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = mask(grads)
    direction, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = schedule(state.step)
    params = jax.tree.map(lambda p, u: p - lr * u, state.params, mask(direction))
    new_state = state.replace(step=state.step + 1, params=mask(params), opt_state=opt_state,
                              batch_stats=batch_stats)
    accuracy = (logits.argmax(-1) == labels).mean()
    return new_state, {"loss": loss, "accuracy": accuracy}

  return step


def make_train_block(step_fn, loop: str = "scan"):
  """A block of training steps over on-device data; donates the state.

  Args:
    step_fn: from `make_train_step`.
    loop: "scan" compiles the whole block as one `lax.scan`; "step" jits one
      step (batch gathered on device) and calls it per step from Python. On
      XLA:CPU, convolutions inside a scan body run ~20x slower than in a
      standalone jitted step (measured on ResNet-20; see BUILD_NOTES.md), so
      conv nets on CPU use "step".

  Returns:
    block(state, x_train, y_train, indices[num_steps, batch]) ->
    (state, metrics stacked over the block's steps).
  """

  def gather_step(state, x_train, y_train, batch_index):
    return step_fn(state, x_train[batch_index], y_train[batch_index])

  if loop == "step":
    jitted = jax.jit(gather_step, donate_argnums=0)

    def stepwise(state, x_train, y_train, indices):
      history = []
      for row in range(indices.shape[0]):
        state, metrics = jitted(state, x_train, y_train, indices[row])
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return stepwise

  def block(state, x_train, y_train, indices):
    return jax.lax.scan(lambda carry, row: gather_step(carry, x_train, y_train, row),
                        state, indices)

  return jax.jit(block, donate_argnums=0)


def choose_loop(loop: str, params) -> str:
  """Resolves "auto": "step" for conv nets on CPU, else "scan"."""
  if loop != "auto":
    return loop
  return "step" if conv_net_on_cpu(params) else "scan"


def make_eval_fn(apply_fn: ApplyFn, inputs: InputSpec):
  """Jitted evaluation over padded batches: returns summed loss and correct count."""

  @jax.jit
  def evaluate(params, masks, batch_stats, x_batches, y_batches, weights):
    variables = _variables(masks_lib.apply(params, masks), batch_stats)

    def body(totals, batch):
      raw, labels, w = batch
      logits = apply_fn(variables, inputs(raw, None), train=False)
      loss = (cross_entropy(logits, labels) * w).sum()
      correct = ((logits.argmax(-1) == labels) * w).sum()
      return (totals[0] + loss, totals[1] + correct), None

    (loss, correct), _ = jax.lax.scan(body, (0.0, 0.0), (x_batches, y_batches, weights))
    return loss, correct

  return evaluate


@dataclasses.dataclass
class EvalSet:
  """An evaluation split on the device, padded into equal batches."""
  x: jax.Array
  y: jax.Array
  weights: jax.Array
  size: int

  @classmethod
  def create(cls, x: np.ndarray, y: np.ndarray, batch_size: int) -> "EvalSet":
    n = len(x)
    batch_size = max(1, min(batch_size, n)) if n else 1
    num_batches = max(1, math.ceil(n / batch_size))
    pad = num_batches * batch_size - n
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if n else np.zeros(
        (batch_size, *x.shape[1:]), x.dtype)
    yp = np.concatenate([y, np.zeros(pad, y.dtype)]) if n else np.zeros(batch_size, np.int32)
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]) if n else np.zeros(
        batch_size, np.float32)
    shape = (num_batches, batch_size)
    return cls(jnp.asarray(xp.reshape(*shape, *x.shape[1:])), jnp.asarray(yp.reshape(shape)),
               jnp.asarray(w.reshape(shape)), n)


class Trainer:
  """Compiled train/eval functions of one Experiment, with its data on device.

  Built once per experiment (and reused across IMP levels, branches and
  seeds of the same shapes), so each compiled function is traced once.
  """

  def __init__(self, experiment, use_masks: bool = True):
    self.experiment = experiment
    exp = experiment
    inputs = InputSpec.of(exp.dataset)
    step_fn = make_train_step(exp.model.apply, exp.tx, exp.schedule, inputs,
                              use_masks=use_masks, mesh=exp.mesh)
    self.loop = choose_loop(exp.loop, exp.params_shape)
    self._block = make_train_block(step_fn, self.loop)
    self._evaluate = make_eval_fn(exp.model.apply, inputs)
    eval_batch = exp.config.data.eval_batch_size
    self.splits = {"val": EvalSet.create(exp.dataset.x_val, exp.dataset.y_val, eval_batch),
                   "test": EvalSet.create(exp.dataset.x_test, exp.dataset.y_test, eval_batch)}
    self._x_train = self._replicate(jnp.asarray(exp.dataset.x_train))
    self._y_train = self._replicate(jnp.asarray(exp.dataset.y_train))

  def _replicate(self, tree):
    # Always commit to an explicit sharding: a state restored from a checkpoint
    # arrives committed, a fresh one does not, and jit compiles once per kind.
    mesh = self.experiment.mesh
    sharding = SingleDeviceSharding(jax.local_devices()[0]) if mesh is None else NamedSharding(
        mesh, PartitionSpec())
    return jax.device_put(tree, sharding)

  def place(self, state: TrainState) -> TrainState:
    """A private copy of `state` on the device(s), replicated over the mesh if any.

    The train block donates its input; copying here means the caller's arrays
    (a rewind point, a mask it holds) are never invalidated.
    """
    return self._replicate(jax.tree.map(jnp.copy, state))

  def run_block(self, state: TrainState, num_steps: int,
                data_seed: int | None = None) -> tuple[TrainState, dict[str, float]]:
    """Runs `num_steps` steps from `state.step` in one compiled scan.

    `state` is donated (invalid afterwards); pass `place(state)` to keep it.
    `data_seed` picks the data order (default: the experiment's seed); the
    instability analysis trains copies under different orders.
    """
    exp = self.experiment
    seed = exp.seed if data_seed is None else data_seed
    indices = data_lib.batch_indices(seed, len(exp.dataset.x_train), exp.batch_size,
                                     int(state.step), num_steps)
    indices = jnp.asarray(indices)
    indices = jax.device_put(indices, SingleDeviceSharding(jax.local_devices()[0])
                             if exp.mesh is None else
                             NamedSharding(exp.mesh, PartitionSpec(None, "data")))
    state, metrics = self._block(state, self._x_train, self._y_train, indices)
    return state, {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}

  def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
    """Mean loss and accuracy on "val" or "test" (BN in eval mode)."""
    data = self.splits[split]
    if data.size == 0:
      return {}
    loss, correct = self._evaluate(state.params, state.masks, state.batch_stats,
                                   data.x, data.y, data.weights)
    return {"loss": float(loss) / data.size, "accuracy": float(correct) / data.size}


def early_stopping(history: list[dict]) -> dict:
  """The evaluation with minimum validation loss (None fields if no val set)."""
  with_val = [h for h in history if "val_loss" in h]
  if not with_val:
    return {"early_stop_step": None, "early_stop_test_accuracy": None, "early_stop_val_loss": None}
  best = min(with_val, key=lambda h: (h["val_loss"], h["step"]))
  return {"early_stop_step": best["step"], "early_stop_test_accuracy": best["test_accuracy"],
          "early_stop_val_loss": best["val_loss"]}


def train_loop(trainer: Trainer, state: TrainState, checkpointer, end_step: int,
               history: list[dict] | None = None, label: str = "",
               on_block_end: Callable[[int], None] | None = None,
               prior_wall_time_s: float = 0.0,
               data_seed: int | None = None) -> tuple[TrainState, list[dict]]:
  """Trains `state` to `end_step`, evaluating and checkpointing on the way.

  Blocks end at every multiple of `eval_every` and `checkpoint_every`, at
  every kept save step and at `end_step`. After each evaluation a history
  record {step, train_loss, train_accuracy, val_*, test_*} is appended.
  Checkpoints (state + history) go to `checkpointer` at multiples of
  `checkpoint_every`, at its kept steps and at the end.

  Args:
    trainer: compiled functions and data.
    state: the state to continue from (any step <= end_step).
    checkpointer: a `checkpoints.Checkpointer` (or None for no checkpoints).
    end_step: the global step to stop at.
    history: records so far (from a resumed checkpoint).
    label: prefix of progress lines ("level 3").
    on_block_end: called with the step after each block (tests use it to
      simulate a crash).
    prior_wall_time_s: wall time spent before a resume; checkpoints store
      the running total as "wall_time_s".
    data_seed: seed of the data order (default: the experiment's seed).

  Returns:
    (final state, history).
  """
  exp = trainer.experiment
  history = list(history or [])
  state = trainer.place(state)
  step = int(state.step)
  keep = set(checkpointer.keep) if checkpointer is not None else set()
  started = time.perf_counter()
  interval_start, interval_steps = started, 0

  def payload():
    return {"history": history, "wall_time_s": prior_wall_time_s + time.perf_counter() - started}

  if checkpointer is not None and step in keep and step not in checkpointer.steps():
    checkpointer.save(step, state, payload())
  boundaries = sorted(keep | {end_step})
  while step < end_step:
    candidates = [(step // n + 1) * n for n in (exp.eval_every, exp.checkpoint_every)]
    candidates += [b for b in boundaries if b > step]
    target = min(min(candidates), end_step)
    state, metrics = trainer.run_block(state, target - step, data_seed)
    interval_steps += target - step
    step = target
    if step % exp.eval_every == 0 or step == end_step:
      record = {"step": step, "train_loss": metrics["loss"], "train_accuracy": metrics["accuracy"]}
      for split in ("val", "test"):
        record.update({f"{split}_{k}": v for k, v in trainer.evaluate(state, split).items()})
      history.append(record)
      if exp.verbose:
        now = time.perf_counter()
        rate = interval_steps / max(now - interval_start, 1e-9)
        interval_start, interval_steps = now, 0
        val = f" | val loss {record['val_loss']:.3f}" if "val_loss" in record else ""
        print(f"{label + ' | ' if label else ''}step {step}/{end_step} | {rate:,.0f} steps/s | "
              f"train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.1%}{val} | "
              f"test acc {record['test_accuracy']:.1%}", flush=True)
    if checkpointer is not None and (step % exp.checkpoint_every == 0 or step in boundaries):
      checkpointer.save(step, state, payload())
    if on_block_end is not None:
      on_block_end(step)
  return state, history


def summarize(trainer: Trainer, state: TrainState, history: list[dict]) -> dict:
  """Final and early-stopping metrics, density and per-layer density."""
  exp = trainer.experiment
  test = trainer.evaluate(state, "test")
  return {
      "final_test_accuracy": test["accuracy"],
      "final_test_loss": test["loss"],
      **early_stopping(history),
      "density": masks_lib.density(state.masks, exp.prunable),
      "layer_densities": masks_lib.layer_densities(state.masks, exp.prunable),
      "steps": int(state.step),
  }


def train_run(trainer: Trainer, directory: str, initial_state: TrainState,
              end_step: int | None = None, keep: tuple[int, ...] = (), label: str = "",
              on_block_end: Callable[[int], None] | None = None,
              data_seed: int | None = None) -> tuple[TrainState, dict]:
  """Trains from `initial_state` with checkpoints in `directory`, resuming if any.

  If `directory` holds checkpoints, training restarts from the latest one
  (whose structure must match `initial_state`), so a killed run re-run with
  the same arguments ends with the same params as an uninterrupted one.

  Returns:
    (final state, summary dict incl. "history" and "wall_time_s").
  """
  exp = trainer.experiment
  end_step = exp.total_steps if end_step is None else end_step
  checkpointer = Checkpointer(os.path.join(directory, "checkpoints"),
                              keep=set(keep) | {end_step})
  state, history, prior = initial_state, [], 0.0
  latest = checkpointer.latest_step()
  if latest is not None and latest >= int(initial_state.step):
    state, payload = checkpointer.restore(latest, initial_state)
    history, prior = payload.get("history", []), float(payload.get("wall_time_s", 0.0))
    if exp.verbose and latest < end_step:
      print(f"{label + ' | ' if label else ''}resuming from step {latest}", flush=True)
  started = time.perf_counter()
  state, history = train_loop(trainer, state, checkpointer, end_step, history, label=label,
                              on_block_end=on_block_end, prior_wall_time_s=prior,
                              data_seed=data_seed)
  checkpointer.close()
  summary = summarize(trainer, state, history)
  summary.update(history=history, wall_time_s=prior + time.perf_counter() - started)
  return state, summary


def load_state(directory: str, step: int, like: TrainState) -> TrainState:
  """The state a `train_run` in `directory` kept at `step` (a rewind point, the end).

  Raises:
    ConfigError: no checkpoint at `step` in `directory`.
  """
  checkpointer = Checkpointer(os.path.join(directory, "checkpoints"))
  try:
    if step not in checkpointer.steps():
      raise ConfigError(f"no checkpoint at step {step} in {directory}/checkpoints "
                        f"(found {checkpointer.steps()})")
    state, _ = checkpointer.restore(step, like)
  finally:
    checkpointer.close()
  return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       on_block_end: Callable[[int], None] | None = None) -> dict:
  """One (masked or dense) training run: `config.mode == "train"`.

  Trains the model of `config` from the seed's init to `train.duration`,
  keeping checkpoints at `train.save_at` and the end, resuming from
  `workdir/checkpoints` if a previous run was interrupted, and writes
  `workdir/results.json`.

  Returns:
    The results dict (final and early-stop test accuracy, density, per-layer
    density, steps, wall time, evaluation history).
  """
  exp = create_experiment(config)
  runs.prepare_workdir(config, workdir)
  trainer = Trainer(exp)
  state, summary = train_run(trainer, workdir, exp.init_state(), keep=tuple(exp.save_steps),
                             on_block_end=on_block_end)
  results = {"mode": "train", "config_hash": runs.config_hash(config), **summary}
  runs.write_results(workdir, results)
  if exp.verbose:
    print(f"final test accuracy {results['final_test_accuracy']:.2%}; early stop at step "
          f"{results['early_stop_step']} with test accuracy "
          f"{_percent(results['early_stop_test_accuracy'])}; density {results['density']:.2%}; "
          f"{results['wall_time_s']:.1f} s", flush=True)
  return results


def _percent(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.2%}"
