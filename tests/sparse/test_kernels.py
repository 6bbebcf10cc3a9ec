"""Every compressed kernel equals the masked dense product x @ (W * M) (within 1e-5), on
random exact-count masks of several densities and on N:M, block and RadiX-Net masks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto import sparse
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure, nm_masks, parse_structure
from lotto.topologies import fitted_radixnet, radixnet
from lotto.topologies.radixnet import radix_layer

FAN_IN, FAN_OUT, BATCH = 64, 48, 5
matmul = jax.jit(sparse.matmul)


def _weights(shape, seed=0):
  # Kaiming scale: outputs of order 1, so 1e-5 is a float32 tolerance, not a loose one.
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * np.sqrt(
      2 / shape[0])


def _inputs(fan_in, seed=1):
  return np.random.default_rng(seed).normal(size=(BATCH, fan_in)).astype(np.float32)


def _random_mask(shape, density, seed=2):
  keep = round(density * np.prod(shape))  # exact k, as lotto's selection gives
  flat = np.zeros(np.prod(shape), bool)
  flat[np.random.default_rng(seed).permutation(flat.size)[:keep]] = True
  return flat.reshape(shape)


def _check(layer, weights, mask, x):
  expected = x @ np.where(mask, weights, 0)
  np.testing.assert_allclose(np.asarray(matmul(layer, jnp.asarray(x))), expected, atol=1e-5)


# What "auto" runs a random unstructured mask with: dense above AUTO_DENSE_ABOVE = 0.25,
# else gather (no RadiX-Net or block structure to use).
AUTO_CHOICE = {0.5: sparse.DenseLayer, 0.1: sparse.GatherLayer, 0.01: sparse.GatherLayer}


@pytest.mark.parametrize("density", [0.5, 0.1, 0.01])
@pytest.mark.parametrize("kernel", ["bcoo", "gather", "nm", "auto"])
def test_unstructured_kernels_equal_the_masked_dense_product(kernel, density):
  weights, mask = _weights((FAN_IN, FAN_OUT)), _random_mask((FAN_IN, FAN_OUT), density)
  layer = sparse.compress_layer(weights, mask, kernel)
  _check(layer, weights, mask, _inputs(FAN_IN))
  if kernel in ("bcoo", "gather"):
    assert layer.nnz == mask.sum()  # static nse = the exact survivor count
  if kernel == "auto":
    assert type(layer) is AUTO_CHOICE[density]


def _tiles(shape, tile, density, seed=5):
  """A mask constant on (tile x tile) blocks, an exact count of them kept."""
  tiles = _random_mask((shape[0] // tile, shape[1] // tile), density, seed)
  return np.repeat(np.repeat(tiles, tile, axis=0), tile, axis=1)


@pytest.mark.parametrize("mask, expected", [
    (np.ones((8, 8), bool), "dense"),
    (_random_mask((8, 8), 17 / 64), "dense"),          # 17 of 64: above 1/4
    (_random_mask((8, 8), 16 / 64), "gather"),         # exactly 1/4: not above it
    (radix_layer(8, 3, 1), "dense"),                   # RadiX shifts {0, 1, 2}: 3/8
    (radix_layer(8, 2, 1), "radix"),                   # shifts {0, 1}: 2/8
    (_tiles((16, 16), 2, 0.25), "block"),              # 16 of 64 2x2 tiles
    (_tiles((16, 16), 2, 17 / 64), "dense"),           # 17 of 64 tiles
])
def test_auto_chooses_the_kernel_by_density_then_structure(mask, expected):
  assert sparse.choose_kernel(_weights(mask.shape), mask) == expected


@pytest.mark.parametrize("density", [0.5, 0.1, 0.01])
def test_block_kernel_on_block_masks(density):
  tiles = _random_mask((FAN_IN // 4, FAN_OUT // 8), density)
  mask = np.repeat(np.repeat(tiles, 4, axis=0), 8, axis=1)
  weights, x = _weights(mask.shape), _inputs(FAN_IN)
  detected = sparse.compress_block(weights, mask)
  assert (detected.bh, detected.bw) == (4, 8) and detected.tiles.shape[0] == tiles.sum()
  _check(detected, weights, mask, x)
  given = sparse.compress_layer(weights, mask, "auto", parse_structure("block:2x4"))
  assert isinstance(given, sparse.BlockLayer) and (given.bh, given.bw) == (2, 4)
  _check(given, weights, mask, x)


def test_block_kernel_with_a_given_tile_keeps_partly_pruned_tiles():
  weights, mask = _weights((FAN_IN, FAN_OUT)), _random_mask((FAN_IN, FAN_OUT), 0.05)
  layer = sparse.compress_block(weights, mask, Structure("block", bh=4, bw=4))
  kept_tiles = mask.reshape(16, 4, 12, 4).any(axis=(1, 3)).sum()
  assert layer.tiles.shape == (kept_tiles, 4, 4)
  _check(layer, weights, mask, _inputs(FAN_IN))


def test_detect_block_on_a_literal_mask():
  mask = np.array([[1, 1, 1, 0, 0, 0],
                   [1, 1, 1, 0, 0, 0],
                   [0, 0, 0, 1, 1, 1],
                   [0, 0, 0, 1, 1, 1]], bool)
  assert sparse.detect_block(mask) == (2, 3)
  mask[0, 0] = False
  assert sparse.detect_block(mask) == (1, 1)


@pytest.mark.parametrize("n,m,density", [(2, 4, 0.5), (2, 4, 0.1), (1, 4, 0.01)])
def test_nm_kernel_on_nm_masks(n, m, density):
  weights = _weights((FAN_IN, FAN_OUT))
  scores = np.random.default_rng(3).random((FAN_IN, FAN_OUT))
  mask = np.asarray(nm_masks({"k": scores}, {"k": np.ones_like(scores, bool)}, {"k": True},
                             n, m)["k"])
  # N:M, then unstructured top-k on top (core.structure's rule for lower densities).
  mask = mask & _random_mask(mask.shape, min(1.0, density * m / n), seed=4)
  x = _inputs(FAN_IN)
  given = sparse.compress_nm(weights, mask, Structure("n:m", n=n, m=m))
  assert given.values.shape == (FAN_IN // m, n, FAN_OUT)
  _check(given, weights, mask, x)
  _check(sparse.compress_nm(weights, mask), weights, mask, x)  # (n, m) detected


def test_detect_nm_on_a_literal_mask():
  mask = np.array([[1, 0], [1, 1], [0, 1], [0, 0],   # two per column in each group of 4
                   [1, 0], [0, 0], [1, 1], [0, 1]], bool)
  assert sparse.detect_nm(mask) == (2, 4)


RADIX_LAYERS = [
    *radixnet([[2, 2, 2]], [1, 1, 1, 1]),          # N = 8, shifts {0, p} for p = 1, 2, 4
    *radixnet([[4, 4], [2]], [2, 3, 1, 2]),        # Kronecker-widened blocks, a last list of 2
    *fitted_radixnet([40, 32, 32]),                # input layer cropped (64 -> 40 rows)
    *fitted_radixnet([784, 300, 100]),             # LeNet-300-100's hidden layers, 16 cropped
]


@pytest.mark.parametrize("index", range(len(RADIX_LAYERS)))
def test_radix_kernel_on_radixnet_layers(index):
  mask = RADIX_LAYERS[index]
  weights = _weights(mask.shape, seed=index)
  layer = sparse.compress_radix(weights, mask)
  _check(layer, weights, mask, _inputs(mask.shape[0]))
  # Every layer here has density r/N <= 1/4 (2/8, 4/16, 2/16, 4/32, 8/32, 10/100): not
  # above AUTO_DENSE_ABOVE, so "auto" runs the RadiX kernel.
  assert mask.mean() <= 0.25
  assert sparse.choose_kernel(weights, mask) == "radix"


def test_detect_radix_reads_the_shifts_of_a_radix_layer():
  layout = sparse.detect_radix(radix_layer(8, 3, 2))  # i -> i + 2d mod 8, d < 3
  assert layout == sparse.RadixStructure(size=8, shifts=(0, 2, 4), blocks_in=1, blocks_out=1,
                                         crop=0)
  assert sparse.detect_radix(_random_mask((8, 8), 0.25)) is None


def test_a_collapsed_layer_gives_zeros_in_every_kernel():
  weights, mask = _weights((8, 8)), np.zeros((8, 8), bool)
  for kernel in ("dense", "bcoo", "gather", "nm", "radix"):
    _check(sparse.compress_layer(weights, mask, kernel), weights, mask, _inputs(8))


@pytest.mark.parametrize("kernel,structure,mask,message", [
    ("sparse", None, np.ones((8, 8), bool), "unknown sparse kernel 'sparse'; valid choices: "
     "auto, bcoo, block, condensed, dense, gather, nm, radix"),
    ("radix", None, _random_mask((8, 8), 0.25), "the 8x8 mask is not a RadiX-Net layer"),
    ("nm", "2:4", np.eye(8, dtype=bool) | np.eye(8, k=1, dtype=bool) | np.eye(8, k=2, dtype=bool),
     "the mask is not 2:4: output 2 keeps 3 of the 4 inputs 0..3"),
    ("nm", None, np.ones((8, 8), bool), "has no N:M structure"),
    ("block", "block:3x3", np.ones((8, 8), bool), "block:3x3 tiles do not divide the 8x8"),
    ("block", None, _random_mask((8, 8), 0.25), "has no block structure"),
])
def test_structure_mismatch_and_bad_names_raise(kernel, structure, mask, message):
  structure = parse_structure(structure) if structure else None
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
    sparse.compress_layer(_weights(mask.shape), mask, kernel, structure)


def test_a_mask_of_another_shape_is_refused():
  with pytest.raises(ConfigError, match=r"mask shape \(8, 4\) differs from the kernel's"):
    sparse.compress_gather(_weights((8, 8)), np.ones((8, 4), bool))
