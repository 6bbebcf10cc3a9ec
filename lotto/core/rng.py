"""Named PRNG streams derived from the run seed.

Every stochastic choice folds a *named purpose* into the seed's key, so an
ablation can change one factor (say, the init) and hold the others (the data
order) fixed.
"""
from __future__ import annotations

import zlib

import jax


def purpose_key(seed: int | jax.Array, purpose: str) -> jax.Array:
  """The key for `purpose` ("init", "data", "dropout", ...) under `seed`.

  Args:
    seed: the run seed, or an existing PRNG key to derive from.
    purpose: a name; different names give independent streams.
  """
  key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
  return jax.random.fold_in(key, zlib.crc32(purpose.encode()) & 0x7FFFFFFF)
