"""Model registry: exact parameter counts and one training step per model."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.models import MODELS, create_model
from lotto.models import init_variables
from lotto.train.state import create_train_state
from lotto.data.inputs import InputSpec
from lotto.train.step import make_train_step

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)

# name -> (input shape, total params, weights in kernels), 10 classes.
# Reference counts: LeNet-300-100 266,610 (Frankle & Carbin), ResNet-20
# 272,474 and ResNet-18 11,173,962 (open_lth / torchvision CIFAR variant),
# Conv-2/4/6 4.3M / 2.4M / 2.26M (Frankle & Carbin, Figure 2).
EXPECTED = {
    "mlp": ((40,), 276_010, 275_000),
    "lenet300": (MNIST, 266_610, 266_200),
    "lenet5": (MNIST, 61_706, 61_470),
    "conv2": (CIFAR, 4_301_642, 4_300_992),
    "conv4": (CIFAR, 2_425_930, 2_425_024),
    "conv6": (CIFAR, 2_262_602, 2_261_184),
    # VGG: kernels + one bias per conv channel + output bias; BN adds 2 per
    # conv channel (scale, bias).
    "vgg11": (CIFAR, 9_225_610, 9_222_848),
    "vgg11_bn": (CIFAR, 9_231_114, 9_222_848),
    "vgg16": (CIFAR, 14_719_818, 14_715_584),
    "vgg16_bn": (CIFAR, 14_728_266, 14_715_584),
    "vgg19": (CIFAR, 20_029_514, 20_024_000),
    "vgg19_bn": (CIFAR, 20_040_522, 20_024_000),
    "resnet20": (CIFAR, 272_474, 270_896),
    "resnet32": (CIFAR, 466_906, 464_432),
    "resnet56": (CIFAR, 855_770, 851_504),
    "resnet18": (CIFAR, 11_173_962, 11_164_352),
    # torchvision's ImageNet ResNet-18 (11,689,512) and ResNet-50 (25,557,032) with their
    # 1000-way head (512 * 1000 + 1000 and 2048 * 1000 + 1000) replaced by a 10-way one.
    "resnet18_imagenet": ((64, 64, 3), 11_689_512 - 507_870, 11_172_032),
    "resnet50": ((64, 64, 3), 25_557_032 - 2_028_510, 23_475_392),
    # Transformers at their defaults. GPT (vocab 10, width 128, context 128, 2 blocks):
    # embeddings 10*128 + 128*128, per block 4 attention Dense (128*128 + 128), an MLP
    # 128-512-128 and 2 LayerNorms, a final LayerNorm, the head 128*10 + 10. ViT (width
    # 64, 2 blocks, 4x4 patches of 28x28x1: 49 + the class token): patch embedding
    # 16*64 + 64, class token 64, positions 50*64, the blocks at width 64, the head.
    "gpt": ((128,), 415_754, 412_160),
    "vit": (MNIST, 105_098, 103_232),
}


@pytest.mark.parametrize("name, total", [("resnet18_imagenet", 11_689_512),
                                         ("resnet50", 25_557_032)])
def test_imagenet_resnets_have_torchvisions_parameter_counts(name, total):
  model = create_model(name, 1000)
  params, stats = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0),
                                                        (224, 224, 3)))
  assert sum(x.size for x in jax.tree.leaves(params)) == total
  # BatchNorm running statistics are buffers in torchvision, batch_stats here: 2 per channel.
  assert sum(x.size for x in jax.tree.leaves(stats)) == sum(
      x.size for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
      if "bn" in masks_lib.key_path_name(path))


def test_every_registered_model_has_expected_counts():
  assert sorted(EXPECTED) == MODELS.names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts(name):
  shape, total, weights = EXPECTED[name]
  model = create_model(name, 10)
  params, _ = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), shape))
  leaves = jax.tree.leaves(params)
  assert sum(x.size for x in leaves) == total
  assert sum(x.size for x in leaves if x.ndim > 1) == weights


# One model per family, the smallest (depth and width change no code path: resnet32/56/18
# build like resnet20, vgg16/19 like vgg11, conv4/6 like conv2; vgg11 is vgg11_bn without
# its BatchNorms, and compiling its gradient cost 19 s); the parameter counts above cover
# every registered model.
ONE_PER_FAMILY = ("mlp", "lenet300", "lenet5", "conv2", "vgg11_bn", "resnet20")


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_every_model_family_trains_one_step(name):
  shape = EXPECTED[name][0]
  model = create_model(name, 10)
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  tx = optax.trace(0.9)
  state = create_train_state(params, stats, None, tx, jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(model.apply, tx, lambda s: 0.01,
                                 InputSpec(1.0, (0.0,), (1.0,), False)))
  x = jax.random.normal(jax.random.PRNGKey(2), (2, *shape))
  new, metrics = step(state, x, jnp.array([1, 3]))
  assert int(new.step) == 1
  assert np.isfinite(float(metrics["loss"]))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params, state.params)
  assert any(jax.tree.leaves(moved))


def test_torch_init_statistics():
  # kaiming-normal fan-in (not truncated): std sqrt(2/fan_in), and values beyond
  # 2 std exist; biases uniform in +-1/sqrt(fan_in).
  model = create_model("lenet300", 10, init="torch")
  params, _ = init_variables(model, jax.random.PRNGKey(0), MNIST)
  kernel = np.asarray(params["hidden_0"]["kernel"])
  std = np.sqrt(2 / 784)
  assert abs(kernel.std() / std - 1) < 0.01
  assert np.abs(kernel).max() > 3 * std  # a truncated normal stops at 2 std
  bias = np.asarray(params["hidden_0"]["bias"])
  assert np.abs(bias).max() <= 1 / np.sqrt(784)
  assert np.abs(bias).max() > 0.9 / np.sqrt(784)


def test_flax_init_has_zero_bias():
  model = create_model("lenet300", 10, init="flax")
  params, _ = init_variables(model, jax.random.PRNGKey(0), MNIST)
  assert not np.any(np.asarray(params["output"]["bias"]))


def test_output_layer_is_named_output_and_excludable():
  model = create_model("resnet20", 10)
  params, _ = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), CIFAR))
  prunable = masks_lib.select_prunable(params, exclude="^output/")
  assert prunable["output"]["kernel"] is False
  assert prunable["stem_conv"]["kernel"] is True


def test_unknown_model_lists_choices():
  with pytest.raises(ConfigError, match="valid choices: .*lenet300"):
    create_model("lenet301", 10)
  with pytest.raises(ConfigError, match="valid choices: torch, kaiming, flax"):
    create_model("lenet300", 10, init="xavier")
