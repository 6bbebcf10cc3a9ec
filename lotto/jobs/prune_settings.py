"""The `config.prune` section (pruning at initialization or at step k), validated into
typed settings: one-line ConfigErrors naming the field and the valid values, raised
before anything is written."""
from __future__ import annotations

import dataclasses

import ml_collections

from lotto import pruning
from lotto.core import ablations, distributions, schedules, selection
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.scores import GRASP_PARAMS
from lotto.core.structure import Structure, check_shapes, parse_structure
from lotto.jobs import backend, validators
from lotto.jobs.experiment import Experiment


@dataclasses.dataclass(frozen=True)
class PruneSettings:
  """The validated `config.prune` section."""
  method: str
  density: float
  scope: str
  distribution: str
  normalization: str
  iterations: int
  schedule: str
  ablation: str
  at_step: int
  samples_per_class: int
  synflow_dtype: str
  grasp_params: str
  count_rule: str
  synflow_abs_batch_stats: bool
  obd_probes: int
  structure: Structure


def prune_settings_from_config(config: ml_collections.ConfigDict,
                               exp: Experiment) -> PruneSettings:
  """Validates `config.prune` (one-line ConfigErrors listing valid values)."""
  p = config.prune
  pruning.check_method(p.method, exp.model, config.model.name)
  if p.compression:
    density = 10.0 ** (-validators.positive_number(p.compression, "prune.compression"))
  else:
    density = masks_lib.check_density(p.density, "prune.density")
  validators.integer(p.iterations, "prune.iterations", minimum=0)
  at_step = exp.duration(p.at_step, "prune.at_step")
  if at_step >= exp.total_steps:
    raise ConfigError(f"prune.at_step={p.at_step!r} ({at_step} steps) is not before the end "
                      f"of training ({exp.total_steps} steps)")
  validators.positive_int(p.samples_per_class, "prune.samples_per_class")
  structure = parse_structure(p.structure, "prune.structure")
  check_shapes(structure, exp.params_shape, exp.prunable, "prune.structure")
  if density > structure.max_density + 1e-12:
    raise ConfigError(f"prune.structure {structure} keeps at most {structure.max_density:g} of "
                      f"the weights; prune.density {density:g} is above it")
  return PruneSettings(
      method=p.method, density=density, structure=structure,
      scope=validators.choice(p.scope, selection.SCOPES, "prune.scope"),
      distribution=validators.choice(p.distribution, distributions.DISTRIBUTIONS,
                                     "prune.distribution"),
      normalization=validators.choice(p.normalization, selection.NORMALIZATIONS,
                                      "prune.normalization"),
      iterations=p.iterations or pruning.default_iterations(p.method),
      schedule=validators.choice(p.schedule, schedules.SCHEDULES, "prune.schedule"),
      ablation=ablations.ABLATIONS.get(p.ablation).name,
      at_step=at_step, samples_per_class=p.samples_per_class,
      synflow_dtype=backend.synflow_dtype(p.synflow_dtype),
      grasp_params=validators.choice(p.grasp_params, GRASP_PARAMS, "prune.grasp_params"),
      count_rule=validators.choice(p.count_rule, pruning.COUNT_RULES, "prune.count_rule"),
      synflow_abs_batch_stats=validators.boolean(p.synflow_abs_batch_stats,
                                                 "prune.synflow_abs_batch_stats"),
      obd_probes=validators.positive_int(p.obd_probes, "prune.obd_probes"))
