"""`sparse.method = "srigl"` and `sparse.distribution = "fanin"` in sparse_train: the constant
fan-in holds after every update with the output layer dense, grown weights and moments start
at 0, neuron ablation keeps one fan-in among the units left, kill-and-resume is bit-identical,
a population equals its separate runs, and bad input is one line that writes nothing."""
import json
import os

import jax
import numpy as np
import pytest

import lotto
from lotto.core import fanin
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.replicas import seed_dir
from lotto.jobs.sparse_train import build_sparse_run, initial_state, run_sparse_train
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import load_state
from lotto.train.trainer import Trainer
from tests.conftest import assert_no_moments_on_masked_weights
from tests.jobs.test_cli import TEST_CONFIG, run_cli
from tests.jobs.test_population import _config, _population_and_singles

# The test config's MLP 40-32-32-10 at density 0.25: k = round(0.25 * fan_in) inputs per unit.
FAN_IN = {"hidden_0": 10, "hidden_1": 8}  # of 40 and of 32 inputs


def _srigl(config, density=0.25, ablation=0.0):
  config.mode, config.sparse.method = "sparse_train", "srigl"
  config.sparse.density, config.sparse.ablation_threshold = density, ablation
  return config


def _built(config):
  exp, settings, update = build_sparse_run(config)
  return exp, settings, update, initial_state(exp, settings, update)


def _columns(mask):
  return np.asarray(mask).reshape(-1, np.asarray(mask).shape[-1]).sum(axis=0)


def test_every_unit_keeps_k_inputs_after_every_update_and_the_output_stays_dense(tiny_config):
  _srigl(tiny_config)
  tiny_config.train.loop = "step"
  exp, settings, update, state = _built(tiny_config)
  assert settings.distribution == "fanin" and update.due_steps == (5, 10, 15, 20, 25)
  assert not exp.prunable["output"]["kernel"]  # SRigL keeps the output layer dense
  trainer = Trainer(exp, mask_update=update)
  state = jax.tree.map(np.asarray, state)
  for name, k in FAN_IN.items():
    np.testing.assert_array_equal(_columns(state.masks[name]["kernel"]), k)
  # Drops (= growths) per unit, round(f * k) with f = 0.15 * (1 + cos(pi t / 30)) (stop at
  # 75 % of 40 steps): t = 5: f = 0.280, 10: 0.225, 20: 0.075; k = 10 and 8. (At t = 15,
  # f * 10 = 1.5 exactly in reals, a float32 rounding from either side: not checked here.)
  swapped = {5: {"hidden_0": 3, "hidden_1": 2}, 10: {"hidden_0": 2, "hidden_1": 2},
             20: {"hidden_0": 1, "hidden_1": 1}}
  for target in (5, 10, 20):
    state, _ = trainer.run_block(trainer.place(state), target - int(state.step))
    before = jax.tree.map(np.asarray, state)
    state, _ = trainer.run_block(trainer.place(before), 1)  # the update runs in this step
    after = jax.tree.map(np.asarray, state)
    for name, k in FAN_IN.items():
      old, new = before.masks[name]["kernel"], after.masks[name]["kernel"]
      np.testing.assert_array_equal(_columns(new), k)  # all 32 units, every update
      grown = new & ~old
      np.testing.assert_array_equal(_columns(grown), swapped[target][name])
      np.testing.assert_array_equal(after.params[name]["kernel"][grown], 0.0)
    assert after.masks["output"]["kernel"].all()
    assert_no_moments_on_masked_weights(after.opt_state, after.masks, expected_trees=2)
    for path, leaf in jax.tree_util.tree_flatten_with_path(after.opt_state)[0]:
      if masks_lib.key_path_name(path[-2:]) == "hidden_1/kernel":  # Adam's mu and nu
        grown = after.masks["hidden_1"]["kernel"] & ~before.masks["hidden_1"]["kernel"]
        np.testing.assert_array_equal(leaf[grown], 0.0)
  log = jax.device_get(state.mask_state["log"])
  assert log["step"].tolist() == [5, 10, 15, 20, -1]  # 25 is still to come
  assert log["alive"].tolist()[:4] == [[320, 256]] * 4  # 32 x 10 and 32 x 8


def test_a_run_reports_the_srigl_layers_only(tiny_config, tmp_path):
  results = lotto.run_job(_srigl(tiny_config), str(tmp_path))
  assert results["method"] == "srigl"
  assert results["layer_densities"] == {"hidden_0/kernel": 0.25, "hidden_1/kernel": 0.25}
  assert [u["step"] for u in results["mask_updates"]] == [5, 10, 15, 20, 25]
  assert all(u["density"] == 0.25 for u in results["mask_updates"])
  assert all(u["changed"] > 0 for u in results["mask_updates"][:4])
  # At 25, f = 0.020: round(f * 10) = round(f * 8) = 0, no unit changes.
  assert results["mask_updates"][-1]["changed"] == 0


class _Killed(Exception):
  pass


def test_kill_between_updates_and_resume_is_bit_identical_with_ablation(tiny_config, tmp_path):
  config = _srigl(tiny_config, ablation=0.9)  # 0.9: units are ablated in this run
  straight = run_sparse_train(config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):  # at 22: between the updates at 20 and 25; resumes from 20
    run_sparse_train(config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [22])])
  resumed = run_sparse_train(config, str(tmp_path / "resumed"))
  for key in ("mask_updates", "final_test_accuracy", "final_test_loss", "history",
              "layer_densities"):
    assert resumed[key] == straight[key]
  _, _, _, like = _built(config)
  a = load_state(str(tmp_path / "straight"), 40, like)
  b = load_state(str(tmp_path / "resumed"), 40, like)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # Ablation: the units left share one fan-in k' = min(fan_in, budget // units) and the
  # ablated ones hold nothing; the budget is the start's 32 k.
  ablated = 0
  for name, fan_in_size in (("hidden_0", 40), ("hidden_1", 32)):
    counts = _columns(a.masks[name]["kernel"])
    units = int((counts > 0).sum())
    ablated += 32 - units
    k_new = min(fan_in_size, 32 * FAN_IN[name] // units)
    np.testing.assert_array_equal(counts[counts > 0], k_new)
  assert ablated > 0
  assert np.asarray(a.mask_state["method"]["budget"]).tolist() == [320, 256]


def test_srigl_population_equals_separate_runs(tmp_path):
  config = _config("sparse_train", sparse__method="srigl", sparse__density=0.25)
  config.train.duration = "20it"  # updates at 5 and 10 (stop at 15)
  _, singles = _population_and_singles(tmp_path, run_sparse_train, config, seeds=(0, 1))
  for seed, single in singles.items():
    replica = json.loads(open(os.path.join(seed_dir(str(tmp_path / "population"), seed),
                                           "results.json")).read())
    assert [u["step"] for u in single["mask_updates"]] == [5, 10]
    assert replica["mask_updates"] == single["mask_updates"]
    assert replica["final_test_accuracy"] == single["final_test_accuracy"]


@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_fanin_start_masks_for_the_other_sparse_starts(tiny_config, method):
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", method
  tiny_config.sparse.distribution, tiny_config.sparse.density = "fanin", 0.25
  exp, _, _, state = _built(tiny_config)
  assert exp.prunable["output"]["kernel"]  # only SRigL keeps the output layer dense
  for name, k in {**FAN_IN, "output": 8}.items():  # output: round(0.25 * 32)
    assert fanin.constant_fan_in(state.masks[name]["kernel"], name) == k


@pytest.mark.parametrize("overrides, message", [
    ({"sparse.ablation_threshold": -0.1}, "sparse.ablation_threshold must lie in [0, 1]"),
    ({"sparse.ablation_threshold": 1.5}, "sparse.ablation_threshold must lie in [0, 1]"),
    ({"sparse.distribution": "erk"},
     "sparse.method='srigl' keeps a constant fan-in per output unit, so it starts from "
     "constant fan-in masks; got sparse.distribution='erk'; valid choices for srigl: auto, "
     "fanin"),
    ({"sparse.method": "rigl", "sparse.ablation_threshold": 0.3},
     "sparse.ablation_threshold > 0 ablates units in sparse.method='srigl' only"),
    ({"sparse.method": "gmp", "sparse.distribution": "fanin"},
     "sparse.method='gmp' starts dense; valid choices for gmp: auto, uniform, erk"),
    ({"sparse.method": "static", "sparse.distribution": "fanin",
      "masks.include": "^hidden_0/"},
     "prunable leaf hidden_0/bias has shape (32,): leave it out"),
    ({"topology.name": "radixnet", "topology.control": "random"},
     "is not constant fan-in: its output units keep"),
    ({"mode": "prune", "prune.distribution": "fanin"},
     "unknown prune.distribution 'fanin'; valid choices: none, uniform, erk"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_config, tmp_path, overrides, message):
  _srigl(tiny_config)
  for dotted, value in overrides.items():
    section, _, field = dotted.rpartition(".")
    (tiny_config[section] if section else tiny_config)[field] = value
  with pytest.raises(ConfigError) as error:
    lotto.run_job(tiny_config, str(tmp_path / "run"))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_srigl_from_erk_exits_2_with_one_line(tmp_path):
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'run'}",
                   "--config.mode=sparse_train", "--config.sparse.method=srigl",
                   "--config.sparse.distribution=erk")
  assert result.returncode == 2
  assert len(result.stderr.strip().splitlines()) == 1 and "valid choices for srigl" in \
      result.stderr
  assert not (tmp_path / "run").exists()
