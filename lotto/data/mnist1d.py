"""MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package and cached.

The package's `get_dataset()` downloads; lotto only ever calls its generator
`make_dataset` with the published arguments (4,000 train / 1,000 test
sequences of length 40).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from lotto.core.errors import ConfigError


MNIST1D_ARGS = dict(num_samples=5000, train_split=0.8, template_len=12, padding=[36, 60],
                    scale_coeff=0.4, max_translation=48, corr_noise_scale=0.25,
                    iid_noise_scale=2e-2, shear_scale=0.75, shuffle_seq=False,
                    final_seq_length=40, seed=42)


def default_cache_dir() -> str:
  return os.environ.get("LOTTO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "lotto"))


def load_mnist1d(cache_dir: str | None = None, **overrides) -> dict:
  """Generates MNIST-1D offline with the mnist1d package, cached on disk.

  The cache file name is a hash of the generator arguments, so changing any
  argument regenerates. mnist1d's download path is never used.

  Returns:
    dict with x, y, x_test, y_test (float32 / int32).
  """
  args = dict(MNIST1D_ARGS, **overrides)
  digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"mnist1d_{digest}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as stored:
        return {k: stored[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
      # A damaged cache is regenerated (the generator is deterministic), not trusted.
      print(f"damaged MNIST-1D cache {path} ({type(error).__name__}): regenerating it",
            flush=True)
  from mnist1d.data import make_dataset  # pylint: disable=import-outside-toplevel
  from mnist1d.utils import ObjectView  # pylint: disable=import-outside-toplevel
  raw = make_dataset(ObjectView(dict(args)))
  arrays = dict(x=raw["x"].astype(np.float32), y=raw["y"].astype(np.int32),
                x_test=raw["x_test"].astype(np.float32), y_test=raw["y_test"].astype(np.int32))
  try:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
  except OSError as error:
    raise ConfigError(f"data.cache_dir {cache_dir} cannot hold the MNIST-1D cache: "
                      f"{error.strerror or error}; set data.cache_dir (or $LOTTO_CACHE) to a "
                      "writable directory") from None
  return arrays
