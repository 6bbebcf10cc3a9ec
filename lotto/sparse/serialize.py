"""The compressed model on disk: one .npz of the layers' arrays plus a small JSON header.

`save_compressed(path, model)` writes `CompressedMLP` (`lotto.sparse.network`)
as `layer_<i>/<field>` arrays (each kernel's values and indices, and
`layer_<i>/bias`) and a `header` entry: UTF-8 JSON bytes naming the format,
each layer's name, kernel, activation and static fields (shapes, counts,
shifts), plus whatever the caller adds (the run it came from). Nothing is
pickled. `load_compressed(path)` rebuilds the model, which is the predict
function: `load_compressed(path)(x)` gives the logits. Saving writes to an open
binary file (a file on disk is written through `runtime.runs.write_bytes`:
atomically, on the main process); loading takes a local path or an open file
(as `core.masks.save` and `load` do).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from typing import IO, Any

import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.sparse import kernels
from lotto.sparse.layer import array_fields, rebuild, static_fields
from lotto.sparse.network import CompressedMLP

COMPRESSED_FILE = "compressed.npz"
FORMAT = "lotto.sparse.mlp"
VERSION = 1
_HEADER = "header"


def save_compressed(file: IO[bytes], model: CompressedMLP,
                    info: dict[str, Any] | None = None) -> int:
  """Writes `model` as .npz bytes to an open binary file (a buffer, a bucket's file).

  Args:
    file: an open binary file.
    model: the compressed model.
    info: JSON data stored in the header under "info" (where the model came from).

  Returns:
    The bytes written: the size of the file on disk.
  """
  arrays: dict[str, np.ndarray] = {}
  layers = []
  for index, (name, layer, bias, activation) in enumerate(
      zip(model.names, model.layers, model.biases, model.activations)):
    for field, value in array_fields(layer).items():
      arrays[f"layer_{index}/{field}"] = value
    arrays[f"layer_{index}/bias"] = np.asarray(bias)
    layers.append({"name": name, "kernel": kernels.kernel_of(layer).name,
                   "activation": activation, "static": static_fields(layer)})
  header = {"format": FORMAT, "version": VERSION, "layers": layers, "info": info or {}}
  arrays[_HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return file.write(buffer.getvalue())


def read_header(path: str | os.PathLike | IO[bytes]) -> dict[str, Any]:
  """The JSON header of a compressed model file.

  Raises:
    ConfigError: a missing file, or one that is not a lotto compressed model.
  """
  return _read(path)[0]


def load_compressed(path: str | os.PathLike | IO[bytes]) -> CompressedMLP:
  """The model saved by `save_compressed`; call it on inputs for logits.

  Raises:
    ConfigError: a missing, damaged or foreign file, or one of a newer format version.
  """
  header, arrays = _read(path)
  layers, biases = [], []
  for index, entry in enumerate(header["layers"]):
    prefix = f"layer_{index}/"
    fields = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    if "bias" not in fields:
      raise ConfigError(f"{path} is damaged: layer {entry['name']} has no bias")
    biases.append(jnp.asarray(fields.pop("bias")))
    layer_type = kernels.KERNELS.get(entry["kernel"]).layer_type
    layers.append(rebuild(layer_type, entry["static"],
                          {k: jnp.asarray(v) for k, v in fields.items()}))
  return CompressedMLP(tuple(layers), tuple(biases),
                       tuple(e["name"] for e in header["layers"]),
                       tuple(e["activation"] for e in header["layers"]))


def _read(path: str | os.PathLike | IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
    raise ConfigError(f"no compressed model at {path}")
  try:
    with np.load(path, allow_pickle=False) as stored:
      arrays = {name: stored[name] for name in stored.files}
    header = json.loads(arrays.pop(_HEADER).tobytes().decode())
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
    raise ConfigError(f"{path} is not a readable compressed model ({type(error).__name__})"
                      ) from None
  if not isinstance(header, dict) or header.get("format") != FORMAT:
    raise ConfigError(f"{path} is not a lotto compressed model (format "
                      f"{header.get('format') if isinstance(header, dict) else None!r})")
  if header.get("version", 0) > VERSION:
    raise ConfigError(f"{path} has format version {header['version']}; this lotto reads "
                      f"up to {VERSION}")
  return header, arrays
