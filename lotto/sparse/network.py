"""A whole masked MLP as a compressed inference function, one kernel per layer.

`compress_mlp(params, masks)` takes the params and masks pytrees of lotto's
MLP models (`lotto.models.mlp.MLP`: "mlp", "lenet300") and returns a
`CompressedMLP`, a pytree whose call computes what the masked dense model
computes: the input flattened to (batch, features), then for each hidden
layer relu(x @ (W * M) + b), and the output layer x @ (W * M) + b (logits, no
activation). Biases are kept dense (times their mask, all-True unless a run
pruned them).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.structure import Structure, parse_structure
from lotto.core.types import Masks, Params
from lotto.sparse import kernels
from lotto.sparse.condensed_kernel import from_condensed
from lotto.sparse.layer import sparse_layer, static

SUPPORTED = ("Dense layers named hidden_<i> and output, each with a 2-D kernel and a bias: "
             "lotto's MLP models (mlp, lenet300)")
_HIDDEN = re.compile(r"^hidden_(\d+)$")


def mlp_layer_names(params: Params) -> list[str]:
  """The layers of an MLP params tree in forward order (hidden_0, hidden_1, ..., output).

  Raises:
    ConfigError: a layer or leaf that lotto's MLP does not have (a conv, a norm), naming
      what is supported.
  """
  names = list(params) if isinstance(params, Mapping) else []
  hidden = sorted((int(m.group(1)), n) for n in names if (m := _HIDDEN.match(n)))
  others = [n for n in names if not _HIDDEN.match(n) and n != "output"]
  if not names or others or "output" not in names:
    raise ConfigError(f"compressed execution supports {SUPPORTED}; this model has layers "
                      f"{names or type(params).__name__}")
  ordered = [n for _, n in hidden] + ["output"]
  for name in ordered:
    layer = params[name]
    if (not isinstance(layer, Mapping) or set(layer) != {"kernel", "bias"} or
        np.ndim(layer["kernel"]) != 2):
      shapes = ({k: tuple(np.shape(v)) for k, v in layer.items()}
                if isinstance(layer, Mapping) else type(layer).__name__)
      raise ConfigError(f"compressed execution supports {SUPPORTED}; layer {name} holds "
                        f"{shapes}")
  return ordered


@sparse_layer
class CompressedMLP:
  """A masked MLP in compressed layers; call it on inputs to get logits.

  Attributes:
    layers: one compressed layer per Dense layer (`lotto.sparse.kernels`).
    biases: each layer's bias (times its mask).
    names: the layers' names (hidden_0, ..., output).
    activations: "relu" for hidden layers, "none" for the output layer.
  """
  layers: tuple[Any, ...]
  biases: tuple[jax.Array, ...]
  names: tuple[str, ...] = static()
  activations: tuple[str, ...] = static()

  @property
  def kernels(self) -> dict[str, str]:
    """Each layer's kernel name."""
    return {n: kernels.kernel_of(l).name for n, l in zip(self.names, self.layers)}

  @property
  def in_features(self) -> int:
    """Features per example the model takes (the first layer's inputs)."""
    return self.layers[0].in_features

  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits for inputs x of shape (batch, ...) with in_features values per example.

    Raises:
      ConfigError: the inputs hold another number of features.
    """
    x = jnp.asarray(x)
    features = int(np.prod(x.shape[1:])) if x.ndim > 1 else -1
    if features != self.in_features:
      raise ConfigError(f"the compressed model takes inputs of shape (batch, ...) with "
                        f"{self.in_features} features each; got shape {tuple(x.shape)}")
    return predict(self, x)


@jax.jit
def predict(model: CompressedMLP, x: jax.Array) -> jax.Array:
  """The logits of `model` for inputs x (batch, ...): flattened, then layer by layer."""
  x = x.reshape(x.shape[0], -1)
  for layer, bias, activation in zip(model.layers, model.biases, model.activations):
    x = kernels.matmul(layer, x) + bias
    if activation == "relu":
      x = jax.nn.relu(x)
  return x


def compress_mlp(params: Params, masks: Masks, kernel: str | Mapping[str, str] = kernels.AUTO,
                 structure: Structure | str | None = None) -> CompressedMLP:
  """The compressed inference function of a masked MLP.

  Args:
    params: the MLP's Flax params ({"hidden_0": {"kernel", "bias"}, ..., "output": ...}).
    masks: bool masks with the params' treedef.
    kernel: one of `kernels.KERNEL_NAMES` for every layer, or a map from layer name to
      kernel (layers not named use "auto").
    structure: the structure the masks were selected under ("2:4", "block:4x4", a
      `core.structure.Structure`, or None): fixes N:M groups and block tiles.

  Returns:
    A `CompressedMLP` equal to the masked dense model's forward.

  Raises:
    ConfigError: not an MLP (naming what is supported), masks of another shape, an
      unknown kernel (listing the valid ones), a kernel map naming unknown layers, or a
      mask without the chosen kernel's structure.
  """
  names = mlp_layer_names(params)
  if isinstance(structure, str):
    structure = parse_structure(structure)
  if isinstance(kernel, Mapping):
    unknown = sorted(set(kernel) - set(names))
    if unknown:
      raise ConfigError(f"kernel map names layers {unknown}; the model's layers are {names}")
    choice = {n: kernel.get(n, kernels.AUTO) for n in names}
  else:
    choice = {n: kernel for n in names}
  layers, biases = [], []
  for name in names:
    try:
      weights, mask = params[name]["kernel"], masks[name]["kernel"]
      bias = np.asarray(params[name]["bias"])
      bias = np.where(np.asarray(masks[name]["bias"]), bias, np.zeros_like(bias))
    except (KeyError, TypeError):
      raise ConfigError(f"masks lack layer {name}'s kernel or bias: masks must have the "
                        "params' treedef") from None
    try:
      layers.append(kernels.compress_layer(weights, mask, choice[name], structure))
    except ConfigError as error:
      raise ConfigError(f"layer {name}: {error}") from None
    biases.append(jnp.asarray(bias))
  return CompressedMLP(tuple(layers), tuple(biases), tuple(names),
                       tuple(["relu"] * (len(names) - 1) + ["none"]))


def is_condensed(params: Params) -> bool:
  """Whether `params` are a condensed training state's (a layer holding "values")."""
  return isinstance(params, Mapping) and any(
      isinstance(layer, Mapping) and "values" in layer for layer in params.values())


def condensed_mlp(params: Params, wiring: Mapping[str, Any]) -> CompressedMLP:
  """The compressed inference function of a condensed MLP training state.

  Its condensed layers ({"values", "bias"} params, {"indices", "fanout", ...}
  wiring: `lotto.train.condensed_state`) are written as they are, kernel
  "condensed"; its dense layers ({"kernel", "bias"}, wiring {}) as "dense".

  Raises:
    ConfigError: layers other than lotto's MLP's, or a layer without its wiring.
  """
  names = mlp_layer_names({n: {"kernel": np.zeros((1, 1)), "bias": None} for n in params})
  layers, biases = [], []
  for name in names:
    layer, structure = params[name], wiring.get(name)
    if "values" in layer:
      if not isinstance(structure, Mapping) or "indices" not in structure:
        raise ConfigError(f"condensed layer {name} has no indices in the checkpoint's masks")
      fan_in = int(np.shape(structure["fanout"])[0])
      layers.append(from_condensed(layer["values"], structure["indices"], fan_in))
    else:
      kernel = np.asarray(layer["kernel"])
      layers.append(kernels.compress_layer(kernel, np.ones(kernel.shape, bool), "dense"))
    biases.append(jnp.asarray(layer["bias"]))
  return CompressedMLP(tuple(layers), tuple(biases), tuple(names),
                       tuple(["relu"] * (len(names) - 1) + ["none"]))
