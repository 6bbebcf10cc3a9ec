"""Transformers through the config edge: sizes from `model.*`, the default prunable set
(attention and MLP kernels only), and a masked train run whose pruned weights stay zero."""
import jax
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.train.trainer import Trainer


def _vit(config):
  config.model.name = "vit"
  config.model.layers, config.model.heads, config.model.width, config.model.patch = 1, 2, 16, 8
  return config


def test_a_vit_from_the_config_prunes_only_attention_and_mlp_kernels(tiny_config):
  exp = create_experiment(_vit(tiny_config))
  chosen = sorted(n for n, f in zip(masks_lib.leaf_names(exp.params_shape),
                                    jax.tree.leaves(exp.prunable)) if f)
  assert chosen == [f"block_0/{layer}/kernel" for layer in (
      "attention/key", "attention/out", "attention/query", "attention/value", "mlp/fc_in",
      "mlp/fc_out")]
  shapes = dict(zip(masks_lib.leaf_names(exp.params_shape), jax.tree.leaves(exp.params_shape)))
  assert shapes["block_0/attention/query/kernel"].shape == (16, 16)  # model.width
  assert shapes["block_0/mlp/fc_in/kernel"].shape == (16, 64)
  # MNIST-1D's 40 samples in runs of model.patch = 8: 5 patches of 8 values.
  assert shapes["patch_embedding/kernel"].shape == (8, 16)
  params, _ = exp.init_params(jax.random.PRNGKey(0))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, exp.prunable, 0.5)
  trainer = Trainer(exp)
  state, metrics = trainer.run_block(trainer.place(exp.init_state(masks)), 10)
  assert np.all(np.isfinite(metrics["loss"]))
  for p, m in zip(jax.tree.leaves(jax.device_get(state.params)),
                  jax.tree.leaves(jax.device_get(state.masks))):
    assert not np.any(p[~m])


def test_a_size_a_model_does_not_take_is_one_line(tiny_config):
  tiny_config.model.heads = 4  # the MLP has no heads
  with pytest.raises(ConfigError, match=r"^model 'mlp' does not take options .*unexpected "
                                        r"keyword argument 'heads'$"):
    create_experiment(tiny_config)
  tiny_config.model.heads = -1
  with pytest.raises(ConfigError, match=r"^model.heads must be a positive integer; got -1$"):
    create_experiment(tiny_config)
