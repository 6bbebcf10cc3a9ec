"""IMP with rewinding: densities, rewound states, resume, the CLI and its errors."""
import json
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lotto

from lotto import data as data_lib
from lotto.jobs import imp as imp_lib
from lotto.core import masks as masks_lib
from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.models import create_model
from lotto.models import init_variables
from lotto.data.inputs import InputSpec
from lotto.train.hooks import EveryHook
from lotto.train.loop import load_state
from lotto.train.step import make_train_step
from lotto.train.trainer import Trainer
from tests.conftest import load_config
from tests.jobs.test_cli import TEST_CONFIG, run_cli

LENET_ORACLE = [100, 80, 64.1, 51.3, 41.1, 32.9, 26.3, 21.1, 16.9, 13.5, 10.8, 8.7, 7.0, 5.6,
                4.5, 3.6, 2.9, 2.3, 1.9]


def _fake_experiment(model_name, input_shape, total_steps=1000, **model_options):
  model = create_model(model_name, 10, "torch", **model_options)
  params_shape, _ = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0),
                                                          input_shape))
  return types.SimpleNamespace(params_shape=params_shape, total_steps=total_steps,
                               duration=lambda text, what: parse_duration(text, 10, what),
                               model=model, input_shape=input_shape)


def _random_params(exp, key):
  leaves, treedef = jax.tree.flatten(exp.params_shape)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


def _imp_levels(exp, settings, levels, seed=0):
  """Masks of `levels` IMP levels, each pruned by the magnitudes of fresh random weights."""
  masks = masks_lib.ones_like(exp.params_shape)
  out = [masks]
  for level in range(1, levels + 1):
    final = masks_lib.apply(_random_params(exp, jax.random.PRNGKey(seed + level)), masks)
    masks = imp_lib.prune_level(final, masks, settings.prunable, settings.target(level),
                                settings.scope, settings.open_lth_fraction())
    out.append(masks)
  return out


def test_global_density_after_l_levels_is_round_of_the_target_count():
  config = load_config("test")
  config.imp.fraction, config.imp.scope = 0.2, "global"
  exp = _fake_experiment("mlp", (40,), widths=(64, 48))
  settings = imp_lib.imp_settings_from_config(config, exp)
  levels = _imp_levels(exp, settings, 8)
  # 40*64 + 64*48 + 48*10 = 6112 weights; level L keeps round(0.8**L * 6112): 4889.6,
  # 3911.68, 3129.34, 2503.48, 2002.78, 1602.22, 1281.78, 1025.42 rounded.
  expected = [6112, 4890, 3912, 3129, 2503, 2003, 1602, 1282, 1025]
  assert [masks_lib.count(m, settings.prunable) for m in levels] == [
      (kept, 6112) for kept in expected]
  for previous, masks in zip(levels, levels[1:]):  # monotone: level L's survivors survived L - 1
    for new, old in zip(jax.tree.leaves(masks), jax.tree.leaves(previous)):
      assert not np.any(np.asarray(new) & ~np.asarray(old))


def test_open_lth_compat_counts_follow_open_lth_level_after_level():
  config = load_config("test")
  config.imp.fraction, config.imp.scope, config.imp.open_lth_compat = 0.2, "global", True
  exp = _fake_experiment("lenet300", (784,))
  settings = imp_lib.imp_settings_from_config(config, exp)
  kept = [masks_lib.count(m, settings.prunable)[0] for m in _imp_levels(exp, settings, 20)]
  # A_L = A_{L-1} - ceil(0.2 A_{L-1}) - 1, open_lth's LeNet-300-100 sequence (README: Conventions).
  assert kept[:5] == [266_200, 212_959, 170_366, 136_291, 109_031]
  assert kept[20] == 3_062


def test_lenet300_layerwise_20_20_10_matches_the_published_sequence():
  config = load_config("test")
  config.imp.scope, config.imp.fraction = "layerwise", 0.2
  config.imp.layer_fractions = (("^output/", 0.1),)
  exp = _fake_experiment("lenet300", (784,))
  settings = imp_lib.imp_settings_from_config(config, exp)
  assert settings.fractions == {"hidden_0/kernel": 0.2, "hidden_1/kernel": 0.2,
                                "output/kernel": 0.1}
  levels = _imp_levels(exp, settings, len(LENET_ORACLE) - 1)
  assert masks_lib.count(levels[0], settings.prunable)[1] == 266_200
  measured = [round(100 * masks_lib.density(m, settings.prunable), 1) for m in levels]
  assert measured == LENET_ORACLE


def test_exclude_keeps_a_layer_dense():
  config = load_config("test")
  config.imp.exclude = "^output/"
  exp = _fake_experiment("mlp", (40,), widths=(64, 48))
  settings = imp_lib.imp_settings_from_config(config, exp)
  masks = _imp_levels(exp, settings, 3)[-1]
  assert bool(np.all(np.asarray(masks["output"]["kernel"])))
  # The hidden layers only: round(0.8**3 * (40*64 + 64*48)) = round(2883.58) of 5632.
  assert masks_lib.count(masks, settings.prunable) == (2884, 5632)


@pytest.mark.parametrize("field, value, message", [
    ("rewind", "ten", "imp.rewind: cannot parse duration 'ten'"),
    ("rewind", "5000it", "imp.rewind='5000it' (5000 steps) is not before the end of training"),
    ("fraction", 1.5, "imp.fraction must lie in (0, 1)"),
    ("scope", "local", "unknown scope 'local'; valid choices: global, layerwise"),
    ("branches", ("reinit", "shufle"), "unknown branch 'shufle'; valid choices: invert"),
    ("layer_fractions", (("^output/", 0.1),), "imp.layer_fractions needs imp.scope='layerwise'"),
    ("exclude", "(", "imp.exclude: bad regex"),
    ("branch_levels", (3,), "imp.branch_levels entries must lie in 1..2"),
])
def test_bad_imp_settings_raise_one_line_errors(field, value, message):
  config = load_config("test")
  config.imp.levels = 2
  config.imp[field] = value
  exp = _fake_experiment("mlp", (40,), total_steps=1000, widths=(8,))
  with pytest.raises(ConfigError) as info:
    imp_lib.imp_settings_from_config(config, exp)
  assert message in str(info.value) and "\n" not in str(info.value)


def _imp_config(levels=2, **imp):
  config = load_config("test")
  config.mode = "imp"
  config.imp.levels = levels
  config.imp.rewind = "10it"
  for key, value in imp.items():
    config.imp[key] = value
  return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("imp") / "run")
  results = imp_lib.run_imp(_imp_config(), workdir)
  return workdir, results


def _metrics(results):
  drop = {"wall_time_s", "history"}
  return [{k: v for k, v in level.items() if k not in drop} for level in results["levels"]]


def _final_params(workdir, like, level):
  return load_state(imp_lib.level_dir(workdir, level), 40, like).params


def test_rewound_level_starts_at_theta_k_times_mask_with_fresh_optimizer(tmp_path, monkeypatch):
  config = _imp_config(levels=2)
  config.optimizer.name, config.schedule.name = "sgd", "step"
  config.schedule.drops = ("5it",)  # schedule(0) = 5e-3, schedule(10) = 5e-4
  config.optimizer.learning_rate = 5e-3
  starts = []
  real_train_replicas = imp_lib.train_replicas

  def recording_train_replicas(trainer, directories, initial_states, **kwargs):
    starts.append((directories[0], jax.tree.map(np.asarray, initial_states[0])))
    return real_train_replicas(trainer, directories, initial_states, **kwargs)

  monkeypatch.setattr(imp_lib, "train_replicas", recording_train_replicas)
  run_dir = str(tmp_path / "sgd")
  imp_lib.run_imp(config, run_dir)
  exp = create_experiment(config)
  theta_k = load_state(imp_lib.level_dir(run_dir, 0), 10, exp.init_state())
  assert int(theta_k.step) == 10
  trainer = Trainer(exp)
  previous_mask = masks_lib.ones_like(theta_k.params)
  for level in (1, 2):
    directory, initial = starts[level]
    assert directory.endswith(f"level_{level}")
    mask = masks_lib.load(os.path.join(directory, "masks.npz"), theta_k.masks)
    for new, old in zip(jax.tree.leaves(mask), jax.tree.leaves(previous_mask)):
      assert not np.any(np.asarray(new) & ~np.asarray(old))  # monotone
    previous_mask = mask
    expected = masks_lib.apply(theta_k.params, mask)
    for got, want in zip(jax.tree.leaves(initial.params), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(got, np.asarray(want))
    assert int(initial.step) == 10
    fresh = exp.tx.init(initial.params)
    for got, want in zip(jax.tree.leaves(initial.opt_state), jax.tree.leaves(fresh)):
      np.testing.assert_array_equal(got, np.asarray(want))
    # The first update of the level uses LR = schedule(k), not schedule(0).
    assert float(exp.schedule(10)) == pytest.approx(5e-4)
    after, _ = trainer.run_block(trainer.place(jax.tree.map(jnp.asarray, initial)), 1)
    lr_k = float(exp.schedule(10))
    manual = jax.jit(make_train_step(exp.model.apply, exp.tx, lambda step: lr_k,
                                     InputSpec.of(exp.dataset)))
    index = data_lib.batch_indices(exp.seed, len(exp.dataset.x_train), exp.batch_size, 10, 1)[0]
    want, _ = manual(jax.tree.map(jnp.asarray, initial), jnp.asarray(exp.dataset.x_train[index]),
                     jnp.asarray(exp.dataset.y_train[index]))
    for got, expect in zip(jax.tree.leaves(after.params), jax.tree.leaves(want.params)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(expect), rtol=1e-6, atol=1e-7)


class Crash(Exception):
  pass


def _crash_after(predicate):
  """A hook at every 10th step that raises when `predicate(step)` holds."""
  def crash(step, state):
    if predicate(step):
      raise Crash
  return EveryHook(crash, 10)


@pytest.mark.parametrize("where", ["level_boundary", "mid_level"])
def test_kill_and_resume_matches_uninterrupted(uninterrupted, tmp_path, where):
  reference_dir, reference = uninterrupted
  workdir = str(tmp_path / where)
  blocks = {"n": 0}

  def predicate(step):
    blocks["n"] += 1
    # The dense level has 4 blocks (10, 20, 30, 40), each sparse level 3 (20, 30, 40).
    # Hooks run before a step's checkpoint: the 8th block is level 2's first (nothing of
    # level 2 trained is saved), the 9th level 2's step 30 (its step-20 checkpoint exists).
    return (where == "level_boundary" and blocks["n"] == 8 and step == 20) or (
        where == "mid_level" and blocks["n"] == 9 and step == 30)

  with pytest.raises(Crash):
    imp_lib.run_imp(_imp_config(), workdir, hooks=[_crash_after(predicate)])
  assert not os.path.exists(os.path.join(imp_lib.level_dir(workdir, 2), "results.json"))
  resumed = imp_lib.run_imp(_imp_config(), workdir)
  assert _metrics(resumed) == _metrics(reference)
  like = create_experiment(_imp_config()).init_state()
  for got, want in zip(jax.tree.leaves(_final_params(workdir, like, 2)),
                       jax.tree.leaves(_final_params(reference_dir, like, 2))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_finished_run_is_skipped(uninterrupted):
  workdir, reference = uninterrupted
  mtime = os.path.getmtime(os.path.join(imp_lib.level_dir(workdir, 1), "results.json"))
  again = imp_lib.run_imp(_imp_config(), workdir)
  assert _metrics(again) == _metrics(reference)
  assert os.path.getmtime(os.path.join(imp_lib.level_dir(workdir, 1), "results.json")) == mtime


@pytest.mark.slow
def test_imp_cli_end_to_end_writes_results_and_plots(tmp_path):
  workdir = tmp_path / "cli"
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}", "--config.mode=imp",
                   "--config.imp.levels=2", "--config.imp.rewind=10it",
                   "--config.imp.branches=('reinit','random')", "--config.train.verbose=1")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "IMP: final test accuracy" in result.stdout and "reinit" in result.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["complete"] and [l["level"] for l in results["levels"]] == [0, 1, 2]
  assert [l["density"] for l in results["levels"]] == pytest.approx([1.0, 0.8, 0.64], abs=1e-3)
  assert sorted((b["branch"], b["level"]) for b in results["branches"]) == [
      ("random", 1), ("random", 2), ("reinit", 1), ("reinit", 2)]
  for name in ("imp_accuracy.png", "imp_early_stop.png"):
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  for level in (1, 2):
    assert (workdir / f"level_{level}" / "masks.npz").exists()
    assert "hidden_0/kernel" in (workdir / f"level_{level}" / "layer_report.txt").read_text()
  (workdir / "imp_report.txt").unlink()
  assert "IMP: final test accuracy" in lotto.write_report(str(workdir))  # regenerated from files
  assert (workdir / "imp_report.txt").read_text().startswith("IMP: final test accuracy")


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ("--config.imp.rewind=early", "imp.rewind: cannot parse duration 'early'"),
    ("--config.imp.rewind=50it", "imp.rewind='50it' (50 steps) is not before the end of training"),
])
def test_imp_cli_bad_rewind_one_line_error(tmp_path, override, message):
  workdir = tmp_path / "bad"
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}", "--config.mode=imp",
                   override)
  assert result.returncode == 2
  lines = [l for l in result.stderr.splitlines() if l.startswith("lotto: error:")]
  assert len(lines) == 1 and message in lines[0], result.stderr[-1500:]
  assert not workdir.exists()


@pytest.mark.parametrize("name, model, input_shape, steps_per_epoch, scope, rewind", [
    ("mnist1d_mlp", "mlp", (40,), 35, "layerwise", 100),
    ("mnist_lenet300", "lenet300", (784,), 916, "layerwise", 0),
    ("cifar10_resnet20", "resnet20", (32, 32, 3), 351, "global", 2000),
    ("cifar10_vgg16", "vgg16_bn", (32, 32, 3), 351, "global", 2000),
])
def test_shipped_imp_configs_validate(name, model, input_shape, steps_per_epoch, scope, rewind):
  config = load_config(name)
  assert config.mode == "imp"
  options = {"widths": tuple(config.model.widths)} if model == "mlp" else {}
  exp = _fake_experiment(model, input_shape, **options)
  exp.duration = lambda text, what: parse_duration(text, steps_per_epoch, what)
  exp.total_steps = parse_duration(config.train.duration, steps_per_epoch, "train.duration")
  settings = imp_lib.imp_settings_from_config(config, exp)
  assert settings.scope == scope and settings.rewind_step == rewind
  if name == "mnist_lenet300":
    assert settings.fractions["output/kernel"] == 0.1
  if name == "cifar10_vgg16":
    assert "output/kernel" not in settings.fractions


# ----------------------------------------------------------------------------
# Damaged run files: recomputed to the same numbers, or one line naming what to delete.

def _zero_array_files(checkpoint_dir):
  for root, _, files in os.walk(checkpoint_dir):
    for name in files:
      if root.endswith(os.sep + "d"):  # OCDBT data files
        path = os.path.join(root, name)
        with open(path, "r+b") as handle:
          handle.write(b"\0" * os.path.getsize(path))


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax teardown
@pytest.mark.parametrize("damage", [
    "truncated_level_results", "empty_level_results", "truncated_mask", "deleted_mask",
    "truncated_config", "zeroed_final_checkpoint", "zeroed_checkpoint_metadata"])
def test_damaged_files_are_recomputed_to_the_same_numbers(uninterrupted, tmp_path, damage,
                                                         capsys):
  reference_dir, reference = uninterrupted
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)
  level_2 = workdir / "level_2"
  if damage == "truncated_level_results":
    text = (workdir / "level_1" / "results.json").read_text()
    (workdir / "level_1" / "results.json").write_text(text[: len(text) // 2])
  elif damage == "empty_level_results":
    (level_2 / "results.json").write_text("{}")
  elif damage == "truncated_mask":
    data = (workdir / "level_1" / "masks.npz").read_bytes()
    (workdir / "level_1" / "masks.npz").write_bytes(data[: len(data) // 3])
  elif damage == "deleted_mask":
    (level_2 / "masks.npz").unlink()
  elif damage == "truncated_config":
    (workdir / "config.json").write_text('{"seed": ')
  elif damage == "zeroed_final_checkpoint":  # the level's only checkpoint, its results gone
    (level_2 / "results.json").unlink()
    _zero_array_files(level_2 / "checkpoints" / "40")
  else:
    (level_2 / "results.json").unlink()
    metadata = level_2 / "checkpoints" / "40" / "state" / "_METADATA"
    metadata.write_bytes(b"\0" * metadata.stat().st_size)
  resumed = imp_lib.run_imp(_imp_config(), str(workdir))
  assert _metrics(resumed) == _metrics(reference)
  out = capsys.readouterr().out
  assert damage == "deleted_mask" or "damaged" in out  # reported, not silent
  like = create_experiment(_imp_config()).init_state()
  for got, want in zip(jax.tree.leaves(_final_params(str(workdir), like, 2)),
                       jax.tree.leaves(_final_params(reference_dir, like, 2))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert json.loads((workdir / "config.json").read_text())["seed"] == 0  # intact again


# orbax leaves internal coroutines and event-loop callbacks behind when a damaged checkpoint
# fails to restore: noise from its teardown, not from lotto.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_rewind_point_names_what_to_delete(uninterrupted, tmp_path):
  reference_dir, _ = uninterrupted
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)
  (workdir / "level_1" / "results.json").unlink()  # level 1 must rewind to theta_10 again
  _zero_array_files(workdir / "level_0" / "checkpoints" / "10")
  with pytest.raises(ConfigError, match=r"the checkpoint at step 10 in .*level_0/checkpoints "
                                        r"is damaged .*; delete .*level_0 to recompute it"):
    imp_lib.run_imp(_imp_config(), str(workdir))


def test_a_garbled_branch_result_is_recomputed_to_the_same_numbers(tmp_path, capsys):
  config = _imp_config(levels=1, branches=("reinit",))
  first = imp_lib.run_imp(config, str(tmp_path))
  branch = tmp_path / "level_1" / "branches" / "reinit" / "results.json"
  branch.write_text(branch.read_text()[:40])  # truncated
  again = imp_lib.run_imp(config, str(tmp_path))
  assert "damaged" in capsys.readouterr().out
  timeless = lambda records: [{k: v for k, v in r.items() if k != "wall_time_s"}  # noqa: E731
                              for r in records]
  assert timeless(again["branches"]) == timeless(first["branches"])
  assert json.loads(branch.read_text())["branch"] == "reinit"
