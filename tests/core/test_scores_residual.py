"""Scores on a BatchNorm + residual network (lotto's CIFAR ResNet at a tiny width): SynFlow's
conservation through residual sums and eval-mode BN, float32_rescaled against float64, SNIP as
the connection sensitivity |dL/dc| and GraSP against an explicit Hessian."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.core import masks as masks_lib
from lotto.core import selection
from lotto.core.scores import ScoringContext, make_scorer
from lotto.models.resnet import ResNet

SHAPE = (4, 4, 3)
# Stem (3 -> 2 channels), stage 0: one block with an identity shortcut (2 -> 2), stage 1: one
# block with a strided 1x1 projection shortcut (2 -> 4), global average pool, output (4 -> 3).
# Zero biases ("kaiming"): no flow is injected downstream of a kernel.
MODEL = ResNet((2, 4), 1, 3, init_scheme="kaiming")


@pytest.fixture(scope="module")
def resnet():
  """(params, batch_stats, prunable): BN scales and running variances drawn away from their
  init values (the law must hold for any), running means 0 (a mean is a shift, i.e. a bias)."""
  variables = jax.jit(lambda key: MODEL.init(key, jnp.zeros((1, *SHAPE)), train=False))(
      jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)

  def perturb(path, leaf):
    name = masks_lib.key_path_name(path)
    if name.endswith("scale") or name.endswith("var"):
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
    return leaf

  params = jax.tree_util.tree_map_with_path(perturb, variables["params"])
  stats = jax.tree_util.tree_map_with_path(perturb, variables["batch_stats"])
  return params, stats, masks_lib.select_prunable(params)


@pytest.fixture(scope="module")
def synflow64(resnet):
  params, stats, _ = resnet
  return _synflow(params, stats, "float64")


def _named(tree):
  return {n: np.asarray(x) for n, x in zip(masks_lib.leaf_names(tree), jax.tree.leaves(tree))}


def _synflow(params, stats, dtype):
  scorer = make_scorer("synflow", ScoringContext(MODEL.apply, SHAPE, synflow_dtype=dtype))
  return _named(scorer(params, masks_lib.ones_like(params), stats, None, None))


@jax.jit
def _linearized_output(params, stats):
  return jnp.sum(MODEL.apply({"params": params, "batch_stats": stats},
                             jnp.ones((1, *SHAPE), params["output"]["kernel"].dtype), train=False))


def _flow(params, stats):
  """R: the sum of the outputs of the linearized network (|params|, all-ones input, BN in eval
  mode), in float64."""
  with jax.enable_x64(True):
    as64 = lambda t: jax.tree.map(lambda x: jnp.abs(jnp.asarray(x, jnp.float64)), t)  # noqa: E731
    return float(_linearized_output(as64(params), as64(stats)))


def test_synflow_conservation_through_residual_sums_and_batch_norm(resnet, synflow64):
  # R is a sum over input-output paths of products of |params| (BN in eval mode multiplies a
  # channel by scale / sqrt(var + eps)), and score_p = p dR/dp counts the flow of every path
  # through p. So the scores of any set of leaves that every path crosses exactly once sum
  # to R: the stem, the stem BN's scales, the output layer, and in the projection block its
  # residual branch plus its shortcut. An identity shortcut carries flow past the block's
  # branch: every layer of that branch carries the same flow, R minus the flow that remains
  # when the branch is cut.
  params, stats, _ = resnet
  scores = synflow64
  assert scores["output/kernel"].dtype == np.float64
  total = _flow(params, stats)
  sums = {name: float(np.sum(s)) for name, s in scores.items()}
  for name in ("stem_conv/kernel", "stem_bn/scale", "output/kernel"):
    assert sums[name] == pytest.approx(total, rel=1e-10), name
  projection = "stage1_block0/"
  for branch, shortcut in (("conv_0/kernel", "shortcut_conv/kernel"),
                           ("conv_1/kernel", "shortcut_conv/kernel"),
                           ("bn_1/scale", "shortcut_bn/scale")):
    assert sums[projection + branch] + sums[projection + shortcut] == pytest.approx(
        total, rel=1e-10), branch
  assert 0 < sums[projection + "shortcut_conv/kernel"] < total  # both sides carry flow
  block = params["stage0_block0"]
  cut = {**params, "stage0_block0": {**block, "conv_0": {
      "kernel": jnp.zeros_like(block["conv_0"]["kernel"])}}}
  through_branch = total - _flow(cut, stats)
  assert 0 < through_branch < total
  for name in ("conv_0/kernel", "bn_0/scale", "conv_1/kernel", "bn_1/scale"):
    assert sums["stage0_block0/" + name] == pytest.approx(through_branch, rel=1e-10), name
  # Zero biases and BN shifts hold no flow.
  assert not any(np.any(s) for n, s in scores.items() if n.endswith("bias"))


def _top_k(scores: dict, prunable_names: list, k: int) -> dict:
  """The k highest scores over the named leaves (numpy; no ties in these scores)."""
  flat = np.concatenate([scores[n].ravel() for n in prunable_names])
  assert np.unique(flat).size == flat.size
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(-flat, kind="stable")[:k]] = True
  out, offset = {}, 0
  for n in prunable_names:
    out[n] = keep[offset:offset + scores[n].size].reshape(scores[n].shape)
    offset += scores[n].size
  return out


def test_float32_rescaled_synflow_equals_float64_up_to_one_power_of_two(resnet, synflow64):
  params, stats, prunable = resnet
  exact = synflow64
  rescaled = _synflow(params, stats, "float32_rescaled")
  names = [n for n, f in zip(masks_lib.leaf_names(params), jax.tree.leaves(prunable)) if f]
  assert len(names) == 7  # the stem, 4 convolutions in the blocks, the shortcut, the output
  # One common factor 2**E for every leaf (here the stem and the output layer are rescaled:
  # the residual sums freeze the kernels inside the blocks), E != 0 on this net.
  ratio = float(np.sum(rescaled["output/kernel"], dtype=np.float64) /
                np.sum(exact["output/kernel"]))
  exponent = round(np.log2(ratio))
  assert exponent != 0 and ratio == pytest.approx(2.0 ** exponent, rel=1e-5)
  for name in names:
    assert rescaled[name].dtype == np.float32
    np.testing.assert_allclose(rescaled[name].astype(np.float64) * 2.0 ** -exponent, exact[name],
                               rtol=1e-5, atol=0)
  # Same masks: the float32 scores, selected by lotto, keep the top k of the float64 scores.
  assert sum(exact[n].size for n in names) == 362
  k = 72  # round(0.2 * 362)
  rescaled_tree = jax.tree.unflatten(
      jax.tree.structure(params), [jnp.asarray(rescaled[n]) for n in masks_lib.leaf_names(params)])
  got = _named(jax.jit(lambda s, m: selection.select_global(s, m, prunable, k))(
      rescaled_tree, masks_lib.ones_like(params)))
  want = _top_k(exact, names, k)
  assert sum(int(got[n].sum()) for n in names) == k
  for name in names:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _batch():
  x = jax.random.normal(jax.random.PRNGKey(1), (6, *SHAPE))
  return x, jnp.array([0, 1, 2, 0, 1, 2])


def _loss(params, stats, batch, temperature=1.0):
  x, y = batch
  logits = MODEL.apply({"params": params, "batch_stats": stats}, x, train=False)
  return optax.softmax_cross_entropy_with_integer_labels(logits / temperature, y).mean()


def test_snip_is_the_connection_sensitivity_with_batch_norm_in_eval_mode(resnet):
  # SNIP = |dL/dc| at c = 1, c a multiplier on every weight (Lee et al.), BN in eval mode.
  params, stats, prunable = resnet
  batch = _batch()
  got = _named(make_scorer("snip", ScoringContext(MODEL.apply, SHAPE))(
      params, masks_lib.ones_like(params), stats, batch, None))
  gates = jax.tree.map(jnp.ones_like, params)
  sensitivity = _named(jax.jit(jax.grad(
      lambda c: _loss(jax.tree.map(jnp.multiply, params, c), stats, batch)))(gates))
  for name, flag in zip(masks_lib.leaf_names(params), jax.tree.leaves(prunable)):
    if flag:
      np.testing.assert_allclose(got[name], np.abs(sensitivity[name]), rtol=1e-5, atol=1e-8)
  assert np.any(got["stage1_block0/shortcut_conv/kernel"] > 0)


def test_grasp_against_the_explicit_hessian_on_the_resnet(resnet):
  # GraSP keep-score = theta * (H g), g and H of the loss at T = 200 over the prunable weights
  # (biases and BN params held fixed). Reference: the explicit 362 x 362 Hessian of the
  # flattened weights, by reverse-over-reverse (the convolutions' custom gradients cannot be
  # forward-differentiated).
  params, stats, prunable = resnet
  batch = _batch()
  names = masks_lib.leaf_names(params)
  flags = jax.tree.leaves(prunable)
  weights = [leaf for leaf, f in zip(jax.tree.leaves(params), flags) if f]
  flat, unravel = jax.flatten_util.ravel_pytree(weights)
  # stem 3*3*3*2, stage 0: 2 * 3*3*2*2, stage 1: 3*3*2*4 + 3*3*4*4 + 1*1*2*4, output 4*3
  assert flat.size == 54 + 72 + 72 + 144 + 8 + 12 == 362

  def loss(v):
    leaves, given = [], iter(unravel(v))
    for leaf, f in zip(jax.tree.leaves(params), flags):
      leaves.append(next(given) if f else leaf)
    return _loss(jax.tree.unflatten(jax.tree.structure(params), leaves), stats, batch, 200.0)

  hessian, g = jax.jit(lambda v: (jax.jacrev(jax.grad(loss))(v), jax.grad(loss)(v)))(flat)
  expected = unravel(flat * (hessian @ g))
  got = _named(make_scorer("grasp", ScoringContext(MODEL.apply, SHAPE))(
      params, masks_lib.ones_like(params), stats, batch, None))
  scale = max(float(np.max(np.abs(e))) for e in expected)
  for name, want in zip([n for n, f in zip(names, flags) if f], expected):
    np.testing.assert_allclose(got[name], want, rtol=1e-3, atol=1e-4 * scale, err_msg=name)
  assert not any(np.any(got[n]) for n, f in zip(names, flags) if not f)  # held fixed
