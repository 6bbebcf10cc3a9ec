"""Pruning drivers, schedules, distributions, ablations, and the prune job."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto import masks as masks_lib
from lotto import pruning
from lotto.errors import ConfigError
from lotto.experiment import create_experiment
from lotto.models import create_model
from lotto.pai import run_prune
from lotto.scores import ScoringContext
from lotto.state import init_variables
from tests.test_cli import TEST_CONFIG, run_cli


@pytest.fixture(scope="module")
def lenet():
  model = create_model("lenet300", 10)
  params, _ = init_variables(model, jax.random.PRNGKey(0), (28, 28, 1))
  return model, params, masks_lib.select_prunable(params)


def test_exponential_schedule_hits_each_round_within_one_weight(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  d, n = 0.05, 4
  for k in range(1, n + 1):
    masks = pruning.prune("magnitude", ctx, params, masks_lib.ones_like(params), prunable,
                          d, jax.random.PRNGKey(0), iterations=k, schedule="exponential")
    # after k of the n rounds of an n-round schedule, the density is d ** (k / n)
    partial = pruning.density_schedule(d, n)[k - 1]
    single = pruning.prune("magnitude", ctx, params, masks_lib.ones_like(params), prunable,
                           partial, jax.random.PRNGKey(0))
    assert abs(masks_lib.count(single, prunable)[0] - partial * 266_200) <= 1
  assert masks_lib.count(masks, prunable)[0] == round(d * 266_200)
  np.testing.assert_allclose(pruning.density_schedule(0.01, 2), [0.1, 0.01])
  np.testing.assert_allclose(pruning.density_schedule(0.2, 4, "linear"), [0.8, 0.6, 0.4, 0.2])


def test_iterative_masks_are_monotone(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  previous = masks_lib.ones_like(params)
  for d in (0.5, 0.2, 0.05):
    masks = pruning.prune("synflow", ctx, params, previous, prunable, d, jax.random.PRNGKey(0),
                          iterations=3)
    for new, old in zip(jax.tree.leaves(masks), jax.tree.leaves(previous)):
      assert not bool(jnp.any(new & ~old))
    assert masks_lib.count(masks, prunable)[0] == round(d * 266_200)
    previous = masks


def test_shuffle_keeps_per_layer_counts_and_moves_positions(lenet):
  _, params, prunable = lenet
  masks = masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable,
                                 {"hidden_0/kernel": 0.1, "hidden_1/kernel": 0.3,
                                  "output/kernel": 0.9})
  shuffled = pruning.shuffle_within_layers(jax.random.PRNGKey(1), masks, prunable)
  assert masks_lib.layer_densities(shuffled, prunable) == masks_lib.layer_densities(masks, prunable)
  assert bool(jnp.any(shuffled["hidden_0"]["kernel"] != masks["hidden_0"]["kernel"]))
  glob = pruning.shuffle_globally(jax.random.PRNGKey(1), masks, prunable)
  assert masks_lib.count(glob, prunable) == masks_lib.count(masks, prunable)
  even = pruning.even_masks(jax.random.PRNGKey(1), masks, prunable)
  d = masks_lib.density(masks, prunable)
  for name, value in masks_lib.layer_densities(even, prunable).items():
    assert value == pytest.approx(d, abs=1e-3), name


def test_invert_keeps_the_lowest_scores_and_twice_is_identity(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  ones = masks_lib.ones_like(params)
  kept = pruning.prune("magnitude", ctx, params, ones, prunable, 0.1, jax.random.PRNGKey(0))
  inverted = pruning.prune("magnitude", ctx, params, ones, prunable, 0.1, jax.random.PRNGKey(0),
                           invert=True)
  w = np.abs(np.asarray(params["hidden_0"]["kernel"]))
  assert w[np.asarray(inverted["hidden_0"]["kernel"])].max() < w[np.asarray(
      kept["hidden_0"]["kernel"])].min()
  negated_twice = jax.tree.map(lambda s: -(-s), params)
  again = pruning.prune("magnitude", ctx, negated_twice, ones, prunable, 0.1,
                        jax.random.PRNGKey(0))
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(kept)):
    np.testing.assert_array_equal(a, b)


def test_erk_distribution_hits_target_and_caps_at_one():
  shapes = {"a": (784, 300), "b": (300, 100), "c": (100, 10)}
  dist = pruning.layer_distribution("erk", 0.1, shapes)
  total = sum(math.prod(s) for s in shapes.values())
  assert sum(dist[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.1 * total)
  assert dist["c"] == 1.0 and dist["a"] < dist["b"] < 1.0
  assert pruning.layer_distribution("uniform", 0.3, shapes) == {n: 0.3 for n in shapes}
  with pytest.raises(ConfigError, match="none, uniform, erk"):
    pruning.layer_distribution("snake", 0.3, shapes)


def test_effective_density_counts_dead_paths():
  masks = {"hidden_0": {"kernel": jnp.array(np.array([[1, 0, 1, 1]] * 3, bool))},
           "output": {"kernel": jnp.ones((4, 2), bool)}}
  prunable = {"hidden_0": {"kernel": True}, "output": {"kernel": True}}
  assert masks_lib.density(masks, prunable) == pytest.approx(17 / 20)
  # hidden unit 1 has no inputs: its 2 outgoing weights are effectively pruned
  assert pruning.effective_density(masks, prunable) == pytest.approx(15 / 20)


def test_prune_job_end_to_end(tiny_config, tmp_path):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "snip"
  tiny_config.prune.density = 0.2
  tiny_config.prune.ablation = "shuffle"
  results = run_prune(tiny_config, str(tmp_path))
  assert results["method"] == "snip" and results["ablation"] == "shuffle"
  assert results["achieved_density"] == pytest.approx(0.2, abs=1e-3)
  assert results["collapsed_layers"] == []
  assert 0 < results["effective_density"] <= results["achieved_density"]
  assert (tmp_path / "masks.npz").exists() and (tmp_path / "layer_report.txt").exists()
  again = run_prune(tiny_config, str(tmp_path))  # resumes: same mask, same numbers
  assert again["history"] == results["history"]


def test_prune_early_in_training_continues_schedule(tiny_config, tmp_path):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "magnitude"
  tiny_config.prune.density = 0.3
  tiny_config.prune.at_step = "20it"
  tiny_config.prune.ablation = "reinit"
  results = run_prune(tiny_config, str(tmp_path))
  assert results["at_step"] == 20 and results["steps"] == 40
  assert [h["step"] for h in results["history"]] == [30, 40]  # sparse run starts at k


def test_prune_cli_end_to_end_and_bad_values(tmp_path):
  workdir = tmp_path / "run"
  ok = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}", "--config.mode=prune",
               "--config.prune.method=synflow", "--config.prune.compression=1.5")
  assert ok.returncode == 0, ok.stderr[-2000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["target_density"] == pytest.approx(10 ** -1.5)
  assert results["iterations"] == 100
  for override, message in [
      ("--config.prune.method=snap", "unknown pruning method 'snap'; valid choices: grasp"),
      ("--config.prune.density=1.5", "prune.density must lie in (0, 1]"),
      ("--config.prune.density=0", "prune.density must lie in (0, 1]"),
      ("--config.prune.scope=local", "valid choices: global, layerwise"),
      ("--config.prune.ablation=flip", "valid choices: none, shuffle"),
      ("--config.prune.at_step=9000it", "is not before the end of training"),
  ]:
    bad = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'bad'}",
                  "--config.mode=prune", override)
    assert bad.returncode == 2, bad.stderr[-1000:]
    lines = [l for l in bad.stderr.splitlines() if l.startswith("lotto: error:")]
    assert len(lines) == 1 and message in lines[0], bad.stderr[-1000:]
    assert not (tmp_path / "bad").exists()


def test_effective_density_on_a_conv_chain_with_flatten():
  # conv_0: 1 -> 2 channels; output channel 1 has no surviving weight, so
  # conv_1's input channel 1 (9 weights per output channel) is dead too, and
  # the dense layer's features from conv_1's dead channel 0 (HWC flatten,
  # channel fastest) are dead.
  conv0 = np.ones((3, 3, 1, 2), bool)
  conv0[..., 1] = False
  conv1 = np.ones((3, 3, 2, 2), bool)
  conv1[..., 0] = False  # conv_1 output channel 0 pruned entirely
  dense = np.ones((4 * 2, 3), bool)  # 2x2 spatial x 2 channels, flattened
  masks = {"conv_0": {"kernel": jnp.asarray(conv0)}, "conv_1": {"kernel": jnp.asarray(conv1)},
           "output": {"kernel": jnp.asarray(dense)}}
  prunable = {k: {"kernel": True} for k in masks}
  total = conv0.size + conv1.size + dense.size
  alive = conv0.sum() + conv1.sum() + dense.sum()
  assert masks_lib.density(masks, prunable) == pytest.approx(alive / total)
  dead = 9 * 1 + 4 * 3  # conv_1 weights from dead input channel 1 to live output 1; dense rows
  assert pruning.effective_density(masks, prunable) == pytest.approx((alive - dead) / total)


def test_erk_distribution_through_the_prune_job(tiny_config, tmp_path):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "magnitude"
  tiny_config.prune.density = 0.2
  tiny_config.prune.distribution = "erk"
  results = run_prune(tiny_config, str(tmp_path))
  exp = create_experiment(tiny_config)
  shapes = pruning.layer_sizes(exp.params_shape, exp.prunable)
  expected = pruning.layer_distribution("erk", 0.2, shapes)
  for name, density in results["layer_densities"].items():
    size = int(np.prod(shapes[name]))
    assert abs(density * size - expected[name] * size) <= 1.0
  assert results["achieved_density"] == pytest.approx(0.2, abs=2e-3)


def test_dispatched_rounds_give_the_same_masks_as_the_compiled_loop(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  run = lambda loop: pruning.prune("synflow", ctx, params, masks_lib.ones_like(params),  # noqa
                                   prunable, 0.01, jax.random.PRNGKey(0), iterations=5, loop=loop)
  for a, b in zip(jax.tree.leaves(run("fori")), jax.tree.leaves(run("dispatch"))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ConfigError, match="unknown pruning loop 'while'; valid choices: auto, fori"):
    run("while")
