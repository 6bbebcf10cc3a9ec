"""The kernel registry, and the per-layer choice that kernel "auto" makes.

Every kernel is a pair: `compress(weights, mask, structure) -> layer` (numpy,
once, outside jit) and `matmul(layer, x) -> x @ (W * M)` (jittable, static
shapes). `KERNELS.get(name)` names the valid kernels when `name` is unknown.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.structure import Structure
from lotto.sparse import bcoo, block_sparse, condensed_kernel, dense, gather, nm, radix
from lotto.sparse.layer import check_kernel

AUTO = "auto"
# "auto" keeps a layer dense above this density: values plus two int32 indices per
# survivor take more room than the dense kernel above 1/3; on CPU the sparse kernels
# lose time well below that (their crossover is a benchmark's to measure, not this rule's).
AUTO_DENSE_ABOVE = 0.25


@dataclasses.dataclass(frozen=True)
class Kernel:
  """One way to run a masked Dense layer.

  Attributes:
    name: the kernel's name.
    compress: (weights, mask, structure) -> layer.
    matmul: (layer, x) -> x @ (W * M).
    layer_type: the layer class `compress` returns (to reload it).
  """
  name: str
  compress: Callable[..., Any]
  matmul: Callable[[Any, jax.Array], jax.Array]
  layer_type: type


KERNELS: Registry[Kernel] = Registry("sparse kernel")
for _kernel in (Kernel("dense", dense.compress_dense, dense.dense_matmul, dense.DenseLayer),
                Kernel("bcoo", bcoo.compress_bcoo, bcoo.bcoo_matmul, bcoo.BcooLayer),
                Kernel("gather", gather.compress_gather, gather.gather_matmul,
                       gather.GatherLayer),
                Kernel("block", block_sparse.compress_block, block_sparse.block_matmul,
                       block_sparse.BlockLayer),
                Kernel("nm", nm.compress_nm, nm.nm_matmul, nm.NmLayer),
                Kernel("radix", radix.compress_radix, radix.radix_matmul, radix.RadixLayer),
                Kernel("condensed", condensed_kernel.compress_condensed,
                       condensed_kernel.condensed_matmul, condensed_kernel.CondensedLayer)):
  KERNELS.register(_kernel.name, _kernel)

KERNEL_NAMES = (AUTO, *KERNELS.names())


def kernel_of(layer: Any) -> Kernel:
  """The kernel whose `compress` made `layer`."""
  for name in KERNELS:
    if isinstance(layer, KERNELS.get(name).layer_type):
      return KERNELS.get(name)
  raise TypeError(f"{type(layer).__name__} is not a compressed layer")


def choose_kernel(weights, mask, structure: Structure | None = None) -> str:
  """The kernel "auto" uses for one layer.

  In order: an unpruned mask -> "dense"; the structure the run declared, where the
  mask fits it (n:m -> "nm", block -> "block"); a mask denser than
  `AUTO_DENSE_ABOVE` -> "dense"; a RadiX-Net (block-circulant) mask -> "radix"; a
  mask constant on tiles of 4 or more weights -> "block"; otherwise "gather".
  """
  _, mask = check_kernel(weights, mask)
  fan_in, fan_out = mask.shape
  if mask.all():
    return "dense"
  if (structure is not None and structure.kind == "n:m" and fan_in % structure.m == 0 and
      nm.group_counts(mask, structure.m).max() <= structure.n):
    return "nm"
  if (structure is not None and structure.kind == "block" and fan_in % structure.bh == 0 and
      fan_out % structure.bw == 0):
    return "block"
  if mask.mean() > AUTO_DENSE_ABOVE:
    return "dense"
  if radix.detect_radix(mask) is not None:
    return "radix"
  bh, bw = block_sparse.detect_block(mask)
  return "block" if bh * bw >= 4 else "gather"


def compress_layer(weights, mask, kernel: str = AUTO,
                   structure: Structure | None = None) -> Any:
  """One masked (in, out) kernel in the layout of `kernel` ("auto": `choose_kernel`).

  Raises:
    ConfigError: an unknown kernel (listing the valid ones), or a mask that does not
      have the kernel's structure.
  """
  if kernel not in KERNEL_NAMES:
    raise ConfigError(f"unknown sparse kernel {kernel!r}; valid choices: "
                      f"{', '.join(KERNEL_NAMES)}")
  if kernel == AUTO:
    kernel = choose_kernel(weights, mask, structure)
  return KERNELS.get(kernel).compress(np.asarray(weights), np.asarray(mask), structure)


def matmul(layer: Any, x: jax.Array) -> jax.Array:
  """x @ (W * M) by the layer's own kernel."""
  return kernel_of(layer).matmul(layer, x)
