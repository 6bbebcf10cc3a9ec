"""Sparse-training methods as registered objects: `config.sparse.method` names one.

A `SparseMethod` carries everything a job, a report or `--help` needs to know
about a method, so none of them compares method names:

- how it starts (dense, or a random mask at the layer densities of its
  default distribution, "erk", "uniform" or "fanin"; whether its masks must
  keep a constant fan-in and whether it keeps the `output` layer dense),
- which settings it takes (a global magnitude ranking, a pruning threshold,
  N:M or block structure, an update interval checked against the length,
  a neuron-ablation threshold),
- its schedule's own checks (`check_schedule`, one-line errors),
- how it builds its mask update (`build`, None for a fixed mask),
- what it adds to a run: steps whose checkpoints are kept and whose test
  accuracy is reported as named phases, and an LR scale from a step on
  (DSD's final phase).

Adding a method is one `SPARSE_METHODS.register(name, SparseMethod(...))` entry and its
tests.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import jax

from lotto.core.errors import ConfigError
from lotto.core.masks import leaf_names
from lotto.core.registry import Registry
from lotto.core.structure import Structure
from lotto.core.types import Prunable, PyTree
from lotto.dynamic.gmp import DenseSparseDense, GradualMagnitude
from lotto.dynamic.regrow import DropAndGrow, regrow_steps
from lotto.dynamic.srigl_masks import ConstantFanInRegrow
from lotto.dynamic.update import MaskUpdate


@dataclasses.dataclass(frozen=True)
class SparseSettings:
  """The validated `sparse` / `dsd` config sections, durations in steps.

  `begin`/`end` are the GMP schedule (set/rigl/srigl: `begin` = no update
  before it); `stop` ends SET/RigL/SRigL updates; `dsd_boundaries` are the
  steps the sparse and the final dense phase start; `ablation_threshold` is
  SRigL's gamma_sal (0: no neuron ablation).
  """
  method: str
  density: float
  distribution: str
  scope: str
  update_every: int
  begin: int
  end: int
  stop: int
  drop_fraction: float
  drop_schedule: str
  criterion: str
  threshold: float
  obd_probes: int
  dsd_boundaries: tuple[int, int]
  final_lr_scale: float
  structure: Structure = Structure()
  ablation_threshold: float = 0.0


@dataclasses.dataclass(frozen=True)
class MethodInputs:
  """What a method's mask update is built from.

  Attributes:
    settings: the validated sparse settings.
    prunable: which params may be pruned.
    params_shape: the params' shapes (ShapeDtypeStructs).
    densities: each prunable layer's target density, by layer name
      (`settings.distribution` over the layers).
  """
  settings: SparseSettings
  prunable: Prunable
  params_shape: PyTree
  densities: Mapping[str, float]

  def layer_names(self) -> list[str]:
    """The prunable layers' names, in params order."""
    return [n for n, f in zip(leaf_names(self.params_shape), jax.tree.leaves(self.prunable)) if f]

  def layer_sizes(self) -> list[int]:
    """The prunable layers' weight counts, in params order."""
    return [math.prod(leaf.shape) for leaf, f in zip(jax.tree.leaves(self.params_shape),
                                                      jax.tree.leaves(self.prunable)) if f]


def _no_schedule_checks(settings: SparseSettings, total: int) -> None:
  del settings, total


def _no_phases(settings: SparseSettings) -> tuple[tuple[str, int], ...]:
  del settings
  return ()


def _no_lr_scale(settings: SparseSettings) -> tuple[int, float] | None:
  del settings
  return None


@dataclasses.dataclass(frozen=True)
class SparseMethod:
  """One sparse-training method.

  Attributes:
    name: its `config.sparse.method` value.
    summary: one line for `--help` and the docs.
    starts_dense: training starts from all-ones masks (else from a random
      mask at the target density, or a topology's).
    default_distribution: the layer distribution `sparse.distribution="auto"`
      gives ("erk", "uniform" or "fanin").
    periodic: it updates every `sparse.update_every` steps (checked against
      the training length).
    default_begin_fraction: `sparse.begin=""` is this fraction of training.
    global_scope: accepts `sparse.scope="global"` (one ranking over layers).
    threshold: accepts `sparse.threshold > 0`.
    structured: accepts an N:M or block `sparse.structure`.
    check_schedule: (settings, total steps) -> None; raises ConfigError for
      a schedule this method cannot run.
    build: MethodInputs -> its mask update (None: the mask never changes).
    phases: settings -> ((name, step), ...): steps whose checkpoints are kept
      and whose test accuracy and density the results list as "phases", then
      the end of training as `final_phase`.
    final_phase: the name of the last phase (the end of training).
    lr_scale: settings -> (step, scale) or None: the LR is multiplied by
      `scale` from `step` on.
    control: the fixed-mask control of the dynamic methods (reports draw it
      dashed).
    constant_fan_in: its masks keep a constant fan-in per output unit: it
      starts from `sparse.distribution="fanin"` (or a constant fan-in
      topology) only.
    dense_output: it leaves the `output` layer dense (not prunable).
    ablation: accepts `sparse.ablation_threshold > 0` (neuron ablation).
  """
  name: str
  summary: str
  starts_dense: bool
  default_distribution: str
  build: Callable[[MethodInputs], MaskUpdate | None]
  periodic: bool = False
  default_begin_fraction: float = 0.0
  global_scope: bool = False
  threshold: bool = False
  structured: bool = False
  check_schedule: Callable[[SparseSettings, int], None] = _no_schedule_checks
  phases: Callable[[SparseSettings], tuple[tuple[str, int], ...]] = _no_phases
  final_phase: str = ""
  lr_scale: Callable[[SparseSettings], tuple[int, float] | None] = _no_lr_scale
  control: bool = False
  constant_fan_in: bool = False
  dense_output: bool = False
  ablation: bool = False


SPARSE_METHODS: Registry[SparseMethod] = Registry("sparse.method", ordered=True)


def _ordered_densities(inputs: MethodInputs) -> tuple[float, ...]:
  return tuple(inputs.densities[n] for n in inputs.layer_names())


def _check_gmp_schedule(settings: SparseSettings, total: int) -> None:
  if settings.begin > settings.end:
    raise ConfigError(f"sparse.begin ({settings.begin} steps) is after sparse.end "
                      f"({settings.end} steps); begin <= end (begin == end prunes once)")
  if settings.end >= total:
    raise ConfigError(f"sparse.end ({settings.end} steps) must be before the end of training "
                      f"({total} steps)")


def _build_gmp(inputs: MethodInputs) -> MaskUpdate:
  s = inputs.settings
  return GradualMagnitude(inputs.prunable, s.begin, s.end, s.update_every,
                          _ordered_densities(inputs), scope=s.scope, criterion=s.criterion,
                          threshold=s.threshold, obd_probes=s.obd_probes, structure=s.structure)


def _build_dsd(inputs: MethodInputs) -> MaskUpdate:
  s = inputs.settings
  counts = tuple(int(round(d * size))
                 for d, size in zip(_ordered_densities(inputs), inputs.layer_sizes()))
  return DenseSparseDense(inputs.prunable, s.dsd_boundaries[0], s.dsd_boundaries[1], counts,
                          structure=s.structure)


def _check_regrow_schedule(settings: SparseSettings, total: int) -> None:
  every, begin, stop = settings.update_every, settings.begin, settings.stop
  if stop > total:
    raise ConfigError(f"sparse.stop ({stop} steps) is after the end of training ({total} steps)")
  if begin >= stop:
    raise ConfigError(f"sparse.begin ({begin} steps) is not before sparse.stop ({stop} steps)")
  if not regrow_steps(every, begin, stop):
    raise ConfigError(f"no mask update would run: the first multiple of sparse.update_every "
                      f"({every} steps) from sparse.begin ({begin}) on is not before sparse.stop "
                      f"({stop} steps); use a shorter update_every or a later stop")


def drop_and_grow_builder(growth: str) -> Callable[[MethodInputs], MaskUpdate]:
  """`build` of a drop-and-grow method regrowing by `growth` ("random" | "gradient")."""

  def build(inputs: MethodInputs) -> MaskUpdate:
    s = inputs.settings
    return DropAndGrow(inputs.prunable, s.update_every, s.stop, s.drop_fraction,
                       s.drop_schedule, growth, begin=s.begin)

  return build


def _build_srigl(inputs: MethodInputs) -> MaskUpdate:
  s = inputs.settings
  return ConstantFanInRegrow(inputs.prunable, s.update_every, s.stop, s.drop_fraction,
                             s.drop_schedule, begin=s.begin, gamma=s.ablation_threshold)


SPARSE_METHODS.register("static", SparseMethod(
    name="static", summary="a fixed random (ERK) or topology mask trained from init",
    starts_dense=False, default_distribution="erk", build=lambda inputs: None, control=True))
SPARSE_METHODS.register("gmp", SparseMethod(
    name="gmp", summary="gradual magnitude pruning from dense (Zhu & Gupta; one-shot when "
    "begin == end)", starts_dense=True, default_distribution="uniform", build=_build_gmp,
    periodic=True, default_begin_fraction=0.25, global_scope=True, threshold=True,
    structured=True, check_schedule=_check_gmp_schedule))
SPARSE_METHODS.register("dsd", SparseMethod(
    name="dsd", summary="dense-sparse-dense (Han et al.): each phase's accuracy reported",
    starts_dense=True, default_distribution="uniform", build=_build_dsd, structured=True,
    phases=lambda s: (("dense", s.dsd_boundaries[0]), ("sparse", s.dsd_boundaries[1])),
    final_phase="dense_again",
    # The mask is dense again after the update at the sparse phase's last step.
    lr_scale=lambda s: (s.dsd_boundaries[1] + 1, s.final_lr_scale)))
SPARSE_METHODS.register("set", SparseMethod(
    name="set", summary="drop and regrow at random (Mocanu et al.)", starts_dense=False,
    default_distribution="erk", build=drop_and_grow_builder("random"), periodic=True,
    check_schedule=_check_regrow_schedule))
SPARSE_METHODS.register("rigl", SparseMethod(
    name="rigl", summary="drop and regrow by |dense gradient| (Evci et al.)", starts_dense=False,
    default_distribution="erk", build=drop_and_grow_builder("gradient"), periodic=True,
    check_schedule=_check_regrow_schedule))
SPARSE_METHODS.register("srigl", SparseMethod(
    name="srigl", summary="RigL per output unit at constant fan-in, output layer dense, "
    "optional neuron ablation (Lasby et al.)", starts_dense=False, default_distribution="fanin",
    build=_build_srigl, periodic=True, check_schedule=_check_regrow_schedule,
    constant_fan_in=True, dense_output=True, ablation=True))
