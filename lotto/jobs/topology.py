"""The `config.topology` section: a chosen sparse wiring (or its random control) as the
start mask of a run.

The generator's adjacency matrices are laid on the model's Dense kernels in
order (hidden_0, hidden_1, ...); kernels beyond them (the output layer, say)
stay dense. Shapes must match, except that a RadiX-Net's input layer with
fewer than N extra rows loses its first extra rows (784 of 800 for
LeNet-300-100, as the fitted rule does); the error names the model's widths.
"""
from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.rng import purpose_key
from lotto.core.types import Masks
from lotto.jobs import validators
from lotto.topologies import expander, fitted_radixnet, radixnet, random_like

TOPOLOGIES = ("none", "radixnet", "expander")
CONTROLS = ("none", "random")


@dataclasses.dataclass(frozen=True)
class TopologySettings:
  """The validated `config.topology` section.

  Attributes:
    name: "none" (no wiring), "radixnet" or "expander".
    control: "none", or "random": a random mask with the wiring's per-layer counts.
    radices, blocks: a RadiX-Net's radix lists and block counts (() = fitted to the
      model's hidden widths).
    degree, degrees: an expander's degree (one for all layers, or one per layer).
  """
  name: str = "none"
  control: str = "none"
  radices: tuple[tuple[int, ...], ...] = ()
  blocks: tuple[int, ...] = ()
  degree: int = 0
  degrees: tuple[int, ...] = ()


def topology_settings(config: ml_collections.ConfigDict) -> TopologySettings:
  """Validates `config.topology` (names and the expander's degree; shapes are checked
  against the model when the masks are built).

  Raises:
    ConfigError: an unknown name or control, or a bad degree.
  """
  spec = config.topology
  name = validators.choice(spec.name, TOPOLOGIES, "topology.name")
  control = validators.choice(spec.control, CONTROLS, "topology.control")
  degrees = tuple(spec.degrees) if spec.degrees else ()
  if name == "expander" and not degrees and (
      isinstance(spec.degree, bool) or not isinstance(spec.degree, int) or spec.degree < 1):
    raise ConfigError(f"topology.degree must be a positive integer (or topology.degrees one "
                      f"per layer, e.g. (78, 30)); got {spec.degree!r}")
  return TopologySettings(name=name, control=control,
                          radices=tuple(tuple(r) for r in spec.radices),
                          blocks=tuple(spec.blocks), degree=spec.degree, degrees=degrees)


def topology_masks(spec: TopologySettings, params_shape, prunable, seed: int) -> Masks | None:
  """The start mask `spec` asks for, or None for `name = "none"`.

  Raises:
    ConfigError: a bad radix or degree spec, or a wiring whose layer shapes do
      not match the model's Dense kernels.
  """
  if spec.name == "none":
    return None
  names = masks_lib.leaf_names(params_shape)
  leaves = jax.tree.leaves(params_shape)
  kernels = sorted(((i, n) for i, (n, leaf) in enumerate(zip(names, leaves))
                    if len(leaf.shape) == 2), key=lambda item: _layer_order(item[1]))
  if not kernels:
    raise ConfigError(f"topology {spec.name} needs Dense layers; the model has none")
  widths = [leaves[kernels[0][0]].shape[0]] + [leaves[i].shape[1] for i, _ in kernels]
  if spec.name == "radixnet" and not spec.radices:  # fitted to the hidden layers
    layers = fitted_radixnet(widths[:-1])
  elif spec.name == "radixnet":
    layers = radixnet([list(r) for r in spec.radices], list(spec.blocks))
    crop = layers[0].shape[0] - widths[0]
    if 0 < crop < layers[0].shape[0] // max(1, list(spec.blocks)[0]):  # less than one N
      layers[0] = layers[0][crop:]  # as fit_radixnet: the first extra input rows dropped
  else:
    degree = list(spec.degrees) if spec.degrees else spec.degree
    layers = expander(widths[:-1], degree, purpose_key(seed, "topology"))  # output stays dense
  if len(layers) > len(kernels):
    raise ConfigError(f"topology {spec.name} has {len(layers)} layers but the model has "
                      f"{len(kernels)} Dense layers (widths {widths})")
  for (index, name), layer in zip(kernels, layers):
    if tuple(layer.shape) != tuple(leaves[index].shape):
      raise ConfigError(f"topology {spec.name} layer {name} is {layer.shape[0]}x{layer.shape[1]} "
                        f"but the model's is {leaves[index].shape[0]}x{leaves[index].shape[1]} "
                        f"(model widths {widths}; radixnet widths are blocks x N)")
  out = [np.ones(leaf.shape, bool) for leaf in leaves]
  for (index, _), layer in zip(kernels, layers):
    out[index] = layer
  masks = jax.tree.unflatten(jax.tree.structure(params_shape), [jnp.asarray(m) for m in out])
  if spec.control == "random":
    masks = random_like(masks, prunable, purpose_key(seed, "topology_control"))
  return masks



def _layer_order(name: str):
  """hidden_2 before hidden_10, the output layer last (leaf order is alphabetical)."""
  parts = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
  return (name.startswith("output"), parts)
