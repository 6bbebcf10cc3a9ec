"""Branch semantics over an IMP level, and the instability analysis."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.jobs import branches as branches_lib
from lotto.core import masks as masks_lib
from lotto.jobs import stability
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.core.rng import purpose_key
from lotto.train.loop import train_run
from lotto.train.trainer import Trainer
from tests.conftest import load_config


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def level_inputs():
  config = load_config("test")
  exp = create_experiment(config)
  theta_0 = exp.init_state()
  # Stand-ins for trained states: perturbed copies of theta_0 at steps k and T.
  noise = lambda i: jax.tree.map(  # noqa: E731
      lambda p: p + 0.1 * jax.random.normal(purpose_key(i, "noise"), p.shape), theta_0.params)
  theta_k = theta_0.replace(params=noise(1), step=jnp.asarray(10, jnp.int32))
  theta_T = theta_0.replace(params=noise(2), step=jnp.asarray(40, jnp.int32))
  previous_final = noise(3)
  ones = masks_lib.ones_like(theta_0.params)
  scores = jax.tree.map(jnp.abs, previous_final)
  from lotto.core import selection  # pylint: disable=import-outside-toplevel
  masks = selection.prune_to_density(scores, ones, exp.prunable, 0.5)
  return branches_lib.LevelInputs(
      exp=exp, level=1, masks=masks, previous_masks=ones, previous_final=previous_final,
      theta_0=theta_0, theta_k=theta_k, theta_T=theta_T, target=0.5, scope="global")


def _layer_counts(masks, prunable):
  return {r["name"]: r["surviving"] for r in masks_lib.layer_report(masks, prunable)}


def test_reinit_keeps_mask_and_changes_surviving_values(level_inputs):
  state = branches_lib.BRANCHES.get("reinit")(level_inputs)
  for got, want in zip(_leaves(state.masks), _leaves(level_inputs.masks)):
    np.testing.assert_array_equal(got, want)
  assert int(state.step) == 10
  kernel = np.asarray(state.params["hidden_0"]["kernel"])
  mask = np.asarray(level_inputs.masks["hidden_0"]["kernel"])
  ticket = np.asarray(level_inputs.theta_k.params["hidden_0"]["kernel"])
  assert np.all(kernel[~mask] == 0)
  assert not np.any(kernel[mask] == ticket[mask])


def test_shuffle_keeps_per_layer_counts_and_moves_positions(level_inputs):
  state = branches_lib.BRANCHES.get("shuffle")(level_inputs)
  prunable = level_inputs.exp.prunable
  assert _layer_counts(state.masks, prunable) == _layer_counts(level_inputs.masks, prunable)
  moved = np.asarray(state.masks["hidden_0"]["kernel"]) != np.asarray(
      level_inputs.masks["hidden_0"]["kernel"])
  assert moved.mean() > 0.2
  np.testing.assert_array_equal(  # rewound to theta_k under the new mask
      np.asarray(state.params["hidden_0"]["kernel"]),
      np.asarray(level_inputs.theta_k.params["hidden_0"]["kernel"]) *
      np.asarray(state.masks["hidden_0"]["kernel"]))


def test_random_matches_per_layer_densities(level_inputs):
  state = branches_lib.BRANCHES.get("random")(level_inputs)
  prunable = level_inputs.exp.prunable
  assert masks_lib.layer_densities(state.masks, prunable) == masks_lib.layer_densities(
      level_inputs.masks, prunable)
  assert not np.array_equal(np.asarray(state.masks["hidden_0"]["kernel"]),
                            np.asarray(level_inputs.masks["hidden_0"]["kernel"]))


def test_invert_keeps_the_smallest_magnitudes(level_inputs):
  state = branches_lib.BRANCHES.get("invert")(level_inputs)
  prunable = level_inputs.exp.prunable
  kept, dropped = [], []
  for m, p, f in zip(_leaves(state.masks), _leaves(level_inputs.previous_final),
                     jax.tree.leaves(prunable)):
    if f:
      kept.append(np.abs(p[m]))
      dropped.append(np.abs(p[~m]))
  assert np.concatenate(kept).max() <= np.concatenate(dropped).min()
  # Both masks keep round(0.5 * 2624) = 1312 of the 40*32 + 32*32 + 32*10 weights, from
  # all-ones, by opposite orders of the same (tie-free) scores: the invert mask is exactly
  # the complement of the ticket on every prunable layer (overlap 0, union everything).
  assert masks_lib.count(state.masks, prunable) == (1312, 2624)
  for a, b, f in zip(_leaves(state.masks), _leaves(level_inputs.masks),
                     jax.tree.leaves(prunable)):
    if f:
      np.testing.assert_array_equal(a, ~b)


@pytest.mark.parametrize("point, source, step", [("init", "theta_0", 0), ("rewind", "theta_k", 10),
                                                 ("final", "theta_T", 10)])
def test_start_point(level_inputs, point, source, step):
  import dataclasses  # pylint: disable=import-outside-toplevel
  inputs = dataclasses.replace(level_inputs, start_point=point)
  state = branches_lib.BRANCHES.get("start")(inputs)
  want = masks_lib.apply(getattr(inputs, source).params, inputs.masks)
  for got, expect in zip(_leaves(state.params), _leaves(want)):
    np.testing.assert_array_equal(got, expect)
  assert int(state.step) == step


def _kept_and_dropped(masks, params, prunable):
  """|params| of the surviving and of the pruned prunable weights, each concatenated."""
  pairs = [(np.abs(p[m]), np.abs(p[~m])) for m, p, f in
           zip(_leaves(masks), _leaves(params), jax.tree.leaves(prunable)) if f]
  return np.concatenate([k for k, _ in pairs]), np.concatenate([d for _, d in pairs])


def test_invert_after_training_keeps_the_smallest_dense_magnitudes(level_inputs):
  state = branches_lib.BRANCHES.get("invert_after_training")(level_inputs)
  prunable = level_inputs.exp.prunable
  kept, dropped = _kept_and_dropped(state.masks, level_inputs.theta_T.params, prunable)
  assert kept.max() <= dropped.min()
  assert kept.size == round(0.5 * (kept.size + dropped.size))  # the level's density, exactly
  want = masks_lib.apply(level_inputs.theta_k.params, state.masks)
  for got, expect in zip(_leaves(state.params), _leaves(want)):
    np.testing.assert_array_equal(got, expect)
  # At density 0.5 (global, no ties) it is exactly the complement of one-shot magnitude
  # pruning after training: the inversion Missing the Mark uses.
  magnitude = branches_lib.magnitude_after_training_masks(level_inputs)
  for a, b, f in zip(_leaves(state.masks), _leaves(magnitude), jax.tree.leaves(prunable)):
    if f:
      np.testing.assert_array_equal(a, ~b)


@pytest.mark.parametrize("origin, source", [("final", "theta_T"), ("rewind", "theta_k")])
def test_magnitude_after_training(level_inputs, origin, source):
  import dataclasses  # pylint: disable=import-outside-toplevel
  inputs = dataclasses.replace(level_inputs, mat_from=origin)
  state = branches_lib.BRANCHES.get("magnitude_after_training")(inputs)
  kept, dropped = _kept_and_dropped(state.masks, inputs.theta_T.params, inputs.exp.prunable)
  assert kept.min() >= dropped.max()
  want = masks_lib.apply(getattr(inputs, source).params, state.masks)
  for got, expect in zip(_leaves(state.params), _leaves(want)):
    np.testing.assert_array_equal(got, expect)
  assert int(state.step) == 10


# ----------------------------------------------------------------------------
# Instability

@pytest.fixture(scope="module")
def trainer():
  return Trainer(create_experiment(load_config("test")))


def test_identical_copies_have_zero_instability(trainer, tmp_path):
  start = trainer.experiment.init_state()
  a, _ = train_run(trainer, str(tmp_path / "a"), start)
  b, _ = train_run(trainer, str(tmp_path / "b"), start)
  alphas, errors = stability.interpolation_errors(trainer, a, b, 11)
  assert len(alphas) == 11 and alphas[0] == 0.0 and alphas[-1] == 1.0
  assert stability.instability(errors) == 0.0
  assert len(set(errors)) == 1


def test_endpoints_reproduce_each_models_own_error(trainer, tmp_path):
  start = trainer.experiment.init_state()
  a, _ = train_run(trainer, str(tmp_path / "a"), start)
  start_b, data_seed = stability.second_copy(start, trainer.experiment.seed)
  assert data_seed != trainer.experiment.seed
  b, _ = train_run(trainer, str(tmp_path / "b"), start_b, data_seed=data_seed)
  assert not np.array_equal(_leaves(a.params)[1], _leaves(b.params)[1])
  _, errors = stability.interpolation_errors(trainer, a, b, 5)
  assert errors[0] == pytest.approx(1 - trainer.evaluate(a, "test")[0]["accuracy"], abs=0)
  assert errors[-1] == pytest.approx(1 - trainer.evaluate(b, "test")[0]["accuracy"], abs=0)


@pytest.mark.parametrize("errors, expected", [
    ([0.1, 0.3, 0.5, 0.2], 0.35),   # a barrier: max 0.5 above the endpoints' mean 0.15
    ([0.3, 0.2, 0.1], 0.1),         # no barrier: the max is an endpoint
    ([0.25, 0.25, 0.25], 0.0),      # flat path
    ([0.2, 0.9, 0.2], 0.7),
])
def test_instability_on_written_out_paths(errors, expected):
  assert stability.instability(errors) == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
def test_stability_job_end_to_end(tmp_path):
  workdir = tmp_path / "stab"
  config = load_config("test")
  config.mode = "stability"
  config.stability.rewind_steps = ("0it", "10it")
  config.stability.levels = 1
  config.stability.points = 5
  returned = stability.run_stability(config, str(workdir))
  results = json.loads((workdir / "results.json").read_text())
  assert results == json.loads(json.dumps(returned))
  # Re-run on the finished workdir, one point's file garbled: that point is recomputed from
  # its checkpoints, every other one read back, and the file is identical.
  (workdir / "k_10" / "results.json").write_text('{"rewind_step": 10, "dense": {')
  again = stability.run_stability(config, str(workdir))
  assert json.loads((workdir / "results.json").read_text()) == results
  assert json.loads(json.dumps(again)) == results
  assert [r["rewind_step"] for r in results["rewind"]] == [0, 10]
  for record in results["rewind"]:
    for kind in ("dense", "sparse"):
      assert len(record[kind]["errors"]) == 5
      assert record[kind]["endpoint_errors"] == [record[kind]["errors"][0],
                                                 record[kind]["errors"][-1]]
    assert record["ticket_density"] == pytest.approx(0.8, abs=1e-3)
    # The sparse path starts at the ticket itself: its alpha = 0 error is the ticket's.
    assert record["sparse"]["errors"][0] == pytest.approx(1 - record["ticket_accuracy"], abs=1e-12)
    assert record["sparse"]["density"] == record["ticket_density"]
  assert (workdir / "stability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stability_rejects_rewind_beyond_training():
  config = load_config("test")
  config.mode = "stability"
  config.stability.rewind_steps = ("0it", "40it")
  exp = create_experiment(config)
  with pytest.raises(ConfigError, match="stability.rewind_steps entry '40it'"):
    stability.stability_settings_from_config(config, exp)
