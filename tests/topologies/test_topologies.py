"""RadiX-Nets, expanders and random controls: their defining properties, exactly."""
import jax
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.topologies import expander, radixnet, random_like


def _paths(layers):
  product = layers[0].astype(np.int64)
  for layer in layers[1:]:
    product = product @ layer.astype(np.int64)
  return product


# Paths from every input to every output: a full radix list (product N) is one path per
# pair, k full lists N^(k-1), a last list of product p multiplies by p, and each hidden
# block B_l (the Kronecker widening) multiplies by B_l.
@pytest.mark.parametrize("radices, blocks, widths, density, paths", [
    ([[2, 2, 2]], [1, 1, 1, 1], [8, 8, 8, 8], 2 / 8, 1),      # the published example, 75 %
    ([[10, 10]], [8, 3, 1], [800, 300, 100], 10 / 100, 3),    # LeNet-300-100 (+16 inputs), 90 %
    ([[2, 3], [3, 2], [2]], [1, 2, 2, 1, 1, 1], [6, 12, 12, 6, 6, 6], None,
     6 * 2 * (2 * 2 * 1 * 1)),                                # mixed radices: N, p, blocks
])
def test_radixnet_properties(radices, blocks, widths, density, paths):
  layers = radixnet(radices, blocks)
  flat = [r for radix_list in radices for r in radix_list]
  assert len(layers) == len(flat)
  size = int(np.prod(radices[0]))
  for l, (layer, radix) in enumerate(zip(layers, flat)):
    assert layer.dtype == bool and layer.shape == (widths[l], widths[l + 1])
    assert layer.shape == (blocks[l] * size, blocks[l + 1] * size)  # widths are B_l * N
    assert layer.mean() == pytest.approx(radix / size)  # density r / N
    if density is not None:
      assert layer.mean() == pytest.approx(density)
    # every neuron of a layer has the same in-degree and the same out-degree
    assert len(set(layer.sum(axis=0).tolist())) == 1
    assert len(set(layer.sum(axis=1).tolist())) == 1
  # every input reaches every output by the same number of paths, the one the rule predicts
  counts = _paths(layers)
  assert counts.min() == counts.max() == paths


def test_radixnet_published_example_written_out():
  first, second, third = radixnet([[2, 2, 2]], [1, 1, 1, 1])
  # place values 1, 2, 4: neuron i connects to i and i + p (mod 8)
  assert np.flatnonzero(first[0]).tolist() == [0, 1]
  assert np.flatnonzero(second[0]).tolist() == [0, 2]
  assert np.flatnonzero(third[5]).tolist() == [1, 5]
  assert (_paths([first, second, third]) == 1).all()  # exactly one path: a mixed-radix number


@pytest.mark.parametrize("radices, blocks, message", [
    ([[2, 3], [2, 2], [2]], [1] * 6, "radix list 1 \\[2, 2\\] has product 4; every list but "
                                     "the last must have the first list's product N = 6"),
    ([[2, 3], [4]], [1, 1, 1, 1], "the last radix list \\[4\\] has product 4, which does not "
                                  "divide N = 6"),
    ([[10, 10]], [8, 3], "blocks must list 3 positive integers"),
    ([[1, 10]], [1, 1, 1], "radices must be a list of non-empty lists of integers >= 2"),
    ([], [1], "radices must be a list of non-empty lists"),
])
def test_radixnet_rejects_invalid_specs_in_one_line(radices, blocks, message):
  with pytest.raises(ConfigError, match=message) as error:
    radixnet(radices, blocks)
  assert "\n" not in str(error.value)


def test_expander_exact_degrees_distinct_edges_and_determinism():
  layers = expander([40, 32, 32, 10], 4, jax.random.PRNGKey(0))
  assert [l.shape for l in layers] == [(40, 32), (32, 32), (32, 10)]
  for layer in layers:
    assert (layer.sum(axis=0) == 4).all()  # every output unit: exactly 4 distinct inputs
    assert layer.sum() == 4 * layer.shape[1]
  again = expander([40, 32, 32, 10], 4, jax.random.PRNGKey(0))
  other = expander([40, 32, 32, 10], 4, jax.random.PRNGKey(1))
  assert all((a == b).all() for a, b in zip(layers, again))
  assert any((a != b).any() for a, b in zip(layers, other))
  per_layer = expander([8, 6, 3], [2, 5], jax.random.PRNGKey(0))
  assert [int(l.sum(axis=0)[0]) for l in per_layer] == [2, 5]
  with pytest.raises(ConfigError, match="expander degree of layer 1 must lie in 1..6"):
    expander([8, 6, 3], [2, 7], jax.random.PRNGKey(0))


def test_random_like_keeps_per_layer_counts_and_moves_positions():
  params = {"a": {"kernel": np.zeros((40, 32))}, "b": {"kernel": np.zeros((32, 10))},
            "b_bias": {"bias": np.zeros(10)}}
  prunable = masks_lib.select_prunable(params)
  wiring = radixnet([[2, 2]], [10, 8, 2])  # 40x32 and 32x8
  masks = {"a": {"kernel": wiring[0]}, "b": {"kernel": expander([32, 10], 3,
                                                                 jax.random.PRNGKey(2))[0]},
           "b_bias": {"bias": np.ones(10, bool)}}
  control = random_like(masks, prunable, jax.random.PRNGKey(3))
  for name in ("a", "b"):
    assert int(np.asarray(control[name]["kernel"]).sum()) == int(masks[name]["kernel"].sum())
    assert (np.asarray(control[name]["kernel"]) != masks[name]["kernel"]).any()
  assert np.asarray(control["b_bias"]["bias"]).all()


def test_fitting_a_radixnet_to_lenet300_gives_the_published_shape():
  from lotto.topologies import fit_radixnet, fitted_radixnet  # pylint: disable=import-outside-toplevel
  assert fit_radixnet([784, 300, 100]) == ([[10, 10]], [8, 3, 1], 16)  # 800-300-100, crop 16
  first, second = fitted_radixnet([784, 300, 100])
  assert first.shape == (784, 300) and second.shape == (300, 100)
  assert first.mean() == pytest.approx(0.1) and second.mean() == pytest.approx(0.1)  # 90 %
  np.testing.assert_array_equal(first, radixnet([[10, 10]], [8, 3, 1])[0][16:])
  assert fit_radixnet([40, 500, 500]) == ([[20, 25]], [1, 1, 1], 460)  # the MNIST-1D MLP
  with pytest.raises(ConfigError, match=r"cannot fit a RadiX-Net to widths \[40, 7, 7\]: .* "
                                        r"multiples of e.g. 16 \(radices \(\(4, 4\),\)\)"):
    fit_radixnet([40, 7, 7])
