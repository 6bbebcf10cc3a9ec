"""Scores: closed-form SNIP/GraSP, SynFlow conservation, jit without retracing."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.core import masks as masks_lib
from lotto.core import rescaling
from lotto.core.errors import ConfigError
from lotto import pruning
from lotto.models import create_model
from lotto.core.scores import SCORES, ScoringContext, make_scorer, resolve_synflow
from lotto.models import init_variables


class BiasFreeMLP(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    for i, width in enumerate((7, 5)):
      x = nn.relu(nn.Dense(width, use_bias=False, name=f"hidden_{i}")(x))
    return nn.Dense(3, use_bias=False, name="output")(x)


class ConvChain(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3), use_bias=False, name="conv_0")(x))
    x = nn.relu(nn.Conv(6, (3, 3), use_bias=False, name="conv_1")(x))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(3, use_bias=False, name="output")(x)


def _synflow64(model, shape):
  with jax.enable_x64(True):
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape), jnp.float64))["params"]
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    ctx = ScoringContext(model.apply, shape)
    scores = SCORES.get("synflow")(ctx, params, masks_lib.ones_like(params), {}, None, None)
    total = jnp.sum(model.apply({"params": jax.tree.map(jnp.abs, params)},
                                jnp.ones((1, *shape), jnp.float64)))
    # numpy float64 copies: outside the x64 scope jnp would downcast to float32
    scores = jax.tree.map(lambda s: np.asarray(s, np.float64), scores)
    return params, scores, float(total)


@pytest.mark.parametrize("model, shape", [(BiasFreeMLP(), (6,)), (ConvChain(), (5, 5, 2))])
def test_synflow_conservation(model, shape):
  params, scores, total = _synflow64(model, shape)
  assert jax.tree.leaves(scores)[0].dtype == np.float64
  for layer_sum in (float(np.sum(s)) for s in jax.tree.leaves(scores)):
    assert layer_sum == pytest.approx(total, rel=1e-10)


@pytest.mark.parametrize("init, conserved", [("kaiming", True), ("torch", False)])
def test_synflow_conservation_on_a_registered_conv_net_needs_zero_biases(init, conserved):
  # conv2 (two convs, a max-pool, three dense layers, biases): with zero biases
  # every kernel's scores sum to R; PyTorch-default biases inject extra flow.
  model = create_model("conv2", 10, init)
  params, stats = init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
  prunable = masks_lib.select_prunable(params)
  scores = make_scorer("synflow", ScoringContext(model.apply, (32, 32, 3)))(
      params, masks_lib.ones_like(params), stats, None, None)
  sums = [float(np.sum(np.asarray(s, np.float64)))
          for s, f in zip(jax.tree.leaves(scores), jax.tree.leaves(prunable)) if f]
  spread = (max(sums) - min(sums)) / max(sums)
  assert (spread < 1e-10) if conserved else (spread > 1e-3), (init, sums)


def test_kaiming_init_is_torch_kernels_with_zero_biases():
  torch_params, _ = init_variables(create_model("conv2", 10, "torch"), jax.random.PRNGKey(0),
                                   (32, 32, 3))
  kaiming_params, _ = init_variables(create_model("conv2", 10, "kaiming"),
                                     jax.random.PRNGKey(0), (32, 32, 3))
  for path, leaf in jax.tree_util.tree_leaves_with_path(kaiming_params):
    name = jax.tree_util.keystr(path)
    if name.endswith("['bias']"):
      assert not np.any(np.asarray(leaf)), name
  chex.assert_trees_all_equal(
      {k: v["kernel"] for k, v in kaiming_params.items()},
      {k: v["kernel"] for k, v in torch_params.items()})


def test_synflow_neuronwise_conservation():
  params, scores, _ = _synflow64(BiasFreeMLP(), (6,))
  # per hidden neuron: sum of incoming scores == sum of outgoing scores
  np.testing.assert_allclose(scores["hidden_0"]["kernel"].sum(0),
                             scores["hidden_1"]["kernel"].sum(1), rtol=1e-10)
  np.testing.assert_allclose(scores["hidden_1"]["kernel"].sum(0),
                             scores["output"]["kernel"].sum(1), rtol=1e-10)


def _linear_ctx():
  model = nn.Dense(3, use_bias=False)
  apply_fn = lambda variables, x, train=False: model.apply(variables, x)  # noqa: E731
  return ScoringContext(apply_fn, (4,))


def test_snip_closed_form():
  w = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
  y = jnp.array([0, 1, 2, 0, 1])
  params = {"kernel": w}
  scores = SCORES.get("snip")(_linear_ctx(), params, masks_lib.ones_like(params), {}, (x, y), None)
  probs = jax.nn.softmax(x @ w)
  grad = x.T @ (probs - jax.nn.one_hot(y, 3)) / 5  # d mean CE / dW
  np.testing.assert_allclose(scores["kernel"], np.abs(w * grad), rtol=1e-5, atol=1e-7)


class TwoLayerWithBiases(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3, name="l2")(jnp.tanh(nn.Dense(4, name="l1")(x)))


@pytest.mark.parametrize("grasp_params", ["weights", "all"])
def test_grasp_sign_and_value_against_explicit_hessian(grasp_params):
  # GraSP keep-score = theta * (H g) with logits / T. Reference: the explicit Hessian of the
  # flattened loss over the weights only (biases held fixed, the default, as the authors' code
  # and Synaptic-Flow) or over every parameter (the "all" option).
  model = TwoLayerWithBiases()
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
  y = jnp.array([0, 1, 2, 0, 1, 2])
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  ctx = ScoringContext(model.apply, (5,), temperature=2.0, grasp_params=grasp_params)
  differentiated = params if grasp_params == "all" else {
      name: {"kernel": layer["kernel"]} for name, layer in params.items()}
  flat, unravel = jax.flatten_util.ravel_pytree(differentiated)

  def loss(v):
    merged = {name: {**params[name], **layer} for name, layer in unravel(v).items()}
    logits = model.apply({"params": merged}, x) / 2.0
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  hessian = jax.hessian(loss)(flat)
  g = jax.grad(loss)(flat)
  expected = unravel(flat * (hessian @ g))
  got = SCORES.get("grasp")(ctx, params, masks_lib.ones_like(params), {}, (x, y), None)
  for name in ("l1", "l2"):
    np.testing.assert_allclose(got[name]["kernel"], expected[name]["kernel"], rtol=1e-4,
                               atol=1e-7)
  if grasp_params == "weights":
    assert not np.any(np.asarray(got["l1"]["bias"]))  # biases hold no score
  else:
    np.testing.assert_allclose(got["l1"]["bias"], expected["l1"]["bias"], rtol=1e-4, atol=1e-7)
  # sign: grasp keeps large theta*Hg, grasp_abs ranks |theta*Hg|
  absolute = SCORES.get("grasp_abs")(ctx, params, masks_lib.ones_like(params), {}, (x, y), None)
  np.testing.assert_allclose(absolute["l1"]["kernel"], np.abs(got["l1"]["kernel"]))
  assert np.any(np.asarray(got["l1"]["kernel"]) < 0)  # not silently an absolute value


def test_grasp_over_weights_differs_from_grasp_over_all_params():
  model = TwoLayerWithBiases()
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
  y = jnp.array([0, 1, 2, 0, 1, 2])
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  scores = {option: SCORES.get("grasp")(ScoringContext(model.apply, (5,), grasp_params=option),
                                        params, masks_lib.ones_like(params), {}, (x, y), None)
            for option in ("weights", "all")}
  assert not np.allclose(scores["weights"]["l1"]["kernel"], scores["all"]["l1"]["kernel"],
                         rtol=1e-3)


FAMILIES = [("mlp", (40,)), ("lenet5", (28, 28, 1)), ("resnet20", (32, 32, 3))]


# grasp_abs is jnp.abs of grasp's graph and obd another Hessian-vector product: on the
# ResNet they would only compile the same kind of product again (~20 s of the suite each).
CASES = [(method, name, shape) for name, shape in FAMILIES for method in SCORES.names()
         # ResNet-20 (13-28 s per score; the suite must stay under 10 minutes) is left to
         # tests/models; lenet5 covers conv nets here, custom conv gradients included.
         if name != "resnet20"]


@pytest.mark.parametrize("method, name, shape", CASES)
def test_every_score_jits_on_every_family_without_retracing(name, shape, method, monkeypatch):
  model = create_model(name, 10, **({"widths": (16,)} if name == "mlp" else {}))
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  masks = masks_lib.ones_like(params)
  batch = (jax.random.normal(jax.random.PRNGKey(1), (4, *shape)), jnp.array([0, 1, 2, 3]))
  ctx = ScoringContext(model.apply, shape)
  chex.clear_trace_counter()  # the counter is keyed by code object, shared across cases
  # Guard the registered score itself: make_scorer's jitted wrapper must trace it once.
  monkeypatch.setitem(SCORES._entries, method, chex.assert_max_traces(SCORES.get(method), n=1))
  scorer = make_scorer(method, ctx)
  args = (params, masks, stats, batch, jax.random.PRNGKey(2))
  first = scorer(*args)
  second = scorer(*args)  # a retrace would call the guarded function again and fail
  for a, b, p in zip(jax.tree.leaves(first), jax.tree.leaves(second), jax.tree.leaves(params)):
    assert a.shape == p.shape and bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(a, b)
  if method == "synflow":
    assert jax.tree.leaves(first)[0].dtype == jnp.float64  # scored in float64 by default


def test_synflow_100_rounds_avoids_collapse_where_magnitude_collapses(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  density = 12 / 266_200  # just above L/N = 3/266,200 (one weight per layer)
  key = jax.random.PRNGKey(1)
  ones = masks_lib.ones_like(params)
  synflow = pruning.prune("synflow", ctx, params, ones, prunable, density, key)
  counts = [r["surviving"] for r in masks_lib.layer_report(synflow, prunable)]
  assert sum(counts) == 12 and min(counts) > 0, counts
  magnitude = pruning.prune("magnitude", ctx, params, ones, prunable, density, key)
  counts = [r["surviving"] for r in masks_lib.layer_report(magnitude, prunable)]
  assert sum(counts) == 12 and min(counts) == 0, counts


class DenseBatchNorm(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(8, name="hidden")(x)
    x = nn.BatchNorm(use_running_average=not train, name="norm")(x)
    return nn.Dense(3, name="output")(nn.relu(x))


def test_synflow_on_absolute_batch_norm_statistics():
  model = DenseBatchNorm()
  params, stats = init_variables(model, jax.random.PRNGKey(0), (5,))
  # Trained-looking statistics: negative running means.
  stats = jax.tree.map(lambda s: s - 0.5 * jnp.ones_like(s), stats)
  masks = masks_lib.ones_like(params)
  score = lambda ctx, bn: SCORES.get("synflow")(ctx, params, masks, bn, None, None)  # noqa: E731
  plain = ScoringContext(model.apply, (5,))
  absolute = ScoringContext(model.apply, (5,), synflow_abs_batch_stats=True)
  # The option is SynFlow on |running stats| (Synaptic-Flow's linearization) ...
  for a, b in zip(jax.tree.leaves(score(absolute, stats)),
                  jax.tree.leaves(score(plain, jax.tree.map(jnp.abs, stats)))):
    np.testing.assert_array_equal(a, b)
  # ... and differs from the default (statistics as they are) once means are negative: the
  # shifts change every later layer's input activations (the first layer's score does not
  # depend on them: the linearized net is linear in its weights downstream).
  assert not np.allclose(np.asarray(score(absolute, stats)["output"]["kernel"]),
                         np.asarray(score(plain, stats)["output"]["kernel"]), rtol=1e-3)


class SmallConvBN(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    for i, features in enumerate((4, 6)):
      x = nn.Conv(features, (3, 3), name=f"conv_{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, name=f"bn_{i}")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(8, name="fc")(x.reshape((x.shape[0], -1))))
    return nn.Dense(3, name="output")(x)


def test_rescaled_synflow_is_plain_float32_times_one_power_of_two():
  # Biases, BN shifts and running means are scaled with the activation they are added to
  # (prod_{j <= l} c_j), BN scales and variances not at all, kernel l by c_l = 2**e_l: then
  # every score of every leaf (prunable or not) is the plain float32 score times 2**E, bit
  # for bit (a power of two rounds nothing), with E = sum(e) here.
  model = SmallConvBN()
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 2)))
  leaves, treedef = jax.tree.flatten(shapes)
  # Every leaf uniform in [-3, 3] (variances in [0, 3]): nonzero biases, BN shifts and means.
  rng = np.random.default_rng(1)
  variables = jax.tree.unflatten(treedef, [rng.uniform(-3, 3, x.shape).astype(np.float32)
                                           for x in leaves])
  params = variables["params"]
  stats = {name: {"mean": s["mean"], "var": np.abs(s["var"])}
           for name, s in variables["batch_stats"].items()}
  masks = masks_lib.ones_like(params)
  ctx = resolve_synflow(ScoringContext(model.apply, (8, 8, 2), synflow_dtype="float32_rescaled"),
                        params, stats)
  plan = ctx.synflow_plan
  assert plan.complete
  # Coefficients over the kernels (conv_0, conv_1, fc, output in flattening order).
  names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  coefficients = dict(zip(names, plan.params))
  assert coefficients["['bn_1']['bias']"] == (1, 1, 0, 0)  # beta: after conv_0 and conv_1
  assert coefficients["['bn_1']['scale']"] == (0, 0, 0, 0)
  assert coefficients["['conv_1']['kernel']"] == (0, 1, 0, 0)
  assert coefficients["['output']['bias']"] == (1, 1, 1, 1)
  assert plan.stats == ((1, 0, 0, 0), (0, 0, 0, 0), (1, 1, 0, 0), (0, 0, 0, 0))  # mean, var
  plain = make_scorer("synflow", ScoringContext(model.apply, (8, 8, 2), synflow_dtype="float32"))(
      params, masks, stats, None, None)
  rescaled = make_scorer("synflow", ctx)(params, masks, stats, None, None)
  exponents = jax.jit(rescaling.kernel_exponents, static_argnums=0)(
      plan, jax.tree.map(jnp.abs, params))
  assert int(jnp.sum(jnp.abs(exponents))) > 4  # a real rescaling
  power = 2.0 ** int(rescaling.output_exponent(plan, exponents))
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(rescaled)):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a, np.float64) * power, np.asarray(b, np.float64))


def test_residual_sums_freeze_the_kernels_inside_the_blocks():
  # x + F(x): F's kernels must keep the scale of x, so only the stem and the output layer
  # are rescaled.
  model = create_model("resnet20", 10)
  # The plan needs only shapes.
  params, stats = jax.eval_shape(
      lambda: init_variables(model, jax.random.PRNGKey(0), (32, 32, 3)))
  rescaled = ScoringContext(model.apply, (32, 32, 3), synflow_dtype="float32_rescaled")
  plan = resolve_synflow(rescaled, params, stats).synflow_plan
  names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  free = [names[i] for i, frozen in zip(plan.kernels, plan.frozen) if not frozen]
  assert free == ["['output']['kernel']", "['stem_conv']['kernel']"]
  assert not plan.complete
  with pytest.raises(ConfigError, match="unknown synflow dtype 'float16'; valid choices: float64"):
    resolve_synflow(ScoringContext(model.apply, (32, 32, 3), synflow_dtype="float16"), params,
                    stats)
