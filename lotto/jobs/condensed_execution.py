"""`config.sparse.execution`: masked (the default) or condensed, validated at the edge.

Condensed execution (`lotto.train.condensed_state`) trains an MLP's constant
fan-in layers without their dense weight matrices. This module checks that a
sparse_train config can run that way and builds what the Trainer needs: the
layout, the condensed mask update (`dynamic.condensed_regrow`) and the
replicas' condensed start states. Every refusal is one line (ConfigError,
exit 2) raised before anything is written.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import ml_collections

from lotto.core.errors import ConfigError
from lotto.core.masks import leaf_names
from lotto.core.types import PyTree
from lotto.dynamic.condensed_regrow import CONDENSED_GROWTH, CondensedDropAndGrow
from lotto.dynamic.methods import SparseSettings
from lotto.jobs import validators
from lotto.jobs.experiment import Experiment
from lotto.models.mlp import MLP
from lotto.train.condensed_state import EXECUTIONS, CondensedLayout, align, condense_state
from lotto.train.condensed_step import initial_mask_state
from lotto.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class Condensed:
  """A condensed run's layout and mask update (None: a fixed mask)."""
  layout: CondensedLayout
  update: CondensedDropAndGrow | None


def _kind(path: str, shape: tuple[int, ...]) -> str:
  if len(shape) == 4:
    return f"Conv layer {path!r}"
  if len(shape) == 3:
    return f"Conv1D layer {path!r}"
  return f"layer {path!r}"


def layout_of(model, params_shape: PyTree, prunable: PyTree, model_name: str,
              dynamic: bool = False) -> CondensedLayout:
  """The layout of `model`'s condensed execution.

  Raises:
    ConfigError: (one line) the model is not an MLP of Dense layers (naming its
      first other layer, e.g. a Conv) or a bias is pruned.
  """
  names = leaf_names(params_shape)
  shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(params_shape)]
  if not isinstance(model, MLP):
    other = [(n, s) for n, s in zip(names, shapes) if len(s) != 2 and len(s) > 1]
    what = _kind(*other[0]) if other else f"{type(model).__name__} layers"
    raise ConfigError(f"sparse.execution='condensed' runs MLPs of Dense layers only; model "
                      f"{model_name!r} has a {what}: use sparse.execution='masked'")
  layers = tuple([f"hidden_{i}" for i in range(len(model.widths))] + ["output"])
  flags = dict(zip(names, jax.tree.leaves(prunable)))
  for layer in layers:
    if flags.get(f"{layer}/bias"):
      raise ConfigError(f"sparse.execution='condensed' keeps biases dense; {layer}/bias is "
                        "pruned (masks.include): prune kernels only")
  kernels = [params_shape[layer]["kernel"].shape for layer in layers]
  return CondensedLayout(layers, tuple(bool(flags[f"{layer}/kernel"]) for layer in layers),
                         tuple(int(s[0]) for s in kernels), tuple(int(s[1]) for s in kernels),
                         dynamic)


def condensed_setup(config: ml_collections.ConfigDict, exp: Experiment,
                    settings: SparseSettings) -> Condensed | None:
  """None for `sparse.execution="masked"`, else the condensed layout and mask update.

  Raises:
    ConfigError: an unknown execution; a method with no condensed form
      (naming those that have one); an ablation threshold other than 0; a
      precision other than float32; a model that is not an MLP of Dense
      layers (naming its other layer type).
  """
  execution = validators.choice(config.sparse.get("execution", "masked"), EXECUTIONS,
                                "sparse.execution")
  if execution == "masked":
    return None
  if settings.method not in CONDENSED_GROWTH:
    raise ConfigError(f"sparse.method={settings.method!r} has no condensed form; "
                      f"sparse.execution='condensed' runs {', '.join(CONDENSED_GROWTH)}: use "
                      "one of them or sparse.execution='masked'")
  ablation = float(config.sparse.get("ablation_threshold", 0.0) or 0.0)
  if ablation != 0:
    raise ConfigError(f"sparse.ablation_threshold={ablation!r}: neuron ablation changes a "
                      "layer's fan-in, which condensed execution does not run yet; set it to 0 "
                      "or sparse.execution='masked'")
  if exp.precision != "float32":
    raise ConfigError(f"sparse.execution='condensed' computes in float32; got "
                      f"train.precision={exp.precision!r}")
  growth = CONDENSED_GROWTH[settings.method]
  update = None if growth is None else CondensedDropAndGrow(
      settings.update_every, settings.stop, settings.drop_fraction, settings.drop_schedule,
      growth, begin=settings.begin)
  layout = layout_of(exp.model, exp.params_shape, exp.prunable, config.model.name,
                     dynamic=update is not None)
  return Condensed(layout, update)


def condensed_starts(states: Sequence[TrainState], condensed: Condensed,
                     exp: Experiment) -> list[TrainState]:
  """The replicas' masked start states in condensed form, ready to stack.

  Raises:
    ConfigError: a start mask that is not constant fan-in (naming the layer
      and its fan-in range, suggesting `sparse.distribution=fanin`).
  """
  mask_state = initial_mask_state(condensed.update, condensed.layout)
  converted = [condense_state(s, condensed.layout, exp.tx).replace(mask_state=mask_state)
               for s in states]
  return align(converted, condensed.layout)
