"""Every mode on a tiny GPT (a small embedded Shakespeare-like corpus) and a tiny ViT
(MNIST-1D): train, prune with every method that applies (SynFlow refused), IMP with one
level, sparse training, stability, one-shot pruning of the trained run, and export (refused:
compressed execution is for MLPs). Each asserts finite metrics and exact mask counts in
the attention and MLP kernels only (embeddings, LayerNorms, biases and the head unmasked).

One prunable set per model: block_0's query, key, value, out (16x16 each) and fc_in, fc_out
(16x64, 64x16): 4 * 256 + 2 * 1024 = 3,072 weights.
"""
import json
import math
import os

import jax
import numpy as np
import pytest

import lotto
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.data import registry, shakespeare_char
from lotto.jobs import export
from lotto.jobs.experiment import create_experiment
from lotto.jobs.prune import compute_masks, scoring_batch
from lotto.jobs.prune_settings import prune_settings_from_config
from lotto.runtime import runs
from tests.conftest import load_config

# 20 works: 16 train, 2 validation, 2 test (shakespeare_char.split_of); 42 windows each.
WORKS = {f"work_{i:02d}": f"Work {i}. To be, or not to be, that is the question:\n" * 6
         for i in range(20)}
PRUNED = sorted(f"block_0/{layer}/kernel" for layer in (
    "attention/query", "attention/key", "attention/value", "attention/out", "mlp/fc_in",
    "mlp/fc_out"))
SIZES = {name: 1024 if "/mlp/" in name else 256 for name in PRUNED}
PRUNABLE_WEIGHTS = 3072
MODELS = ("gpt", "vit")
# The default run covers every mode on the GPT; the ViT's repeats are slow-marked.
GPT_THEN_VIT = ["gpt", pytest.param("vit", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", autouse=True)
def _small_corpus():
  """data.name = shakespeare_char reads the embedded corpus (16-character windows)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(registry, "load_shakespeare_char", lambda: shakespeare_char.load_shakespeare_char(
        WORKS, context=16, stride=8))
    yield


def base_config(model: str):
  config = load_config("test")
  config.train.tensorboard = False
  config.train.duration, config.train.eval_every, config.train.checkpoint_every = \
      "4it", "2it", "4it"
  config.data.batch_size, config.data.validation_size = 8, 8
  config.model.name, config.model.layers, config.model.heads, config.model.width = \
      model, 1, 2, 16
  if model == "gpt":
    config.data.name, config.model.context = "shakespeare_char", 16
  else:
    config.model.patch = 8  # MNIST-1D's 40 samples: 5 patches of 8
  return config


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  return tmp_path_factory.mktemp("transformer_modes")


@pytest.fixture(scope="module")
def trained(workdirs):
  """model -> (workdir, results) of a finished 4-step dense train run, run once."""
  done = {}
  for model in MODELS:
    workdir = workdirs / model / "train"
    done[model] = workdir, lotto.run_job(base_config(model), str(workdir))
  return done


def _unmasked_outside_the_pruned_set(masks) -> dict[str, float]:
  densities = {}
  for name, mask in zip(masks_lib.leaf_names(masks), jax.tree.leaves(masks)):
    if name in PRUNED:
      densities[name] = float(np.mean(mask))
    else:
      assert np.all(np.asarray(mask)), name  # embeddings, LayerNorms, biases, head
  assert sorted(densities) == PRUNED
  return densities


def _saved_masks(model, path):
  exp = create_experiment(base_config(model))
  return runs.read_masks(str(path), masks_lib.ones_like(exp.params_shape))


@pytest.mark.parametrize("model", MODELS)
def test_train(trained, model):
  _, results = trained[model]
  assert results["steps"] == 4 and results["density"] == 1.0
  assert np.isfinite(results["final_test_loss"])
  if model == "gpt":  # bits per character and perplexity of the same loss
    assert results["final_test_bpc"] == pytest.approx(results["final_test_loss"] / math.log(2))
    assert results["final_test_perplexity"] == pytest.approx(math.exp(results["final_test_loss"]))


@pytest.mark.parametrize("model", GPT_THEN_VIT)
def test_prune_with_grasp_trains_exactly_the_target_count(workdirs, model):
  config = base_config(model)
  config.mode, config.prune.method, config.prune.density = "prune", "grasp", 0.25
  results = lotto.run_job(config, str(workdirs / model / "prune_grasp"))
  assert results["achieved_density"] == round(0.25 * PRUNABLE_WEIGHTS) / PRUNABLE_WEIGHTS
  assert np.isfinite(results["final_test_loss"]) and results["collapsed_layers"] == []
  masks = _saved_masks(model, workdirs / model / "prune_grasp" / "masks.npz")
  densities = _unmasked_outside_the_pruned_set(masks)
  assert sum(densities[name] * SIZES[name] for name in PRUNED) == 768


@pytest.mark.parametrize("model", GPT_THEN_VIT)
def test_every_allowed_method_prunes_exactly_and_synflow_is_refused(model):
  config = base_config(model)
  config.mode, config.prune.density = "prune", 0.5
  exp = create_experiment(config)
  params, stats = exp.init_params(jax.random.PRNGKey(0))
  for method in ("magnitude", "random", "snip", "grasp_abs", "obd"):
    config.prune.method = method
    masks = compute_masks(exp, prune_settings_from_config(config, exp), params, stats)
    densities = _unmasked_outside_the_pruned_set(masks)
    kept = sum(int(np.sum(m)) for n, m in zip(masks_lib.leaf_names(masks),
                                               jax.tree.leaves(masks)) if n in densities)
    assert kept == PRUNABLE_WEIGHTS // 2, method
  config.prune.method = "synflow"
  with pytest.raises(ConfigError, match=rf"^prune.method 'synflow' needs a positively "
                                        rf"homogeneous network .* model '{model}' has "
                                        r"LayerNorm, softmax attention, GELU: use one of grasp, "):
    prune_settings_from_config(config, exp)


def test_a_language_models_scoring_batch_is_random_windows():
  # Labels per position have no classes to balance: per_class windows of the training set
  # (the class-balanced draw indexed the flattened [n, context] labels past the last row).
  exp = create_experiment(base_config("gpt"))
  x, y = scoring_batch(exp, 10)
  assert x.shape == (10, 16) and y.shape == (10, 16)
  np.testing.assert_array_equal(np.asarray(x)[:, 1:], np.asarray(y)[:, :-1])
  train_rows = {tuple(row) for row in exp.dataset.x_train.tolist()}
  assert all(tuple(row) in train_rows for row in np.asarray(x, np.int64).tolist())
  again, _ = scoring_batch(exp, 10)
  np.testing.assert_array_equal(np.asarray(x), np.asarray(again))


@pytest.mark.parametrize("model", GPT_THEN_VIT)
def test_imp_one_level(workdirs, model):
  config = base_config(model)
  config.mode, config.imp.levels = "imp", 1
  results = lotto.run_job(config, str(workdirs / model / "imp"))
  assert results["complete"]
  densities = [level["density"] for level in results["levels"]]
  assert densities == [1.0, round(0.8 * PRUNABLE_WEIGHTS) / PRUNABLE_WEIGHTS]  # 2,458 kept
  assert all(np.isfinite(level["final_test_loss"]) for level in results["levels"])


SPARSE_SLOW = ("rigl", "gmp", "dsd", "set")


# Every method on the GPT; on the ViT (slow) static and RigL, the methods of its study row.
SPARSE_CASES = [("gpt", "static"), *(pytest.param("gpt", m, marks=pytest.mark.slow)
                                     for m in SPARSE_SLOW),
                *(pytest.param("vit", m, marks=pytest.mark.slow) for m in ("static", "rigl"))]


@pytest.mark.parametrize("model, method", SPARSE_CASES)
def test_sparse_train(workdirs, model, method):
  config = base_config(model)
  config.mode, config.sparse.method, config.sparse.update_every = "sparse_train", method, "1it"
  results = lotto.run_job(config, str(workdirs / model / f"sparse_{method}"))
  assert np.isfinite(results["final_test_loss"])
  final = results["layer_densities"]
  assert sorted(final) == PRUNED
  if method in ("static", "set", "rigl"):
    # ERK at 10 %: density_l = e (fan_in + fan_out) / (fan_in fan_out) with
    # e (4 * 32 + 2 * 80) = 307.2: 34 of 256 attention weights, 85 of 1,024 MLP weights.
    assert final == {name: 85 / 1024 if "/mlp/" in name else 34 / 256 for name in PRUNED}
  if method in ("set", "rigl"):  # updates at steps 1 and 2 (stop at 75 % of 4 steps)
    assert [u["step"] for u in results["mask_updates"]] == [1, 2]
    assert all(u["layer_densities"] == final for u in results["mask_updates"])
  if method == "gmp":  # uniform: 10 % of every layer
    assert final == {name: round(0.1 * SIZES[name]) / SIZES[name] for name in PRUNED}


@pytest.mark.parametrize("model", GPT_THEN_VIT)
def test_stability(workdirs, model):
  config = base_config(model)
  config.mode, config.stability.rewind_steps, config.stability.points = "stability", ("0it",), 3
  results = lotto.run_job(config, str(workdirs / model / "stability"))
  (point,) = results["rewind"]
  assert point["dense"]["alphas"] == [0.0, 0.5, 1.0]
  assert all(0 <= e <= 1 for e in point["dense"]["errors"])
  assert np.isfinite(point["dense"]["instability"])


@pytest.mark.parametrize("model", GPT_THEN_VIT)
@pytest.mark.parametrize("method", ["wanda", pytest.param("sparsegpt", marks=pytest.mark.slow),
                                    pytest.param("magnitude", marks=pytest.mark.slow)])
def test_oneshot_two_of_four_in_every_pruned_layer(trained, workdirs, model, method):
  config = base_config(model)
  config.mode = "oneshot"
  config.oneshot.from_workdir = str(trained[model][0])
  config.oneshot.method, config.oneshot.structure = method, "2:4"
  config.oneshot.calibration_examples = 8
  workdir = workdirs / model / f"oneshot_{method}"
  results = lotto.run_job(config, str(workdir))
  assert results["achieved_density"] == 0.5
  assert np.isfinite(results["final_test_loss"]) and np.isfinite(results["dense_test_loss"])
  assert [layer["name"] for layer in results["layers"]] == [
      f"block_0/{layer}/kernel" for layer in ("attention/query", "attention/key",
                                              "attention/value", "attention/out", "mlp/fc_in",
                                              "mlp/fc_out")]  # forward-pass order
  masks = _saved_masks(model, workdir / "masks.npz")
  _unmasked_outside_the_pruned_set(masks)
  for name, mask in zip(masks_lib.leaf_names(masks), jax.tree.leaves(masks)):
    if name in PRUNED:  # 2 of every 4 consecutive inputs, in every output column
      groups = np.asarray(mask).reshape(-1, 4, mask.shape[-1]).sum(axis=1)
      assert np.all(groups == 2), name


@pytest.mark.parametrize("model", MODELS)
def test_export_refuses_a_transformer_in_one_line(trained, model):
  with pytest.raises(ConfigError) as error:
    export.export_run(str(trained[model][0]))
  message = str(error.value)
  assert "\n" not in message and "this model has layers" in message and "block_0" in message
  assert not os.path.exists(os.path.join(trained[model][0], "compressed.npz"))
  with open(os.path.join(trained[model][0], "results.json"), encoding="utf-8") as handle:
    assert json.load(handle)["mode"] == "train"
