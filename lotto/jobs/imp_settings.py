"""The validated `config.imp` section of an IMP run (`jobs.imp`, `jobs.stability`)."""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import ml_collections

from lotto.core import masks as masks_lib
from lotto.core import selection
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure, check_shapes, parse_structure
from lotto.core.types import Prunable
from lotto.jobs import branches as branches_lib
from lotto.jobs import validators
from lotto.jobs.experiment import Experiment
from lotto.models import default_masks_include

Target = float | Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class ImpSettings:
  """The validated `config.imp` section.

  Attributes:
    levels: pruning levels after the dense level 0.
    fractions: per prunable layer, the fraction of survivors pruned per level
      (all equal to `imp.fraction` unless `imp.layer_fractions` says otherwise).
    fraction: the global per-level fraction.
    scope: "global" | "layerwise".
    rewind_step: k, in steps.
    branches: branch names (validated against `branches.BRANCHES`).
    branch_levels: the levels branches run on.
    start_point, mat_from: options of the "start" and
      "magnitude_after_training" branches.
    prunable: the layers IMP prunes (`masks.*` minus `imp.exclude`).
    open_lth_compat: prune with open_lth's counts (ceil(f * survivors) + 1 per
      level, recursively) instead of round((1 - f)**L * N).
    structure: N:M groups or whole tiles at every level (`core.structure`).
  """
  levels: int
  fraction: float
  fractions: dict[str, float]
  scope: str
  rewind_step: int
  branches: tuple[str, ...]
  branch_levels: tuple[int, ...]
  start_point: str
  mat_from: str
  prunable: Prunable
  open_lth_compat: bool = False
  structure: Structure = Structure()

  def open_lth_fraction(self) -> float | dict[str, float] | None:
    """The per-level fraction for open_lth's counts (None unless `open_lth_compat`)."""
    if not self.open_lth_compat:
      return None
    return self.fraction if self.scope == "global" else dict(self.fractions)

  def target(self, level: int) -> Target:
    """The density after `level` levels: (1 - f)**L, global or per layer."""
    if self.scope == "global":
      return (1.0 - self.fraction) ** level
    return {name: (1.0 - f) ** level for name, f in self.fractions.items()}


def imp_settings_from_config(config: ml_collections.ConfigDict, exp: Experiment) -> ImpSettings:
  """Validates `config.imp` (one-line ConfigErrors naming the field and valid values)."""
  c = config.imp
  validators.integer(c.levels, "imp.levels", minimum=0)
  fraction = validators.open_fraction(c.fraction, "imp.fraction")
  selection.check_options(c.scope)
  rewind_step = exp.duration(c.rewind, "imp.rewind")
  if rewind_step >= exp.total_steps:
    raise ConfigError(f"imp.rewind={c.rewind!r} ({rewind_step} steps) is not before the end of "
                      f"training (train.duration={config.train.duration!r}, "
                      f"{exp.total_steps} steps)")
  exclude = "|".join(f"(?:{p})" for p in (config.masks.exclude, c.exclude) if p)
  validators.regex(c.exclude, "imp.exclude")
  prunable = masks_lib.select_prunable(
      exp.params_shape, config.masks.include or default_masks_include(config.model.name), exclude)
  names = [n for n, f in zip(masks_lib.leaf_names(prunable), jax.tree.leaves(prunable)) if f]
  if not names:
    raise ConfigError("imp.exclude and masks.* leave no layer to prune")
  fractions = {n: fraction for n in names}
  if c.layer_fractions:
    if c.scope != "layerwise":
      raise ConfigError("imp.layer_fractions needs imp.scope='layerwise' "
                        f"(got {c.scope!r})")
    rules = []
    for rule in c.layer_fractions:
      if not isinstance(rule, (tuple, list)) or len(rule) != 2:
        raise ConfigError(f"imp.layer_fractions entries must be (regex, fraction) pairs; "
                          f"got {rule!r}")
      rules.append((validators.regex(rule[0], "imp.layer_fractions"),
                    validators.open_fraction(rule[1], f"imp.layer_fractions fraction for {rule[0]!r}")))
    for name in names:
      for pattern, value in rules:
        if pattern.search(name):
          fractions[name] = value
          break
  for name in c.branches:
    branches_lib.BRANCHES.get(name)
  if len(set(c.branches)) != len(c.branches):  # (validators.distinct words it otherwise)
    raise ConfigError(f"imp.branches lists a branch twice: {tuple(c.branches)!r}")
  levels = tuple(c.branch_levels) or tuple(range(1, c.levels + 1))
  bad = [l for l in levels if not isinstance(l, int) or not 1 <= l <= c.levels]
  if bad:
    raise ConfigError(f"imp.branch_levels entries must lie in 1..{c.levels} (imp.levels); "
                      f"got {bad[0]!r}")
  validators.choice(c.start_point, branches_lib.START_POINTS, "imp.start_point")
  validators.choice(c.mat_from, branches_lib.MAT_FROM, "imp.mat_from")
  structure = parse_structure(c.structure, "imp.structure")
  check_shapes(structure, exp.params_shape, prunable, "imp.structure")
  if structure.kind != "unstructured" and c.open_lth_compat:
    raise ConfigError("imp.open_lth_compat counts unstructured weights; use it with "
                      "imp.structure='unstructured'")
  first = max(1 - f for f in fractions.values())
  if first > structure.max_density + 1e-12:
    raise ConfigError(f"imp.structure {structure} keeps at most {structure.max_density:g} of "
                      f"each layer, but level 1 asks for density {first:g}: use "
                      f"imp.fraction >= {1 - structure.max_density:g}")
  return ImpSettings(levels=c.levels, fraction=fraction, fractions=fractions, scope=c.scope,
                     rewind_step=rewind_step, branches=tuple(c.branches),
                     branch_levels=tuple(sorted(set(levels))), start_point=c.start_point,
                     mat_from=c.mat_from, prunable=prunable,
                     open_lth_compat=validators.boolean(c.open_lth_compat, "imp.open_lth_compat"),
                     structure=structure)
