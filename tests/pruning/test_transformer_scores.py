"""Pruning at initialization on transformers: SynFlow is refused (LayerNorm, softmax
attention and GELU break the positive homogeneity its conservation law assumes), GraSP
applies: its scores on a tiny GPT equal theta * Hg with Hg by central finite differences of
the gradient (float64), and its masks keep exactly round(d * n) attention/MLP weights on a
tiny GPT and ViT, leaving embeddings, LayerNorms and the head unmasked."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto import pruning
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.scores import SCORES, ScoringContext
from lotto.jobs.experiment import create_experiment
from lotto.jobs.prune_settings import prune_settings_from_config
from lotto.models import create_model, default_masks_include, init_variables

TINY = {"gpt": dict(layers=1, heads=2, width=8, context=6),
        "vit": dict(layers=1, heads=2, width=8, patch=4)}
INPUT_SHAPE = {"gpt": (6,), "vit": (8, 8, 1)}
CLASSES = {"gpt": 13, "vit": 10}
NOT_SYNFLOW = "grasp, grasp_abs, magnitude, obd, random, snip"


@functools.lru_cache(maxsize=None)  # built once per model for the tests below
def _network(name):
  model = create_model(name, CLASSES[name], **TINY[name])
  params, _ = init_variables(model, jax.random.PRNGKey(0), INPUT_SHAPE[name])
  prunable = masks_lib.select_prunable(params, default_masks_include(name))
  key_x, key_y = jax.random.split(jax.random.PRNGKey(1))
  if name == "gpt":
    x = jax.random.randint(key_x, (4, 6), 0, 13).astype(jnp.float32)
    y = jax.random.randint(key_y, (4, 6), 0, 13)
  else:
    x = jax.random.normal(key_x, (4, 8, 8, 1))
    y = jax.random.randint(key_y, (4,), 0, 10)
  return model, params, prunable, (x, y)


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_synflow_on_a_transformer_is_refused_in_one_line(name):
  model, params, prunable, _ = _network(name)
  expected = (f"prune.method 'synflow' needs a positively homogeneous network (its conservation "
              f"law assumes ReLU-like layers); model '{name}' has LayerNorm, softmax attention, "
              f"GELU: use one of {NOT_SYNFLOW}")
  with pytest.raises(ConfigError) as error:
    pruning.check_method("synflow", model, name)
  assert str(error.value) == expected
  # The library entry point refuses it too (the model is read from the bound apply).
  ctx = ScoringContext(model.apply, INPUT_SHAPE[name], prunable=prunable)
  with pytest.raises(ConfigError) as error:
    pruning.prune("synflow", ctx, params, masks_lib.ones_like(params), prunable, 0.5,
                  jax.random.PRNGKey(0))
  assert str(error.value) == expected.replace(f"'{name}'", f"'{type(model).__name__}'")
  assert pruning.methods_for(model) == NOT_SYNFLOW.split(", ")


def test_relu_networks_keep_synflow():
  for name in ("lenet300", "resnet20", "vgg11_bn"):
    assert "synflow" in pruning.methods_for(create_model(name, 10))
  pruning.check_method("synflow", create_model("lenet300", 10))


def test_the_prune_job_refuses_synflow_on_a_vit_before_writing(tiny_config, tmp_path):
  config = tiny_config
  config.model.name = "vit"
  config.model.layers, config.model.heads, config.model.width, config.model.patch = 1, 2, 16, 8
  config.mode, config.prune.method = "prune", "synflow"
  exp = create_experiment(config)
  with pytest.raises(ConfigError) as error:
    prune_settings_from_config(config, exp)
  assert str(error.value) == (
      "prune.method 'synflow' needs a positively homogeneous network (its conservation law "
      "assumes ReLU-like layers); model 'vit' has LayerNorm, softmax attention, GELU: use one "
      f"of {NOT_SYNFLOW}")
  config.prune.method = "grasp"
  assert prune_settings_from_config(config, exp).method == "grasp"


def test_grasp_on_a_gpt_is_theta_times_a_finite_difference_hessian_gradient():
  model, params, prunable, (x, y) = _network("gpt")
  temperature = 200.0
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    ctx = ScoringContext(model.apply, INPUT_SHAPE["gpt"], temperature=temperature,
                         prunable=prunable)
    got = jax.jit(lambda p: SCORES.get("grasp")(ctx, p, masks_lib.ones_like(p), {}, (x, y),
                                                None))(params)

    # Independently: the gradient over the weights only (other leaves fixed), then Hg as
    # the central difference of that gradient along g.
    def loss(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits / temperature, y).mean()

    @jax.jit
    def weight_grad(p):
      return jax.tree.map(lambda g, f: g if f else jnp.zeros_like(g), jax.grad(loss)(p),
                          prunable)

    g = weight_grad(params)
    eps = 1e-5 / float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(g))))
    plus = weight_grad(jax.tree.map(lambda p, d: p + eps * d, params, g))
    minus = weight_grad(jax.tree.map(lambda p, d: p - eps * d, params, g))
    for name, f, p, a, b, s in zip(masks_lib.leaf_names(params), jax.tree.leaves(prunable),
                                   jax.tree.leaves(params), jax.tree.leaves(plus),
                                   jax.tree.leaves(minus), jax.tree.leaves(got)):
      if f:
        expected = np.asarray(p * (a - b) / (2 * eps))
        assert np.abs(expected).max() > 0, name
        np.testing.assert_allclose(np.asarray(s), expected, rtol=1e-5,
                                   atol=1e-7 * np.abs(expected).max(), err_msg=name)


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_grasp_masks_keep_exactly_the_top_scores_of_attention_and_mlp_kernels(name):
  model, params, prunable, batch = _network(name)
  ctx = ScoringContext(model.apply, INPUT_SHAPE[name], prunable=prunable)
  masks = pruning.prune("grasp", ctx, params, masks_lib.ones_like(params), prunable, 0.3,
                        jax.random.PRNGKey(0), batch=batch)
  scores = jax.jit(lambda p: SCORES.get("grasp")(ctx, p, masks_lib.ones_like(p), {}, batch,
                                                  None))(params)
  names = masks_lib.leaf_names(params)
  chosen = [i for i, f in enumerate(jax.tree.leaves(prunable)) if f]
  # 1 block: query, key, value, out 8x8 each, fc_in 8x32, fc_out 32x8 = 768 weights.
  assert sorted(names[i] for i in chosen) == [f"block_0/{layer}/kernel" for layer in (
      "attention/key", "attention/out", "attention/query", "attention/value", "mlp/fc_in",
      "mlp/fc_out")]
  flat_scores = np.concatenate([np.ravel(jax.tree.leaves(scores)[i]) for i in chosen])
  flat_masks = np.concatenate([np.ravel(jax.tree.leaves(masks)[i]) for i in chosen])
  assert flat_scores.size == 768 and flat_masks.sum() == round(0.3 * 768) == 230
  # The kept weights are the 230 highest scores (no ties among them).
  top = np.argsort(-flat_scores, kind="stable")[:230]
  assert len(np.unique(flat_scores[np.argsort(-flat_scores)[229:231]])) == 2
  np.testing.assert_array_equal(np.flatnonzero(flat_masks), np.sort(top))
  for i, (leaf_name, mask) in enumerate(zip(names, jax.tree.leaves(masks))):
    if i not in chosen:  # embeddings, LayerNorms, biases, the head
      assert np.all(np.asarray(mask)), leaf_name
