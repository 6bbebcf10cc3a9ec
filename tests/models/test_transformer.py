"""Transformers: the GPT is causal and learns, the ViT reads every input layout lotto's
datasets hand it, and both prune their attention and MLP kernels by default."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.data.inputs import InputSpec
from lotto.data.shakespeare_char import VOCAB_SIZE, load_shakespeare_char
from lotto.models import create_model, default_masks_include, init_variables
from lotto.models.transformer import image_patches
from lotto.train.state import create_train_state
from lotto.train.step import make_train_step

TINY_GPT = dict(layers=2, heads=2, width=16, context=8)
TINY_VIT = dict(layers=1, heads=2, width=16, patch=4)
ATTENTION_AND_MLP = {f"block_{i}/{layer}/kernel" for i in range(2) for layer in (
    "attention/query", "attention/key", "attention/value", "attention/out", "mlp/fc_in",
    "mlp/fc_out")}


def _gpt(vocab=11, **options):
  model = create_model("gpt", vocab, **{**TINY_GPT, **options})
  params, _ = init_variables(model, jax.random.PRNGKey(0), (model.context,))
  return model, params


def test_a_token_changes_no_logit_before_its_position():
  # Causal: logits at position i are a function of tokens 0..i only. The masked attention
  # weights are exactly 0, so the earlier logits are bit-identical, not merely close.
  model, params = _gpt()
  apply = jax.jit(lambda tokens: model.apply({"params": params}, tokens))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 11)
  logits = apply(tokens)
  assert logits.shape == (2, 8, 11)
  for t in (0, 3, 7):
    changed = apply(tokens.at[:, t].set((tokens[:, t] + 5) % 11))
    np.testing.assert_array_equal(np.asarray(changed[:, :t]), np.asarray(logits[:, :t]))
    assert np.all(np.any(np.asarray(changed[:, t:]) != np.asarray(logits[:, t:]), axis=-1))


def test_gpt_reads_float_tokens_and_shorter_sequences_as_ints():
  # lotto's input pipeline hands float32 inputs; whole-number floats are the same tokens.
  # A sequence shorter than the context uses the first position embeddings.
  model, params = _gpt()
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 11)
  logits = model.apply({"params": params}, tokens)
  np.testing.assert_array_equal(model.apply({"params": params}, tokens.astype(jnp.float32)),
                                logits)
  np.testing.assert_allclose(model.apply({"params": params}, tokens[:, :5]), logits[:, :5],
                             rtol=1e-6, atol=1e-6)
  with pytest.raises(ConfigError, match="context 8 but got sequences of length 9"):
    model.apply({"params": params}, jnp.zeros((1, 9), jnp.int32))


def test_bad_heads_or_patch_is_a_one_line_error():
  with pytest.raises(ConfigError, match="width 16 is not a multiple of heads 3"):
    _gpt(heads=3)
  model = create_model("vit", 10, **{**TINY_VIT, "patch": 5})
  with pytest.raises(ConfigError, match="patch 5 does not divide its 28x28 inputs"):
    init_variables(model, jax.random.PRNGKey(0), (28, 28, 1))


def test_patches_are_cut_row_by_row():
  # A 4x4 two-channel image in 2x2 patches: patch (0, 1) holds rows 0-1, columns 2-3, each
  # pixel's channels together.
  image = jnp.arange(32.0).reshape(1, 4, 4, 2)
  patches = image_patches(image, 2)
  assert patches.shape == (1, 4, 8)
  np.testing.assert_array_equal(patches[0, 1], np.asarray(image[0, 0:2, 2:4]).reshape(-1))
  # A 1-D signal (MNIST-1D) is cut into runs of `patch` consecutive samples.
  signal = jnp.arange(12.0).reshape(1, 12)
  np.testing.assert_array_equal(image_patches(signal, 4)[0], np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize("shape, patches", [((28, 28, 1), 49), ((28, 28), 49), ((784,), 49),
                                            ((32, 32, 3), 64), ((40,), 10)])
def test_vit_classifies_every_input_layout(shape, patches):
  # mnist_5k hands [28, 28, 1] images, cifar [32, 32, 3], mnist1d [40] signals; a
  # flattened square [784] is read as the 28x28 image.
  model = create_model("vit", 10, **TINY_VIT)
  params, _ = init_variables(model, jax.random.PRNGKey(0), shape)
  assert params["position_embedding"].shape == (1 + patches, 16)  # the class token + patches
  logits = model.apply({"params": params}, jnp.ones((3, *shape)))
  assert logits.shape == (3, 10) and np.all(np.isfinite(np.asarray(logits)))
  if shape == (784,):
    square, _ = init_variables(model, jax.random.PRNGKey(0), (28, 28, 1))
    np.testing.assert_allclose(
        model.apply({"params": square}, jnp.arange(784.0).reshape(1, 28, 28, 1) / 784),
        model.apply({"params": params}, jnp.arange(784.0).reshape(1, 784) / 784),
        rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, shape", [("gpt", (8,)), ("vit", (28, 28, 1))])
def test_default_prunable_set_is_the_attention_and_mlp_kernels(name, shape):
  # Embeddings, the class token, LayerNorms, biases and the head stay dense.
  options = dict(TINY_GPT) if name == "gpt" else {**TINY_VIT, "layers": 2}
  model = create_model(name, 10, **options)
  params, _ = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), shape))
  prunable = masks_lib.select_prunable(params, default_masks_include(name))
  chosen = {n for n, f in zip(masks_lib.leaf_names(prunable), jax.tree.leaves(prunable)) if f}
  assert chosen == ATTENTION_AND_MLP
  dense = set(masks_lib.leaf_names(params)) - chosen
  embeddings = ({"token_embedding/embedding", "position_embedding"} if name == "gpt" else
                {"patch_embedding/kernel", "class_token", "position_embedding"})
  assert embeddings | {"output/kernel", "ln_final/scale", "block_0/ln_1/scale"} <= dense


def test_other_models_keep_every_kernel_as_default():
  # "" is select_prunable's own default (every leaf with ndim > 1): their masks are unchanged.
  assert default_masks_include("lenet5") == default_masks_include("resnet20") == ""
  with pytest.raises(ConfigError, match="unknown model"):
    default_masks_include("gpt5")


def _repetitive_batch():
  verse = "to be, or not to be, that is the question:\n"
  data = load_shakespeare_char({"verse": verse * 20}, context=8, stride=1)
  return jnp.asarray(data["x"]), jnp.asarray(data["y"], jnp.int32), verse


def _unigram_entropy(text: str) -> float:
  counts = np.unique(list(text), return_counts=True)[1]
  p = counts / counts.sum()
  return float(-(p * np.log(p)).sum())


def test_gpt_learns_a_repeated_verse():
  # 50 Adam steps on a verse repeated 20 times: the loss falls from about ln(97) to below
  # the verse's unigram entropy, which no model blind to the context can beat.
  x, y, verse = _repetitive_batch()
  model, params = _gpt(vocab=VOCAB_SIZE, layers=1, width=32)
  tx = optax.adam(1e-2)

  def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb),
                                                           yb).mean()

  @jax.jit
  def step(p, opt_state, key):
    rows = jax.random.choice(key, x.shape[0], (32,), replace=False)
    loss, grads = jax.value_and_grad(loss_fn)(p, x[rows], y[rows])
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state, losses = tx.init(params), []
  for i in range(50):
    params, opt_state, loss = step(params, opt_state, jax.random.PRNGKey(i))
    losses.append(float(loss))
  assert abs(losses[0] - math.log(VOCAB_SIZE)) < 0.5
  final = float(loss_fn(params, x, y))
  assert final < _unigram_entropy(verse) < losses[0]


def test_the_masked_train_step_averages_the_loss_over_positions():
  # lotto's train step takes [b, t] labels: the loss is the mean over every position, the
  # accuracy the fraction of positions whose next character is predicted.
  x, y, _ = _repetitive_batch()
  model, params = _gpt(vocab=VOCAB_SIZE)
  tx = optax.sgd(1.0)
  state = create_train_state(params, {}, None, tx, jax.random.PRNGKey(1))
  step = make_train_step(model.apply, tx, lambda s: 0.0, InputSpec(1.0, (0.0,), (1.0,), False))
  _, metrics = jax.jit(step)(state, x[:4], y[:4])
  logits = model.apply({"params": params}, x[:4])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, y[:4]).mean()
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["accuracy"]),
                             float((logits.argmax(-1) == y[:4]).mean()), rtol=1e-6)
