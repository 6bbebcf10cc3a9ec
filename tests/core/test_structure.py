"""N:M and block selection: written-out masks, exact group and tile counts, monotonicity,
convolution kernels grouped along input channels, and one-line errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.core.selection import prune_to_density, structured_select
from lotto.core.structure import Structure, check_shapes, nm_masks, parse_structure


def test_parse():
  assert parse_structure("unstructured") == Structure()
  assert parse_structure("2:4") == Structure("n:m", n=2, m=4)
  assert parse_structure("block:16x8") == Structure("block", bh=16, bw=8)
  assert str(parse_structure("block:4x4")) == "block:4x4" and parse_structure("1:8").max_density == 0.125
  for bad in ("4:2", "4:4", "0:4", "block:0x4", "2-4", "blocks"):
    with pytest.raises(ConfigError, match="valid choices: unstructured, n:m"):
      parse_structure(bad, "prune.structure")


def test_two_of_four_written_out():
  # A (8, 2) kernel: two groups of 4 rows per output column.
  scores = jnp.asarray([[0.1, 9.0], [0.4, 8.0], [0.3, 1.0], [0.2, 1.0],
                        [5.0, 0.0], [5.0, 3.0], [1.0, 2.0], [6.0, 1.0]])
  masks = {"k": jnp.ones((8, 2), bool)}
  kept = np.asarray(nm_masks({"k": scores}, masks, {"k": True}, 2, 4)["k"])
  expected = np.array([[0, 1], [1, 1], [1, 0], [0, 0],   # column 1: 1.0 tie -> lower row (2)
                       [1, 0], [0, 1], [0, 1], [1, 0]], bool)  # column 0: 5.0 tie -> row 4
  np.testing.assert_array_equal(kept, expected)


def _kernels():
  key1, key2 = jax.random.split(jax.random.PRNGKey(0))
  scores = {"dense": jax.random.uniform(key1, (16, 12)),
            "conv": jax.random.uniform(key2, (3, 3, 8, 4)), "bias": jnp.ones(12)}
  masks = jax.tree.map(lambda s: jnp.ones(s.shape, bool), scores)
  return scores, masks, {"dense": True, "conv": True, "bias": False}


def test_nm_every_group_keeps_exactly_n_then_unstructured_on_top():
  scores, masks, prunable = _kernels()
  structure = parse_structure("2:4")
  total = 16 * 12 + 3 * 3 * 8 * 4
  nm = structured_select(scores, masks, prunable, total, structure)  # budget above n/m: capped
  dense = np.asarray(nm["dense"]).reshape(4, 4, 12)  # groups of 4 consecutive input rows
  assert (dense.sum(axis=1) == 2).all()
  conv = np.moveaxis(np.asarray(nm["conv"]), 2, -1).reshape(3, 3, 4, 2, 4)  # along in-channels
  assert (conv.sum(axis=-1) == 2).all()
  assert np.asarray(nm["bias"]).all()
  k = round(0.3 * total)
  on_top = structured_select(scores, masks, prunable, k, structure)
  assert sum(int(np.asarray(on_top[n]).sum()) for n in ("dense", "conv")) == k  # exact count
  for name in ("dense", "conv"):  # a subset of the N:M mask: at most n per group
    assert not (np.asarray(on_top[name]) & ~np.asarray(nm[name])).any()
  again = structured_select(scores, on_top, prunable, round(0.1 * total), structure)
  for name in ("dense", "conv"):  # monotone
    assert not (np.asarray(again[name]) & ~np.asarray(on_top[name])).any()


def test_blocks_written_out_and_exact_tile_counts():
  # An (8, 8) kernel cut into 4x4 tiles; tile sums 16, 32, 48, 64 (tile (1, 1) highest).
  scores = jnp.asarray(np.kron(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((4, 4))))
  masks = {"k": jnp.ones((8, 8), bool)}
  kept = np.asarray(structured_select({"k": scores}, masks, {"k": True}, 32,
                                      parse_structure("block:4x4"))["k"])
  np.testing.assert_array_equal(kept, np.kron(np.array([[0, 0], [1, 1]]), np.ones((4, 4))) > 0)


def test_blocks_global_and_layerwise_whole_tiles_and_monotone():
  scores, masks, prunable = _kernels()
  structure = parse_structure("block:4x4")
  check_shapes(structure, masks, prunable)
  tiles = {"dense": (16 // 4) * (12 // 4), "conv": (3 * 3 * 8 // 4) * (4 // 4)}
  kept = structured_select(scores, masks, prunable, 0.25 * (16 * 12 + 288), structure)
  count = 0
  for name, shape in (("dense", (16, 12)), ("conv", (72, 4))):
    view = np.asarray(kept[name]).reshape(shape[0] // 4, 4, shape[1] // 4, 4)
    per_tile = view.sum(axis=(1, 3))
    assert set(np.unique(per_tile)) <= {0, 16}  # every tile all-True or all-False
    count += int((per_tile == 16).sum())
  assert count == round(0.25 * (tiles["dense"] + tiles["conv"]))  # exact tile count
  # Layerwise counts in leaf order (conv, then dense): 3 and 6 tiles of 16.
  layer = structured_select(scores, masks, prunable, [48, 96], structure, layerwise=True)
  assert int(np.asarray(layer["conv"]).sum()) == 48 and int(np.asarray(layer["dense"]).sum()) == 96
  smaller = structured_select(scores, kept, prunable, 0.1 * (16 * 12 + 288), structure)
  for name in ("dense", "conv"):
    assert not (np.asarray(smaller[name]) & ~np.asarray(kept[name])).any()


def test_shapes_that_do_not_split_are_one_line_errors():
  scores, masks, prunable = _kernels()
  with pytest.raises(ConfigError, match=r"layer conv has 8 inputs .* not a multiple of m = 3"):
    check_shapes(parse_structure("1:3"), masks, prunable, "prune.structure")
  with pytest.raises(ConfigError, match=r"does not split into 4x8 tiles"):
    check_shapes(parse_structure("block:4x8"), masks, prunable, "prune.structure")


def test_prune_to_density_takes_a_structure():
  scores, masks, prunable = _kernels()
  nm = prune_to_density(scores, masks, prunable, 0.25, structure=parse_structure("1:4"))
  dense = np.asarray(nm["dense"]).reshape(4, 4, 12)
  assert (dense.sum(axis=1) == 1).all()
  blocks = prune_to_density(scores, masks, prunable, 0.5, scope="layerwise",
                            structure=parse_structure("block:4x4"))
  assert int(np.asarray(blocks["dense"]).sum()) == 96 and int(np.asarray(blocks["conv"]).sum()) == 144
