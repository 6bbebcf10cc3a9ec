"""Builds everything a training run needs from a config (the config edge).

`create_experiment(config)` reads the ConfigDict once and validates every
field (names, numbers, durations) before anything touches the disk; the
`Experiment` it returns holds typed fields only (no ConfigDict), and is the
`TrainSetup` that `lotto.train.trainer.Trainer` trains.
"""
from __future__ import annotations

import dataclasses
import functools
import json

import jax
import ml_collections
import optax
from flax import linen as nn
from jax.sharding import Mesh

from lotto import data as data_lib
from lotto.core import masks as masks_lib
from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError
from lotto.core.rng import purpose_key
from lotto.core.types import Masks, Prunable
from lotto.jobs import backend, modes, validators
from lotto.jobs.topology import TopologySettings, topology_settings
from lotto.models import check_model, create_model, default_masks_include, init_variables
from lotto.runtime import devices, locks, runs
from lotto.train import optim
from lotto.train.precision import PRECISIONS
from lotto.train.state import TrainState, create_train_state


def canonical_config(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON-able data (tuples become lists): what config.json holds."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def job(mode: str):
  """Decorates a job `fn(config, workdir, ...)`: the workdir locks it takes
  (`runs.prepare_workdir`) are released when it ends, and if it raises `Diverged`
  its workdir's results.json says so (`runs.recording_divergence`) first. A
  finished run in a read-only workdir returns its results without writing."""

  def decorate(function):
    @functools.wraps(function)
    def run(config: ml_collections.ConfigDict, workdir: str, *args, **kwargs):
      config = backend.resolve(config)
      run_config = canonical_config(config)
      finished = runs.finished_read_only(workdir, run_config, )
      if finished is not None:
        devices.note(f"{workdir} is read-only and holds this finished run: its results as "
                     "they are")
        return finished
      header = {"mode": mode, "config_hash": runs.config_hash(run_config)}
      with locks.releasing_locks(), runs.recording_divergence(workdir, header):
        return function(config, workdir, *args, **kwargs)
    return run

  return decorate


@dataclasses.dataclass
class Experiment:
  """A validated, built training setup.

  Attributes:
    run_config: the resolved config as JSON data (`canonical_config`): what
      the workdir's config.json holds and its hash names.
    seed: run seed.
    dataset: the data (host arrays).
    model: the Flax module.
    tx: update-direction transformation.
    schedule: LR as a function of the global step.
    batch_size, steps_per_epoch, total_steps: training length.
    eval_batch_size: batch size of evaluation.
    eval_every, checkpoint_every: intervals in steps.
    save_steps: steps whose checkpoints are kept (rewind points, the end).
    prunable: which params may be pruned.
    mesh: data-parallel mesh, or None for a single device.
    loop: "scan" | "step" (see `train.make_train_block`).
    params_shape: ShapeDtypeStructs of the params.
    verbose: 0 quiet, 1 a progress bar on a terminal (heartbeat lines
      elsewhere) and a line per run, 2 a line per evaluation.
    tensorboard: write TensorBoard event files in every run's directory.
    on_nan: "stop" (raise `Diverged` on a non-finite loss) or "continue".
    precision: "float32" or "bfloat16" (`train.precision`, `lotto.train.precision`).
    resident_limit_mb: `data.resident_limit_mb` (the pipeline `auto` resolved to is
      `dataset.pipeline`; a streamed chunk holds at most a 16th of this).
    seeds: a population's seeds (`jobs.replicas`); () for a single run.
    mode: the job (`config.mode`).
    topology: the start wiring (`config.topology`, parsed).
  """
  run_config: dict
  seed: int
  dataset: data_lib.Dataset
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: optim.Schedule
  batch_size: int
  eval_batch_size: int
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  checkpoint_every: int
  save_steps: frozenset[int]
  prunable: Prunable
  mesh: Mesh | None
  loop: str
  params_shape: object
  verbose: int
  tensorboard: bool
  on_nan: str
  precision: str = "float32"
  resident_limit_mb: float = data_lib.DEFAULT_RESIDENT_LIMIT_MB
  seeds: tuple[int, ...] = ()
  mode: str = "train"
  topology: TopologySettings = TopologySettings()

  def duration(self, text: str, what: str) -> int:
    """Parses a duration of this experiment ("500it", "2ep") into steps."""
    return parse_duration(text, self.steps_per_epoch, what)

  def init_params(self, key: jax.Array):
    """(params, batch_stats) of a fresh init from `key`."""
    return init_variables(self.model, key, self.dataset.input_shape)

  def init_state(self, masks: Masks | None = None, init_key: jax.Array | None = None,
                 step: int = 0) -> TrainState:
    """A fresh TrainState (init from the seed's "init" stream unless given)."""
    key = purpose_key(self.seed, "init") if init_key is None else init_key
    params, batch_stats = self.init_params(key)
    return create_train_state(params, batch_stats, masks, self.tx,
                              purpose_key(self.seed, "step"), step=step)


ON_NAN = ("stop", "continue")
MODEL_SIZES = ("layers", "heads", "width", "context", "patch")


def population_seeds(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The validated `config.seeds` (empty: a single run of `config.seed`).

  Raises:
    ConfigError: not a tuple of integers in [0, 2**32), a seed listed twice,
      or a mode that does not run populations.
  """
  seeds = config.seeds
  if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (tuple, list)):
    raise ConfigError(f"seeds must be a tuple of distinct integers, e.g. (0, 1, 2, 3), or () "
                      f"for a single run of `seed`; got {seeds!r}")
  if not seeds:
    return ()
  for seed in seeds:
    validators.seed(seed, "each of seeds")
  try:
    validators.distinct(seeds, "seeds")
  except ConfigError as error:
    raise ConfigError(f"{error}; each replica needs its own seed") from None
  allowed = modes.population_modes()
  if config.mode not in allowed:
    hint = (" (a sweep has its own sweep.seeds)"
            if config.mode in modes.MODES and modes.MODES.get(config.mode).sweep else "")
    raise ConfigError(f"seeds (a population) works with mode {', '.join(allowed)}; "
                      f"got mode {config.mode!r}{hint}: set seeds=() ")
  if jax.process_count() > 1:
    raise ConfigError(f"seeds (a population) runs in one process; this is a "
                      f"{jax.process_count()}-process launch: set seeds=() or launch one process")
  return tuple(int(s) for s in seeds)


def _widths(value) -> tuple[int, ...]:
  if (isinstance(value, str) or not isinstance(value, (tuple, list)) or not value or
      any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in value)):
    raise ConfigError(f"model.widths must be a non-empty tuple of positive integers (hidden "
                      f"layer widths), e.g. (500, 500); got {value!r}")
  return tuple(value)


def _verbosity(value) -> int:
  if isinstance(value, bool) or value not in (0, 1, 2):
    raise ConfigError(f"train.verbose must be 0 (quiet), 1 (progress bar, a line per run) or 2 "
                      f"(a line per evaluation); got {value!r}")
  return int(value)


def create_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds the data, model, optimizer and schedule.

  Raises:
    ConfigError: any invalid field (one line naming it and the valid values).
  """
  config = backend.resolve(config)  # the machine-dependent fields (the global batch, ...)
  batch_size = validators.positive_int(config.data.batch_size, "data.batch_size")
  eval_batch_size = validators.positive_int(config.data.eval_batch_size, "data.eval_batch_size")
  validators.seed(config.seed, "seed")
  seeds = population_seeds(config)
  model_options = {"widths": _widths(config.model.widths)} if config.model.name == "mlp" else {}
  for size in MODEL_SIZES:  # transformer sizes; 0 leaves the model's default
    if config.model[size] != 0:
      model_options[size] = validators.positive_int(config.model[size], f"model.{size}")
  # Check names and numbers that need no data before loading any.
  check_model(config.model.name, config.model.init, **model_options)
  topology = topology_settings(config)
  tx = optim.create_optimizer(
      config.optimizer.name, weight_decay=config.optimizer.weight_decay,
      momentum=config.optimizer.momentum, b1=config.optimizer.b1, b2=config.optimizer.b2,
      eps=config.optimizer.eps, skip_bias_and_norm=config.optimizer.skip_bias_and_norm)
  data_lib.DATASETS.get(config.data.name)
  optim.check_schedule(config.schedule.name, config.optimizer.learning_rate,
                       config.schedule.warmup, config.schedule.drops)
  on_nan = validators.choice(config.train.on_nan, ON_NAN, "train.on_nan")
  precision = validators.choice(config.train.precision, PRECISIONS, "train.precision")
  tensorboard = validators.boolean(config.train.tensorboard, "train.tensorboard")
  verbose = _verbosity(config.train.verbose)
  loop = validators.choice(config.train.loop, devices.TRAIN_LOOPS, "train.loop")
  for field in ("duration", "eval_every", "checkpoint_every"):
    validators.positive_duration(config.train[field], f"train.{field}")

  pipeline = validators.choice(config.data.pipeline, data_lib.PIPELINES, "data.pipeline")
  limit_mb = validators.positive_number(config.data.resident_limit_mb, "data.resident_limit_mb")
  dataset = data_lib.load_dataset(
      config.data.name, validation_size=config.data.validation_size,
      data_dir=config.data.data_dir or None, download=config.data.download,
      augment=config.data.augment, cache_dir=config.data.cache_dir or None,
      pipeline=pipeline, resident_limit_mb=limit_mb, image_size=config.data.image_size)
  model = create_model(config.model.name, dataset.num_classes, config.model.init,
                       **model_options)
  steps_per_epoch = dataset.num_train // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"data.batch_size={batch_size} exceeds the {dataset.num_train} "
                      "training examples")
  total = parse_duration(config.train.duration, steps_per_epoch, "train.duration")
  if total <= 0:
    raise ConfigError(f"train.duration must be positive; got {config.train.duration!r}")
  eval_every = max(1, parse_duration(config.train.eval_every, steps_per_epoch, "train.eval_every"))
  ckpt_every = max(1, parse_duration(config.train.checkpoint_every, steps_per_epoch,
                                     "train.checkpoint_every"))
  save_steps = {parse_duration(s, steps_per_epoch, "train.save_at") for s in config.train.save_at}
  beyond = sorted(s for s in save_steps if s > total)
  if beyond:
    raise ConfigError(f"train.save_at step {beyond[0]} is beyond the end of training ({total})")
  schedule = optim.create_schedule(config.schedule.name, config.optimizer.learning_rate, total,
                                   steps_per_epoch, config.schedule.warmup,
                                   config.schedule.drops, config.schedule.drop_factor)
  params_shape, _ = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0),
                                                          dataset.input_shape))
  prunable = masks_lib.select_prunable(
      params_shape, config.masks.include or default_masks_include(config.model.name),
      config.masks.exclude)
  return Experiment(
      run_config=canonical_config(config), seed=config.seed, dataset=dataset, model=model,
      tx=tx, schedule=schedule, batch_size=batch_size, eval_batch_size=eval_batch_size,
      steps_per_epoch=steps_per_epoch, total_steps=total,
      eval_every=eval_every, checkpoint_every=ckpt_every,
      save_steps=frozenset(save_steps | {total}), prunable=prunable,
      mesh=devices.create_mesh(config.data_parallel, batch_size), loop=loop,
      params_shape=params_shape, verbose=verbose, tensorboard=tensorboard, on_nan=on_nan,
      precision=precision, resident_limit_mb=limit_mb, seeds=seeds, mode=config.mode,
      topology=topology)
