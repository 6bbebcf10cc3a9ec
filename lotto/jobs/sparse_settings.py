"""The `config.sparse` and `config.dsd` sections, validated into typed settings.

Every bad value is a one-line ConfigError naming the field and the valid
values, raised before anything is written (exit 2 from the CLI).
"""
from __future__ import annotations

import dataclasses

import ml_collections

from lotto.core import masks as masks_lib
from lotto.core.distributions import DISTRIBUTIONS
from lotto.core.errors import ConfigError
from lotto.core.schedules import DROP_SCHEDULES
from lotto.core.selection import SCOPES
from lotto.core.structure import Structure, check_shapes, parse_structure
from lotto.dynamic import CRITERIA, regrow_steps
from lotto.jobs.experiment import Experiment, positive_int

SPARSE_METHODS = ("static", "gmp", "dsd", "set", "rigl")
GROW_INITS = ("zeros",)


@dataclasses.dataclass(frozen=True)
class SparseSettings:
  """The validated `sparse` / `dsd` sections, durations in steps.

  `begin`/`end` are the GMP schedule (set/rigl: `begin` = no update before
  it); `stop` ends SET/RigL updates; `dsd_boundaries` are the steps the sparse
  and the final dense phase start.
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


def _choice(value, valid, what):
  if value not in valid:
    raise ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(valid)}")
  return value


def _number(value, what: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{what} must be a number; got {value!r}")
  return float(value)


def _positive_number(value, what: str) -> float:
  if _number(value, what) <= 0:
    raise ConfigError(f"{what} must be > 0; got {value!r}")
  return float(value)


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
  method = _choice(s.method, SPARSE_METHODS, "sparse.method")
  if s.compression:
    if _number(s.compression, "sparse.compression") <= 0:
      raise ConfigError(f"sparse.compression must be > 0; got {s.compression!r}")
    density = 10.0 ** (-float(s.compression))
  else:
    density = masks_lib.check_density(s.density, "sparse.density")
  distribution = _choice(s.distribution, ("auto",) + DISTRIBUTIONS[1:], "sparse.distribution")
  if distribution == "auto":
    distribution = "uniform" if method in ("gmp", "dsd") else "erk"
  scope = _choice(s.scope, SCOPES, "sparse.scope")
  if scope == "global" and method != "gmp":
    raise ConfigError(f"sparse.scope='global' ranks magnitudes over all layers, which only gmp "
                      f"does; {method} keeps per-layer counts: use sparse.scope='layerwise'")
  every = exp.duration(s.update_every, "sparse.update_every")
  if method in ("gmp", "set", "rigl") and not 0 < every <= total:
    raise ConfigError(f"sparse.update_every must be between 1 step and the training length "
                      f"({total} steps); got {s.update_every!r} ({every} steps)")
  begin = _step(exp, s.begin, total // 4 if method == "gmp" else 0, "sparse.begin")
  end = _step(exp, s.end, (3 * total) // 4, "sparse.end")
  stop = _step(exp, s.stop, (3 * total) // 4, "sparse.stop")
  if method == "gmp":
    if begin > end:
      raise ConfigError(f"sparse.begin ({begin} steps) is after sparse.end ({end} steps); "
                        "begin <= end (begin == end prunes once)")
    if end >= total:
      raise ConfigError(f"sparse.end ({end} steps) must be before the end of training "
                        f"({total} steps)")
  if method in ("set", "rigl"):
    if stop > total:
      raise ConfigError(f"sparse.stop ({stop} steps) is after the end of training "
                        f"({total} steps)")
    if begin >= stop:
      raise ConfigError(f"sparse.begin ({begin} steps) is not before sparse.stop ({stop} steps)")
    if not regrow_steps(every, begin, stop):
      raise ConfigError(f"no mask update would run: the first multiple of sparse.update_every "
                        f"({every} steps) from sparse.begin ({begin}) on is not before sparse.stop "
                        f"({stop} steps); use a shorter update_every or a later stop")
  fraction = _number(s.drop_fraction, "sparse.drop_fraction")
  if not 0 < fraction < 1:
    raise ConfigError(f"sparse.drop_fraction must lie in (0, 1); got {s.drop_fraction!r}")
  _choice(s.grow_init, GROW_INITS, "sparse.grow_init")
  threshold = _number(s.threshold, "sparse.threshold")
  if threshold < 0 or (threshold > 0 and method != "gmp"):
    raise ConfigError(f"sparse.threshold must be >= 0 and is for sparse.method='gmp' only; "
                      f"got {s.threshold!r} with method {method!r}")
  structure = parse_structure(s.structure, "sparse.structure")
  if structure.kind != "unstructured":
    if method not in ("gmp", "dsd") or threshold > 0:
      raise ConfigError(f"sparse.structure {structure} is for gmp (by target density) and dsd; "
                        f"got sparse.method={method!r}"
                        + (" with a threshold" if threshold > 0 else ""))
    check_shapes(structure, exp.params_shape, exp.prunable, "sparse.structure")
  return SparseSettings(
      method=method, structure=structure, density=density, distribution=distribution, scope=scope,
      update_every=every, begin=begin, end=end, stop=stop, drop_fraction=fraction,
      drop_schedule=_choice(s.drop_schedule, DROP_SCHEDULES, "sparse.drop_schedule"),
      criterion=_choice(s.criterion, CRITERIA, "sparse.criterion"), threshold=threshold,
      obd_probes=positive_int(s.obd_probes, "sparse.obd_probes"),
      dsd_boundaries=_dsd_boundaries(config, exp),
      final_lr_scale=_positive_number(config.dsd.final_lr_scale, "dsd.final_lr_scale"))


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
