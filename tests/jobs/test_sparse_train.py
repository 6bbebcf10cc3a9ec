"""`sparse_train`: GMP against Zhu & Gupta's schedule, one-shot, DSD's phases, RigL/SET counts
and zeroed regrowth inside training, kill-and-resume, a sparse sweep on the command line, bad
input."""
import json

import jax
import numpy as np
import pytest

import lotto
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.sparse_train import build_sparse_run, initial_state
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import load_state
from lotto.train.trainer import Trainer
from tests.conftest import assert_no_moments_on_masked_weights
from tests.jobs.test_cli import TEST_CONFIG, run_cli
from tests.runtime.test_metrics import _scalars

SIZES = {"hidden_0/kernel": 40 * 32, "hidden_1/kernel": 32 * 32, "output/kernel": 32 * 10}


def _built(config):
  """(experiment, settings, mask update, the seed's initial state) of a sparse_train config."""
  exp, settings, update = build_sparse_run(config)
  return exp, settings, update, initial_state(exp, settings, update)


def _gmp(config, begin="10it", end="30it", density=0.2):
  config.mode, config.sparse.method = "sparse_train", "gmp"
  config.sparse.begin, config.sparse.end, config.sparse.update_every = begin, end, "5it"
  config.sparse.density = density
  return config


def test_gmp_follows_the_cubic_schedule_and_never_regrows(tiny_config, tmp_path):
  results = lotto.run_job(_gmp(tiny_config), str(tmp_path))
  updates = results["mask_updates"]
  assert [u["step"] for u in updates] == [10, 15, 20, 25, 30]
  alive_before = dict(SIZES)
  for update in updates:
    # Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3, s_i = 0, s_f = 0.8.
    sparsity = 0.8 + (0.0 - 0.8) * (1 - (update["step"] - 10) / 20) ** 3
    alive = {}
    for name, size in SIZES.items():
      alive[name] = round(update["layer_densities"][name] * size)
      # Exactly round(d_t * n) per layer (no d_t * n here lies near a half: at step 15, for
      # example, 688, 550.4 and 172).
      assert alive[name] == round((1 - sparsity) * size), (update["step"], name)
    # Only removals: the positions that flipped are exactly the survivors lost.
    removed = sum(alive_before[n] - alive[n] for n in SIZES)
    assert round(update["changed"] * sum(SIZES.values())) == removed
    alive_before = alive
  # round(0.2 * n) per layer at the end: 256 + 205 + 64 of 2624.
  assert results["density"] == (256 + 205 + 64) / 2624


def test_one_shot_gmp_prunes_exactly_once(tiny_config, tmp_path):
  results = lotto.run_job(_gmp(tiny_config, begin="20it", end="20it", density=0.3),
                          str(tmp_path))
  assert [u["step"] for u in results["mask_updates"]] == [20]
  assert results["mask_updates"][0]["layer_densities"] == {
      n: round(0.3 * s) / s for n, s in SIZES.items()}
  assert results["layer_densities"] == results["mask_updates"][0]["layer_densities"]


def test_gmp_by_threshold_prunes_small_weights(tiny_config, tmp_path):
  config = _gmp(tiny_config, begin="20it", end="20it")
  config.sparse.threshold = 0.05
  exp, _, method, state = _built(config)
  trainer = Trainer(exp, mask_update=method)
  before, _ = trainer.run_block(trainer.place(state), 20)
  before = jax.tree.map(np.asarray, before)
  after, _ = trainer.run_block(trainer.place(before), 1)
  after = jax.tree.map(np.asarray, after)
  kernel = after.masks["hidden_0"]["kernel"]
  assert 0 < kernel.mean() < 1
  # Survivors are the weights with |w| >= 0.05 after step 20's optimizer update: the update
  # ran at the end of that step, so their values are the ones it compared with the threshold.
  # (Which weights a threshold keeps and drops: tests/dynamic/test_gmp.py.)
  for name in ("hidden_0", "hidden_1", "output"):
    mask = after.masks[name]["kernel"]
    assert (np.abs(after.params[name]["kernel"][mask]) >= 0.05).all(), name
    assert (after.params[name]["kernel"][~mask] == 0).all(), name


def test_dsd_phases(tiny_config, tmp_path):
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", "dsd"
  tiny_config.sparse.density = 0.25
  tiny_config.train.save_at = ("27it",)  # the first state of the last dense phase
  results = lotto.run_job(tiny_config, str(tmp_path))
  assert [p["phase"] for p in results["phases"]] == ["dense", "sparse", "dense_again"]
  assert [p["step"] for p in results["phases"]] == [13, 26, 40]  # thirds of 40 steps
  assert [u["step"] for u in results["mask_updates"]] == [13, 26]
  exp, _, _, like = _built(tiny_config)
  sparse = jax.tree.map(np.asarray, load_state(str(tmp_path), 26, like))
  assert results["phases"][1]["density"] == masks_lib.density(sparse.masks, exp.prunable)
  for p, m in zip(jax.tree.leaves(sparse.params), jax.tree.leaves(sparse.masks)):
    assert not p[~m].any()  # the sparse phase's pruned weights are 0
  dense = jax.tree.map(np.asarray, load_state(str(tmp_path), 27, like))
  for name in ("hidden_0", "hidden_1", "output"):
    assert dense.masks[name]["kernel"].all()  # all True again
    pruned = ~sparse.masks[name]["kernel"]
    assert pruned.sum() == round(0.75 * SIZES[f"{name}/kernel"])
    np.testing.assert_array_equal(dense.params[name]["kernel"][pruned], 0.0)  # restart at 0
  # The last phase runs at 0.1x the LR.
  assert exp.schedule(26) == pytest.approx(5e-3) and exp.schedule(27) == pytest.approx(5e-4)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_regrowth_keeps_counts_and_starts_grown_weights_and_moments_at_zero(tiny_config,
                                                                          method):
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", method
  tiny_config.sparse.update_every, tiny_config.sparse.stop = "5it", "20it"
  tiny_config.train.loop = "step"  # one compiled step for blocks of any length
  exp, _, update, state = _built(tiny_config)
  assert update.due_steps == (5, 10, 15)
  trainer = Trainer(exp, mask_update=update)
  state = jax.tree.map(np.asarray, state)
  start_counts = masks_lib.layer_report(state.masks, exp.prunable)
  for target in (5, 10, 15):
    state, _ = trainer.run_block(trainer.place(state), target - int(state.step))
    before = jax.tree.map(np.asarray, state)
    state, _ = trainer.run_block(trainer.place(before), 1)  # the update runs in this step
    after = jax.tree.map(np.asarray, state)
    assert masks_lib.layer_report(after.masks, exp.prunable) == start_counts
    grown_any = False
    for name in ("hidden_0", "hidden_1", "output"):
      old, new = before.masks[name]["kernel"], after.masks[name]["kernel"]
      grown = new & ~old
      grown_any |= bool(grown.any())
      np.testing.assert_array_equal(after.params[name]["kernel"][grown], 0.0)
    assert grown_any
    assert_no_moments_on_masked_weights(after.opt_state, after.masks, expected_trees=2)
    for path, leaf in jax.tree_util.tree_flatten_with_path(after.opt_state)[0]:
      name = masks_lib.key_path_name(path[-2:])
      if name == "hidden_0/kernel":  # Adam's mu and nu of the grown weights: exactly 0
        grown = after.masks["hidden_0"]["kernel"] & ~before.masks["hidden_0"]["kernel"]
        np.testing.assert_array_equal(leaf[grown], 0.0)
  # No update from stop on.
  frozen = jax.tree.map(np.asarray, state.masks)
  state, _ = trainer.run_block(trainer.place(state), 40 - int(state.step))
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(state.masks)):
    np.testing.assert_array_equal(a, np.asarray(b))
  log = jax.device_get(state.mask_state["log"])
  assert log["step"].tolist() == [5, 10, 15]


class _Killed(Exception):
  pass


@pytest.mark.parametrize("method", ["rigl", "gmp"])
def test_kill_between_mask_updates_and_resume_is_bit_identical(tiny_config, tmp_path, method):
  config = _gmp(tiny_config) if method == "gmp" else tiny_config
  config.mode, config.sparse.method, config.sparse.update_every = "sparse_train", method, "5it"
  straight = lotto.run_job(config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  from lotto.jobs.sparse_train import run_sparse_train  # the hooks argument
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


@pytest.mark.slow
def test_cli_runs_a_static_and_a_dynamic_method_in_a_sparse_sweep(tmp_path):
  # gmp, dsd and set run through the same sweep code; their jobs are tested above.
  workdir = tmp_path / "sweep"
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}",
                   "--config.mode=sparse_sweep", "--config.sweep.methods=('static','rigl')",
                   "--config.sweep.densities=(0.2,)", "--config.sparse.update_every=5it")
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((workdir / "results.json").read_text())
  cells = {c["method"]: c for c in summary["cells"]}
  assert sorted(cells) == ["rigl", "static"]
  for method in ("static", "rigl"):
    assert cells[method]["density"] == pytest.approx(0.2, abs=0.002)
  assert len(cells["static"]["mask_updates"]) == 0
  assert [u["step"] for u in cells["rigl"]["mask_updates"]] == [5, 10, 15, 20, 25]
  assert (workdir / "sparse_train_accuracy.png").exists()
  # TensorBoard: the number of updates so far and the latest one's flipped fraction.
  scalars = _scalars(workdir / "cells" / "rigl_d0.2_s0")
  assert scalars["mask_updates"][-1] == (40, 5.0)
  assert scalars["mask_changed"][-1][1] == pytest.approx(cells["rigl"]["mask_updates"][-1]["changed"])
  assert scalars["mask_updates"][0] == (10, 1.0)  # the update at step 5 is the first


@pytest.mark.parametrize("field, value, message", [
    ("method", "lottery", "unknown sparse.method 'lottery'; valid choices: static, gmp, dsd, "
                          "set, rigl, srigl"),
    ("density", 0.0, "sparse.density must lie in (0, 1]"),
    ("density", 1.5, "sparse.density must lie in (0, 1]"),
    ("update_every", "0it", "sparse.update_every must be between 1 step and the training length"),
    ("update_every", "41it", "sparse.update_every must be between 1 step and the training length"),
    ("drop_fraction", 1.0, "sparse.drop_fraction must lie in (0, 1)"),
    ("drop_fraction", 0, "sparse.drop_fraction must lie in (0, 1)"),
    ("stop", "50it", "sparse.stop (50 steps) is after the end of training (40 steps)"),
    ("stop", "5it", "no mask update would run: the first multiple of sparse.update_every (5 "
                    "steps) from sparse.begin (0) on is not before sparse.stop (5 steps)"),
    ("drop_schedule", "linear", "unknown sparse.drop_schedule 'linear'; valid choices: cosine, "
                                "constant"),
])
def test_bad_sparse_settings_are_one_line_errors(tiny_config, tmp_path, field, value, message):
  tiny_config.mode = "sparse_train"
  tiny_config.sparse[field] = value
  with pytest.raises(ConfigError) as error:
    lotto.run_job(tiny_config, str(tmp_path / "run"))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    (("--config.sparse.method=gmp", "--config.sparse.begin=30it", "--config.sparse.end=20it"),
     "sparse.begin (30 steps) is after sparse.end (20 steps)"),
    (("--config.sparse.method=gmp", "--config.sparse.end=40it"),
     "sparse.end (40 steps) must be before the end of training (40 steps)"),
    (("--config.sparse.method=dsd", "--config.dsd.phases=('10it','10it','10it')"),
     "must be positive and add up to train.duration (40 steps)"),
])
def test_cli_bad_schedules_exit_2_and_write_nothing(tmp_path, overrides, message):
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'run'}",
                   "--config.mode=sparse_train", *overrides)
  assert result.returncode == 2
  assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
  assert not (tmp_path / "run").exists()


def test_gmp_with_the_obd_criterion_and_obd_at_init(tiny_config, tmp_path):
  config = _gmp(tiny_config, begin="20it", end="20it", density=0.3)
  config.sparse.criterion, config.sparse.obd_probes = "obd", 4
  results = lotto.run_job(config, str(tmp_path / "gmp"))
  assert results["layer_densities"] == {n: round(0.3 * s) / s for n, s in SIZES.items()}
  tiny_config.mode, tiny_config.prune.method, tiny_config.prune.density = "prune", "obd", 0.1
  pruned = lotto.run_job(tiny_config, str(tmp_path / "prune"))
  assert pruned["method"] == "obd"
  assert round(pruned["density"] * sum(SIZES.values())) == round(0.1 * sum(SIZES.values()))


def test_a_topology_is_the_start_mask_of_static_and_rigl_and_refused_by_gmp(tiny_config,
                                                                            tmp_path):
  tiny_config.mode, tiny_config.topology.name = "sparse_train", "radixnet"  # fitted: [[4, 8]]
  tiny_config.sparse.method = "static"
  static = lotto.run_job(tiny_config, str(tmp_path / "static"))
  exp, _, _, start = _built(tiny_config)
  final = load_state(str(tmp_path / "static"), 40, start)
  for a, b in zip(jax.tree.leaves(start.masks), jax.tree.leaves(final.masks)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the RadiX-Net, unchanged
  assert static["layer_densities"]["output/kernel"] == 1.0  # the output layer stays dense
  assert static["target_density"] == static["density"]  # the topology's, not sparse.density
  tiny_config.sparse.method = "rigl"
  _, _, _, rigl_start = _built(tiny_config)
  for a, b in zip(jax.tree.leaves(start.masks), jax.tree.leaves(rigl_start.masks)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # RigL starts from it too
  tiny_config.sparse.method = "gmp"
  with pytest.raises(ConfigError, match="starts dense; a topology is the start mask"):
    lotto.run_job(tiny_config, str(tmp_path / "gmp"))
  assert not (tmp_path / "gmp").exists()


def test_a_dynamic_run_equals_the_static_run_until_its_first_mask_change(tiny_config, tmp_path):
  tiny_config.mode, tiny_config.sparse.density = "sparse_train", 1.0
  tiny_config.model.widths, tiny_config.train.duration = (128, 128), "60it"
  tiny_config.train.eval_every = tiny_config.train.checkpoint_every = "5it"
  dense = lotto.run_job(tiny_config, str(tmp_path / "dense"))  # static, all True
  tiny_config.sparse.method, tiny_config.sparse.density = "dsd", 0.5  # masks change at 20, 40
  dsd = lotto.run_job(tiny_config, str(tmp_path / "dsd"))
  # A block starts every 5 steps, so the seam's untaken cond ran 4 times before step 20.
  before = [h for h in dense["history"] if h["step"] <= 20]
  assert len(before) == 4
  assert before == [h for h in dsd["history"] if h["step"] <= 20]  # bit for bit, step 20 too
  assert dense["history"][-1] != dsd["history"][-1]
