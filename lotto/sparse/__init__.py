"""Sparse execution: masked layers in compressed layouts whose cost scales with the
surviving connections, whole MLPs as compressed inference functions, and their files.

Kernels (`KERNELS`; each `compress_*(weights, mask, structure)` and `*_matmul(layer, x)`):
  dense   the masked dense matmul (the reference; "auto" keeps dense layers so)
  bcoo    unstructured: `jax.experimental.sparse` BCOO, static nse = nnz
  gather  unstructured: gather inputs by row, segment-sum by output column
  block   block masks: kept dense tiles, batched matmul, scatter-add
  nm      N:M masks: n values and indices per group of m inputs (gather)
  radix   RadiX-Nets: sums of cyclically shifted inputs, read off the mask
  condensed  constant fan-in masks: k values and inputs per output unit (gathers); a
          condensed training run's layers are exported as they are (`condensed_mlp`)
`condensed` / `condensed_ops`: constant fan-in layers as per-unit indices and values, with a
gather-only custom-VJP matmul for training; `condensed_train`: an MLP train step on them.
`graph_challenge`: the GraphChallenge sparse-DNN inference (Kepner et al. 2019) on RadiX-Net
layers, with its dense reference and synthetic inputs.
Imports only `lotto.core` (README.md, "Architecture"); `lotto.jobs.export` reads finished runs.
"""
from lotto.sparse.bcoo import BcooLayer, bcoo_matmul, compress_bcoo
from lotto.sparse.block_sparse import BlockLayer, block_matmul, compress_block, detect_block
from lotto.sparse.condensed import (Condensed, condense, expand, fanout_slots, fanout_table,
                                    max_fan_out)
from lotto.sparse.condensed_ops import condensed_dense, condensed_dense_t
from lotto.sparse.dense import DenseLayer, compress_dense, dense_matmul
from lotto.sparse.serialize import (COMPRESSED_FILE, load_compressed, read_header,
                                 save_compressed)
from lotto.sparse.gather import GatherLayer, compress_gather, gather_matmul
from lotto.sparse.kernels import (AUTO, KERNEL_NAMES, KERNELS, choose_kernel, compress_layer,
                                  matmul)
from lotto.sparse.network import CompressedMLP, compress_mlp, condensed_mlp, is_condensed, predict
from lotto.sparse.nm import NmLayer, compress_nm, detect_nm, nm_matmul
from lotto.sparse.radix import (RadixLayer, RadixStructure, compress_radix, detect_radix,
                                radix_matmul)

__all__ = [
    "AUTO", "BcooLayer", "BlockLayer", "COMPRESSED_FILE", "CompressedMLP", "Condensed",
    "DenseLayer", "GatherLayer", "KERNELS", "KERNEL_NAMES", "NmLayer", "RadixLayer",
    "RadixStructure", "bcoo_matmul", "block_matmul", "choose_kernel", "compress_bcoo",
    "compress_block", "compress_dense", "compress_gather", "compress_layer", "compress_mlp",
    "condensed_mlp", "is_condensed",
    "compress_nm", "compress_radix", "condense", "condensed_dense", "condensed_dense_t", "dense_matmul",
    "detect_block", "detect_nm", "detect_radix", "expand", "fanout_slots", "fanout_table",
    "gather_matmul", "load_compressed", "matmul", "max_fan_out", "nm_matmul", "predict",
    "radix_matmul", "read_header", "save_compressed",
]
