"""`config.topology`: a RadiX-Net, an expander or their random control as a train run's mask."""
import jax
import numpy as np
import pytest

import lotto
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.jobs.topology import topology_masks
from lotto.runtime.checkpoints import Checkpointer
from lotto.topologies import radixnet


def _radixnet(config, control="none"):
  config.topology.name = "radixnet"
  config.topology.radices = ((2, 2),)   # N = 4, two layers at 2/4 density
  config.topology.blocks = (10, 8, 8)   # widths 40-32-32: the test MLP; its output stays dense
  config.topology.control = control
  return config


def _final_masks(workdir, config):
  state, _ = Checkpointer(str(workdir / "checkpoints")).restore(
      40, create_experiment(config).init_state())
  return jax.tree.map(np.asarray, state.masks)


def test_train_a_radixnet_and_its_random_control(tiny_config, tmp_path):
  results = lotto.run_train(_radixnet(tiny_config), str(tmp_path / "radix"))
  assert results["topology"] == "radixnet"
  assert results["layer_densities"] == {"hidden_0/kernel": 0.5, "hidden_1/kernel": 0.5,
                                        "output/kernel": 1.0}
  radix = _final_masks(tmp_path / "radix", tiny_config)
  assert (radix["hidden_0"]["kernel"].sum(axis=0) == 20).all()  # in-degree B_0 * r = 10 * 2
  control = lotto.run_train(_radixnet(tiny_config, "random"), str(tmp_path / "control"))
  assert control["layer_densities"] == results["layer_densities"]  # the same counts
  random = _final_masks(tmp_path / "control", tiny_config)
  assert (random["hidden_0"]["kernel"] != radix["hidden_0"]["kernel"]).any()  # elsewhere


def test_expander_start_mask(tiny_config, tmp_path):
  tiny_config.topology.name, tiny_config.topology.degree = "expander", 8
  results = lotto.run_train(tiny_config, str(tmp_path))
  assert results["layer_densities"] == {"hidden_0/kernel": 8 / 40, "hidden_1/kernel": 8 / 32,
                                        "output/kernel": 1.0}


@pytest.mark.parametrize("field, value, message", [
    ("name", "hypercube", "unknown topology.name 'hypercube'; valid choices: none, radixnet"),
    ("control", "shuffle", "unknown topology.control 'shuffle'; valid choices: none, random"),
    ("blocks", (8, 8, 8), "topology radixnet layer hidden_0/kernel is 32x32 but the model's is "
                          "40x32"),
    ("radices", ((2, 2), (3,)), "the last radix list \\[3\\] has product 3, which does not"),
])
def test_bad_topologies_are_one_line_errors_that_write_nothing(tiny_config, tmp_path, field,
                                                               value, message):
  _radixnet(tiny_config)
  tiny_config.topology[field] = value
  with pytest.raises(ConfigError, match=message):
    lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_radixnet_fitted_to_the_model_when_no_radices_are_given(tiny_config, tmp_path):
  tiny_config.topology.name = "radixnet"  # 40-32-32-10: radices [[4, 8]], blocks [2, 1, 1]
  results = lotto.run_train(tiny_config, str(tmp_path / "run"))
  assert results["layer_densities"] == {"hidden_0/kernel": 4 / 32, "hidden_1/kernel": 8 / 32,
                                        "output/kernel": 1.0}
  tiny_config.model.widths = (7, 7)
  with pytest.raises(ConfigError, match=r"cannot fit a RadiX-Net to widths \[40, 7, 7\]"):
    lotto.run_train(tiny_config, str(tmp_path / "bad"))


def _start_masks(config):
  exp = create_experiment(config)
  return jax.tree.map(np.asarray, topology_masks(exp.topology, exp.params_shape, exp.prunable, 0))


def test_expander_degrees_per_layer(tiny_config):
  tiny_config.topology.name, tiny_config.topology.degrees = "expander", (4, 8)
  masks = _start_masks(tiny_config)
  assert (masks["hidden_0"]["kernel"].sum(axis=0) == 4).all()  # every unit: exactly 4 inputs
  assert (masks["hidden_1"]["kernel"].sum(axis=0) == 8).all()
  tiny_config.topology.degrees = (4, 80)
  with pytest.raises(ConfigError, match=r"expander degree of layer 1 must lie in 1..32"):
    _start_masks(tiny_config)


def test_explicit_radices_crop_the_first_input_rows_like_the_fitted_rule(tiny_config):
  tiny_config.model.widths = (100, 100)  # 40 inputs: N = 100 rows, the first 60 dropped
  tiny_config.topology.name, tiny_config.topology.radices = "radixnet", ((10, 10),)
  tiny_config.topology.blocks = (1, 1, 1)
  masks = _start_masks(tiny_config)
  full = radixnet([[10, 10]], [1, 1, 1])
  np.testing.assert_array_equal(masks["hidden_0"]["kernel"], full[0][60:])
  np.testing.assert_array_equal(masks["hidden_1"]["kernel"], full[1])
  tiny_config.topology.blocks = (2, 1, 1)  # 200 rows: 160 extra, more than N, is not cropped
  with pytest.raises(ConfigError, match="layer hidden_0/kernel is 200x100 but the model's is "
                                        "40x100"):
    _start_masks(tiny_config)
