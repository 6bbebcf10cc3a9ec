"""One-shot pruning of a trained layer: calibration statistics, magnitude, Wanda
(Sun et al., ICLR 2024) and SparseGPT (Frantar & Alistarh, ICML 2023).

Kernels are Flax's W[in, out]: "per output unit" means per column. SparseGPT is
checked against an unblocked, input-by-input OBS elimination written here in
numpy float64, and against least squares: its reconstruction error lies between
the optimum for its own mask and plain magnitude pruning's.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.pruning import oneshot
from lotto.pruning.oneshot_methods import ONESHOT_METHODS, OneShotSettings
from lotto.pruning.sparsegpt import sparsegpt

T, F = True, False
NM_2_4, NM_4_8 = Structure("n:m", n=2, m=4), Structure("n:m", n=4, m=8)

# Wanda's worked example: 8 inputs, 2 output units; two calibration samples whose
# per-input norms are sqrt(3^2 + 4^2) = 5, 1, 1, 2, 1, 3, sqrt(6^2 + 8^2) = 10, 1.
X_SMALL = np.array([[3, 1, 0, 2, 1, 0, 6, 1],
                    [4, 0, 1, 0, 0, 3, 8, 0]], np.float32)
W_SMALL = np.array([[0.1, -0.3], [2.0, 0.5], [-1.2, 4.0], [0.9, -0.35],
                    [-3.0, 0.8], [0.2, -0.1], [0.07, 0.02], [0.65, 2.5]], np.float32)
# |W| * norm, per input (rows) and output (columns).
WANDA_SCORES = [[0.5, 1.5], [2.0, 0.5], [1.2, 4.0], [1.8, 0.7],
                [3.0, 0.8], [0.6, 0.3], [0.7, 0.2], [0.65, 2.5]]


def test_statistics_stream_in_batches_to_the_written_out_sums():
  x = np.array([[1, 2], [3, -1], [0, 2]], np.float32)
  # n = 3; sums of squares 1 + 9 + 0 = 10 and 4 + 1 + 4 = 9; X^T X off-diagonal
  # 1*2 + 3*(-1) + 0*2 = -1; H = (2/3) X^T X.
  streamed = oneshot.update_statistics(oneshot.empty_statistics(2), x[:2])
  streamed = oneshot.update_statistics(streamed, x[2:][None])  # any leading axes are samples
  whole = oneshot.input_statistics(x)
  for stats in (streamed, whole):
    assert int(stats.count) == 3
    np.testing.assert_allclose(stats.sum_squares, [10, 9], rtol=1e-6)
    np.testing.assert_allclose(stats.gram, [[10, -1], [-1, 9]], rtol=1e-6)
    np.testing.assert_allclose(oneshot.hessian(stats), np.array([[10, -1], [-1, 9]]) * 2 / 3,
                               rtol=1e-6)
    np.testing.assert_allclose(oneshot.input_norms(stats), np.sqrt([10, 9]), rtol=1e-6)
  norms_only = oneshot.input_statistics(x, with_gram=False)
  assert norms_only.gram is None
  np.testing.assert_allclose(norms_only.sum_squares, [10, 9], rtol=1e-6)
  with pytest.raises(ConfigError, match="X\\^T X"):
    oneshot.hessian(norms_only)


def test_wanda_scores_and_masks_per_output_unit():
  norms = oneshot.input_norms(oneshot.input_statistics(X_SMALL))
  np.testing.assert_allclose(norms, [5, 1, 1, 2, 1, 3, 10, 1], rtol=1e-6)
  np.testing.assert_allclose(oneshot.wanda_scores(W_SMALL, norms), WANDA_SCORES, rtol=1e-6)
  # Unstructured 50 %: the 4 highest scores of each column. Column 0 keeps 3.0, 2.0,
  # 1.8, 1.2 (inputs 4, 1, 3, 2), column 1 keeps 4.0, 2.5, 1.5, 0.8 (inputs 2, 7, 0, 4).
  unstructured = [[F, T], [T, F], [T, T], [T, F], [T, T], [F, F], [F, F], [F, T]]
  np.testing.assert_array_equal(oneshot.wanda_mask(W_SMALL, norms, 0.5), unstructured)
  # 2:4: the 2 highest of inputs 0-3 and of inputs 4-7, per column. Column 0 gets
  # inputs 1, 3 and 4, 6 (input 6's tiny weight 0.07 meets the norm 10).
  two_four = [[F, T], [T, F], [F, T], [T, F], [T, T], [F, F], [T, F], [F, T]]
  np.testing.assert_array_equal(oneshot.wanda_mask(W_SMALL, norms, 0.5, NM_2_4), two_four)
  # 25 %: 2 per column.
  quarter = [[F, F], [T, F], [F, T], [F, F], [T, F], [F, F], [F, F], [F, T]]
  np.testing.assert_array_equal(oneshot.wanda_mask(W_SMALL, norms, 0.25), quarter)


def test_magnitude_masks_on_the_written_out_layer():
  # Per layer, 8 of 16 kept: |W| 4.0, 3.0, 2.5, 2.0, 1.2, 0.9, 0.8, 0.65, so column 0
  # keeps 5 and column 1 keeps 3 (Wanda's baseline compares the whole layer).
  per_layer = [[F, F], [T, F], [T, T], [T, F], [T, T], [F, F], [F, F], [T, T]]
  np.testing.assert_array_equal(oneshot.magnitude_mask(W_SMALL, 0.5), per_layer)
  # Per output unit, 4 of 8: column 0 keeps 3.0, 2.0, 1.2, 0.9, column 1 4.0, 2.5, 0.8, 0.5.
  per_output = [[F, F], [T, T], [T, T], [T, F], [T, T], [F, F], [F, F], [F, T]]
  np.testing.assert_array_equal(oneshot.magnitude_mask(W_SMALL, 0.5, per_output=True),
                                per_output)
  two_four = [[F, F], [T, T], [T, T], [F, F], [T, T], [F, F], [F, F], [T, T]]
  np.testing.assert_array_equal(oneshot.magnitude_mask(W_SMALL, 0.5, NM_2_4), two_four)


@pytest.mark.parametrize("shape", [(24, 10), (3, 3, 8, 5)])
def test_magnitude_masks_keep_exact_counts_of_the_largest(shape):
  w = np.random.default_rng(1).normal(size=shape).astype(np.float32)
  rows = int(np.prod(shape[:-1]))
  for density in (0.1, 0.37, 0.5, 1.0):
    mask = np.asarray(oneshot.magnitude_mask(w, density))
    assert mask.shape == shape and mask.sum() == round(density * w.size)
    if density < 1:
      assert np.abs(w[mask]).min() > np.abs(w[~mask]).max()
    columns = np.asarray(oneshot.magnitude_mask(w, density, per_output=True)).reshape(rows, -1)
    assert (columns.sum(axis=0) == round(density * rows)).all()
  for structure in (NM_2_4, NM_4_8):
    mask = np.asarray(oneshot.magnitude_mask(w, structure.n / structure.m, structure))
    groups = mask.reshape(rows // structure.m, structure.m, shape[-1])
    assert (groups.sum(axis=1) == structure.n).all()


def reference_sparsegpt(w, h, density, structure=Structure(), block=4, damp=0.01):
  """SparseGPT unblocked: every later input is updated right after each input."""
  w, h = np.array(w, np.float64), np.array(h, np.float64)
  rows, cols = w.shape
  dead = np.diag(h) == 0
  h[dead, dead] = 1
  w[dead] = 0
  h += damp * np.mean(np.diag(h)) * np.eye(rows)
  u = np.linalg.cholesky(np.linalg.inv(h)).T  # H^-1 = U^T U, U upper
  d = np.diag(u)
  mask = np.ones((rows, cols), bool)
  for j in range(rows):
    if structure.kind == "unstructured" and j % block == 0:
      end = min(j + block, rows)
      scores = (w[j:end] ** 2 / d[j:end, None] ** 2).ravel()
      keep = round(density * end * cols) - round(density * j * cols)
      chosen = np.zeros(scores.size, bool)
      chosen[np.argsort(-scores, kind="stable")[:keep]] = True
      mask[j:end] = chosen.reshape(end - j, cols)
    if structure.kind == "n:m" and j % structure.m == 0:
      scores = w[j:j + structure.m] ** 2 / d[j:j + structure.m, None] ** 2
      for o in range(cols):
        mask[j:j + structure.m, o] = False
        mask[j + np.argsort(-scores[:, o], kind="stable")[:structure.n], o] = True
    q = np.where(mask[j], w[j], 0)
    err = (w[j] - q) / u[j, j]
    w[j:] -= np.outer(u[j, j:], err)
    w[j] = q
  return w, mask


def layer(seed=0, dead=()):
  """A 16-input, 6-output layer and 64 calibration inputs (float64)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(64, 16)) * rng.uniform(0.2, 3, size=16)  # inputs of unequal scale
  x[:, list(dead)] = 0
  return x, rng.normal(size=(16, 6))


def error(x, w, w_hat):
  return float(np.sum((x @ w - x @ w_hat) ** 2))


# Blocks of 4 inputs; of 6 (6, 6 and a last one of 4; 0.3 keeps 11, 11, 7 of 36, 36, 24
# entries: round(0.3 * 36) = 11, round(0.3 * 72) = 22, round(0.3 * 96) = 29); 12 for 2:4
# (12 and 4); 4 for 4:8 (rounded up to one group of 8).
@pytest.mark.parametrize("density,structure,block", [(0.5, Structure(), 4), (0.3, Structure(), 6),
                                                     (0.5, NM_2_4, 12), (0.5, NM_4_8, 4)])
def test_sparsegpt_equals_the_unblocked_elimination(density, structure, block):
  x, w = layer()
  h = 2 / len(x) * x.T @ x
  expected, expected_mask = reference_sparsegpt(w, h, density, structure, block)
  with jax.enable_x64(True):
    new, mask = sparsegpt(jnp.asarray(w), jnp.asarray(h), density, structure, block=block)
    new, mask = np.asarray(new), np.asarray(mask)
  assert new.dtype == np.float64
  np.testing.assert_array_equal(mask, expected_mask)
  np.testing.assert_allclose(new, expected, rtol=1e-9, atol=1e-12)
  assert mask.sum() == round(density * w.size) and not new[~mask].any()
  if structure.kind == "unstructured" and block == 6:
    assert mask[:6].sum() == 11 and mask[6:12].sum() == 11 and mask[12:].sum() == 7
  # float32 (the default) on the same layer: the same mask and nearly the same weights.
  new32, mask32 = sparsegpt(jnp.float32(w), jnp.float32(h), density, structure, block=block)
  assert new32.dtype == jnp.float32
  np.testing.assert_array_equal(mask32, expected_mask)
  np.testing.assert_allclose(new32, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("structure,magnitude", [(Structure(), "per_layer"), (NM_2_4, "2:4")])
def test_sparsegpt_error_lies_between_least_squares_and_magnitude(structure, magnitude):
  x, w = layer(seed=3)
  with jax.enable_x64(True):
    new, mask = map(np.asarray, sparsegpt(jnp.asarray(w), jnp.asarray(2 / 64 * x.T @ x), 0.5,
                                          structure, block=4))
    mag = np.asarray(oneshot.magnitude_mask(jnp.asarray(w), 0.5, structure))
  optimum = w * 0
  for o in range(w.shape[1]):  # least squares on the kept inputs of each output unit
    kept = mask[:, o]
    optimum[kept, o] = np.linalg.lstsq(x[:, kept], x @ w[:, o], rcond=None)[0]
  best, obtained = error(x, w, optimum), error(x, w, new)
  assert best <= obtained < error(x, w, w * mag), magnitude
  assert obtained < error(x, w, w * mask)  # the reconstruction beats the mask alone


def test_sparsegpt_at_density_one_returns_the_kernel_unchanged():
  x, w = layer()
  kernel = jnp.float32(w)
  new, mask = sparsegpt(kernel, jnp.float32(2 / 64 * x.T @ x), 1.0, block=4)
  np.testing.assert_array_equal(new, kernel)
  assert np.asarray(mask).all()


def test_sparsegpt_nm_masks_are_exact_and_independent_of_the_block():
  x, w = layer(seed=5)
  h = jnp.float32(2 / 64 * x.T @ x)
  for structure in (NM_2_4, NM_4_8):
    new, mask = sparsegpt(jnp.float32(w), h, 0.5, structure, block=structure.m)
    groups = np.asarray(mask).reshape(16 // structure.m, structure.m, 6)
    assert (groups.sum(axis=1) == structure.n).all()
    # The blocks only batch the updates: one block of all 16 inputs gives the same.
    new16, mask16 = sparsegpt(jnp.float32(w), h, 0.5, structure, block=16)
    np.testing.assert_array_equal(mask16, mask)
    np.testing.assert_allclose(new16, new, rtol=1e-5, atol=1e-6)


def test_sparsegpt_of_a_conv_kernel_is_that_of_its_matrix_view():
  x, w = layer(seed=2)
  h = jnp.float32(2 / 64 * x.T @ x)
  conv = jnp.float32(w).reshape(2, 2, 4, 6)  # (kh, kw, cin, cout), im2col order
  new, mask = sparsegpt(conv, h, 0.5, NM_2_4, block=4)
  flat_new, flat_mask = sparsegpt(jnp.float32(w), h, 0.5, NM_2_4, block=4)
  assert new.shape == mask.shape == (2, 2, 4, 6)
  np.testing.assert_array_equal(new.reshape(16, 6), flat_new)
  np.testing.assert_array_equal(mask.reshape(16, 6), flat_mask)


@pytest.mark.parametrize("structure", [Structure(), NM_2_4])
def test_sparsegpt_dead_inputs_are_pruned_and_zeroed(structure):
  x, w = layer(seed=4, dead=(5, 10))
  h = 2 / 64 * x.T @ x
  assert h[5, 5] == 0 and h[10, 10] == 0
  expected, expected_mask = reference_sparsegpt(w, h, 0.5, structure)
  with jax.enable_x64(True):
    new, mask = map(np.asarray, sparsegpt(jnp.asarray(w), jnp.asarray(h), 0.5, structure,
                                          block=4))
  assert np.isfinite(new).all()
  np.testing.assert_array_equal(mask, expected_mask)
  np.testing.assert_allclose(new, expected, rtol=1e-9, atol=1e-12)
  assert not new[[5, 10]].any() and not mask[[5, 10]].any()


def test_sparsegpt_names_the_layer_when_the_hessian_is_not_positive_definite():
  # Eigenvalues -0.05 and 1 (x15): mean(diag H) = 14.95 / 16, so damp 0.01 adds
  # 0.0093 (still indefinite) and damp 0.1, the suggested value, adds 0.093 (PD).
  q = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0]
  h = jnp.float32(q @ np.diag([-0.05] + [1.0] * 15) @ q.T)
  w = jnp.float32(layer()[1])
  with pytest.raises(ConfigError) as caught:
    sparsegpt(w, h, 0.5, name="block_2/dense")
  message = str(caught.value)
  assert "\n" not in message and "block_2/dense" in message
  assert "not positive definite" in message and "larger damp, e.g. 0.1" in message
  new, _ = sparsegpt(w, h, 0.5, damp=0.1)
  assert np.isfinite(np.asarray(new)).all()


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_nm_needs_whole_groups_of_inputs(method):
  # 6 inputs (a Dense layer), or a conv kernel whose 6 input channels split across
  # groups of 4 although kh * kw * cin = 24 is a multiple of 4.
  for shape in ((6, 3), (2, 2, 6, 3)):
    rows = int(np.prod(shape[:-1]))
    x = np.random.default_rng(0).normal(size=(32, rows)).astype(np.float32)
    with pytest.raises(ConfigError, match="layer conv_7 has 6 inputs.*m = 4"):
      ONESHOT_METHODS.get(method).prune_layer(jnp.ones(shape), oneshot.input_statistics(x),
                                              0.5, NM_2_4, OneShotSettings(), name="conv_7")
  with pytest.raises(ConfigError, match="layer fc: structure 2:4 keeps density 0.5; got "
                     "density 0.3"):
    oneshot.magnitude_mask(jnp.ones((8, 2)), 0.3, NM_2_4, name="fc")


def test_the_registry_describes_each_method_and_prunes_a_layer():
  assert ONESHOT_METHODS.names() == ["magnitude", "wanda", "sparsegpt"]
  flags = {n: (ONESHOT_METHODS.get(n).needs_calibration, ONESHOT_METHODS.get(n).needs_gram,
               ONESHOT_METHODS.get(n).updates_weights) for n in ONESHOT_METHODS}
  assert flags == {"magnitude": (F, F, F), "wanda": (T, F, F), "sparsegpt": (T, T, T)}
  x, w = layer(seed=6)
  x, w = np.float32(x), np.float32(w)
  stats = oneshot.input_statistics(x)
  settings = OneShotSettings(block=4)
  expected_masks = {
      "magnitude": oneshot.magnitude_mask(w, 0.5),
      "wanda": oneshot.wanda_mask(w, oneshot.input_norms(stats), 0.5),
      "sparsegpt": sparsegpt(w, oneshot.hessian(stats), 0.5, block=4)[1]}
  for name, method in ((n, ONESHOT_METHODS.get(n)) for n in ONESHOT_METHODS):
    new, mask = method.prune_layer(jnp.asarray(w), stats, 0.5, Structure(), settings)
    np.testing.assert_array_equal(mask, expected_masks[name])
    new, mask = np.asarray(new), np.asarray(mask)
    assert not new[~mask].any()
    assert np.array_equal(new[mask], w[mask]) != method.updates_weights
  with pytest.raises(ConfigError, match="sparsegpt: layer fc needs calibration"):
    ONESHOT_METHODS.get("sparsegpt").prune_layer(
        w, oneshot.input_statistics(x, with_gram=False), 0.5, Structure(), settings, name="fc")
  with pytest.raises(ConfigError, match="valid choices: magnitude, wanda, sparsegpt"):
    ONESHOT_METHODS.get("obs")
