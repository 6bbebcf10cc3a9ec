"""The `config.sparse` and `config.dsd` sections, validated into typed settings.

What a method accepts comes from its registry entry (`lotto.dynamic.methods`),
so this parser compares no method names. Every bad value is a one-line
ConfigError naming the field and the valid values, raised before anything is
written (exit 2 from the CLI).
"""
from __future__ import annotations

import jax
import ml_collections

from lotto.core import masks as masks_lib
from lotto.core.distributions import START_DISTRIBUTIONS
from lotto.core.errors import ConfigError
from lotto.core.fanin import FANIN
from lotto.core.schedules import DROP_SCHEDULES
from lotto.core.selection import SCOPES
from lotto.core.structure import check_shapes, parse_structure
from lotto.core.types import Prunable
from lotto.dynamic import CRITERIA
from lotto.dynamic.methods import SPARSE_METHODS, SparseMethod, SparseSettings
from lotto.jobs import validators
from lotto.jobs.experiment import Experiment

GROW_INITS = ("zeros",)


def _step(exp: Experiment, text: str, default: int, what: str) -> int:
  return default if text in ("", None) else exp.duration(text, what)


def sparse_settings(config: ml_collections.ConfigDict, exp: Experiment) -> SparseSettings:
  """Validates `config.sparse` and `config.dsd` against the training length.

  Raises:
    ConfigError: unknown method, density outside (0, 1], an update interval
      of zero or longer than training, begin > end, stop or end after the end
      of training, a drop fraction outside (0, 1), DSD phases that do not add
      up to the training duration, or any other bad field.
  """
  s, total = config.sparse, exp.total_steps
  entry = SPARSE_METHODS.get(s.method)
  method = entry.name
  if s.compression:
    density = 10.0 ** (-validators.positive_number(s.compression, "sparse.compression"))
  else:
    density = masks_lib.check_density(s.density, "sparse.density")
  distribution = validators.choice(s.distribution, ("auto",) + START_DISTRIBUTIONS,
                                   "sparse.distribution")
  if distribution == "auto":
    distribution = entry.default_distribution
  _check_fan_in(entry, distribution, exp)
  scope = validators.choice(s.scope, SCOPES, "sparse.scope")
  if scope == "global" and not entry.global_scope:
    raise ConfigError(f"sparse.scope='global' ranks magnitudes over all layers, which only "
                      f"{_which('global_scope')} does; {method} keeps per-layer counts: use "
                      "sparse.scope='layerwise'")
  every = exp.duration(s.update_every, "sparse.update_every")
  if entry.periodic and not 0 < every <= total:
    raise ConfigError(f"sparse.update_every must be between 1 step and the training length "
                      f"({total} steps); got {s.update_every!r} ({every} steps)")
  begin = _step(exp, s.begin, int(total * entry.default_begin_fraction), "sparse.begin")
  end = _step(exp, s.end, (3 * total) // 4, "sparse.end")
  stop = _step(exp, s.stop, (3 * total) // 4, "sparse.stop")
  fraction = validators.open_fraction(s.drop_fraction, "sparse.drop_fraction")
  validators.choice(s.grow_init, GROW_INITS, "sparse.grow_init")
  threshold = validators.number(s.threshold, "sparse.threshold")
  if threshold < 0 or (threshold > 0 and not entry.threshold):
    raise ConfigError(f"sparse.threshold must be >= 0 and is for sparse.method="
                      f"{_which('threshold', quoted=True)} only; got {s.threshold!r} with "
                      f"method {method!r}")
  ablation = validators.number(s.ablation_threshold, "sparse.ablation_threshold")
  if not 0.0 <= ablation <= 1.0:
    raise ConfigError(f"sparse.ablation_threshold must lie in [0, 1] (0 turns neuron ablation "
                      f"off); got {s.ablation_threshold!r}")
  if ablation > 0 and not entry.ablation:
    raise ConfigError(f"sparse.ablation_threshold > 0 ablates units in sparse.method="
                      f"{_which('ablation', quoted=True)} only; got {s.ablation_threshold!r} "
                      f"with method {method!r}")
  structure = parse_structure(s.structure, "sparse.structure")
  if structure.kind != "unstructured":
    if not entry.structured or threshold > 0:
      raise ConfigError(f"sparse.structure {structure} is for {_which('structured', ' and ')} "
                        f"(by target density); got sparse.method={method!r}"
                        + (" with a threshold" if threshold > 0 else ""))
    check_shapes(structure, exp.params_shape, exp.prunable, "sparse.structure")
  settings = SparseSettings(
      method=method, structure=structure, density=density, distribution=distribution, scope=scope,
      update_every=every, begin=begin, end=end, stop=stop, drop_fraction=fraction,
      drop_schedule=validators.choice(s.drop_schedule, DROP_SCHEDULES, "sparse.drop_schedule"),
      criterion=validators.choice(s.criterion, CRITERIA, "sparse.criterion"), threshold=threshold,
      obd_probes=validators.positive_int(s.obd_probes, "sparse.obd_probes"),
      dsd_boundaries=_dsd_boundaries(config, exp),
      final_lr_scale=validators.positive_number(config.dsd.final_lr_scale,
                                                "dsd.final_lr_scale"),
      ablation_threshold=ablation)
  entry.check_schedule(settings, total)
  return settings


def method_prunable(entry: SparseMethod, exp: Experiment) -> Prunable:
  """The leaves `entry` prunes: the experiment's, less the `output` layer (every lotto
  model's last layer) for a method that keeps it dense (SRigL)."""
  if not entry.dense_output:
    return exp.prunable
  names = masks_lib.leaf_names(exp.params_shape)
  flags, treedef = jax.tree.flatten(exp.prunable)
  return jax.tree.unflatten(treedef, [f and not n.startswith("output/")
                                      for n, f in zip(names, flags)])


def _check_fan_in(entry: SparseMethod, distribution: str, exp: Experiment) -> None:
  """One-line errors: constant fan-in start masks for a method that starts dense, a
  constant fan-in method from another distribution, a prunable leaf with no output units."""
  method = entry.name
  if distribution == FANIN and entry.starts_dense:
    raise ConfigError(f"sparse.distribution='fanin' draws constant fan-in start masks, but "
                      f"sparse.method={method!r} starts dense; valid choices for {method}: "
                      f"auto, uniform, erk (fanin is for {_which('starts_dense', negate=True)})")
  if entry.constant_fan_in and distribution != FANIN:
    raise ConfigError(f"sparse.method={method!r} keeps a constant fan-in per output unit, so "
                      f"it starts from constant fan-in masks; got sparse.distribution="
                      f"{distribution!r}; valid choices for {method}: auto, fanin")
  if distribution != FANIN:
    return
  leaves = jax.tree.leaves(exp.params_shape)
  for name, leaf, flag in zip(masks_lib.leaf_names(exp.params_shape), leaves,
                              jax.tree.leaves(method_prunable(entry, exp))):
    if flag and len(leaf.shape) < 2:
      raise ConfigError(f"sparse.distribution='fanin' keeps k inputs per output unit of Dense "
                        f"and Conv kernels (rank >= 2); prunable leaf {name} has shape "
                        f"{tuple(leaf.shape)}: leave it out (masks.include / masks.exclude) or "
                        "use sparse.distribution uniform or erk")


def _which(capability: str, joiner: str = ", ", quoted: bool = False,
           negate: bool = False) -> str:
  """The registered methods that have `capability` (a `SparseMethod` flag; with `negate`,
  that lack it), for messages."""
  names = [n for n in SPARSE_METHODS.names()
           if bool(getattr(SPARSE_METHODS.get(n), capability)) != negate]
  return joiner.join(repr(n) if quoted else n for n in names)


def _dsd_boundaries(config: ml_collections.ConfigDict, exp: Experiment) -> tuple[int, int]:
  """The steps DSD's sparse and final dense phases start (thirds by default)."""
  phases, total = config.dsd.phases, exp.total_steps
  if not phases:
    return total // 3, (2 * total) // 3
  if isinstance(phases, str) or len(phases) != 3:
    raise ConfigError(f"dsd.phases must be three durations (dense, sparse, dense), e.g. "
                      f"('2000it', '2000it', '2000it'); got {phases!r}")
  steps = [exp.duration(p, "dsd.phases entry") for p in phases]
  if sum(steps) != total or min(steps) <= 0:
    raise ConfigError(f"dsd.phases {tuple(phases)!r} ({' + '.join(map(str, steps))} = "
                      f"{sum(steps)} steps) must be positive and add up to train.duration "
                      f"({total} steps); set --config.train.duration={sum(steps)}it or change "
                      "the phases")
  return steps[0], steps[0] + steps[1]
