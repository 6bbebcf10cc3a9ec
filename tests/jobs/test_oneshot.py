"""One-shot pruning of a trained run (mode=oneshot): exact N:M masks in every pruned layer,
SparseGPT's reconstruction beating magnitude pruning, each layer calibrated on the outputs of
the already pruned layers before it, populations over calibration draws, fine-tuning under
the masks, resuming, the report, and the bad-input lines."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs import oneshot as oneshot_lib
from lotto.jobs.experiment import canonical_config, create_experiment
from lotto.jobs.masked_train import run_train
from lotto.jobs.oneshot import calibration_examples, run_oneshot
from lotto.jobs.oneshot_settings import load_source, oneshot_settings_from_config
from lotto.jobs.oneshot_walk import EvalForward, prune_network
from lotto.pruning.oneshot_methods import ONESHOT_METHODS, OneShotMethod, OneShotSettings
from lotto.reports import write_report
from lotto.runtime import runs
from lotto.runtime.identity import config_hash
from lotto.train.loop import load_state
from tests.conftest import load_config
from tests.jobs.test_cli import TEST_CONFIG, run_cli

# The tiny config's MLP 40-32-32-10, its prunable kernels in the order the network calls them.
LAYERS = ("hidden_0/kernel", "hidden_1/kernel", "output/kernel")
STRUCTURES = ("unstructured", "2:4", "4:8")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The tiny config trained once (40 steps): the run every test prunes."""
  workdir = tmp_path_factory.mktemp("oneshot") / "trained"
  config = load_config("test")
  config.train.tensorboard = False
  run_train(config, str(workdir))
  return workdir


def oneshot_config(trained, **fields):
  config = load_config("test")
  config.train.tensorboard = False
  config.mode = "oneshot"
  config.oneshot.from_workdir = str(trained)
  config.oneshot.calibration_examples = 64
  for key, value in fields.items():
    config.oneshot[key] = value
  return config


@pytest.fixture(scope="module")
def pruned(trained):
  """run(method, structure, **fields) -> (workdir, results), each setting run once."""
  done = {}

  def run(method, structure="unstructured", **fields):
    key = (method, structure, tuple(sorted(fields.items())))
    if key not in done:
      name = "_".join([method, structure.replace(":", "of")] +
                      [f"{k}{v}" for k, v in sorted(fields.items())])
      workdir = trained.parent / "runs" / name
      config = oneshot_config(trained, method=method, structure=structure, **fields)
      done[key] = workdir, run_oneshot(config, str(workdir))
    return done[key]

  return run


def _matrix(mask):
  return np.asarray(mask).reshape(-1, mask.shape[-1])


def _saved_masks(workdir, trained):
  exp = create_experiment(oneshot_config(trained))
  return runs.read_masks(os.path.join(workdir, "masks.npz"), masks_lib.ones_like(
      exp.params_shape))


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_pruned_layer_keeps_exactly_half_or_n_of_every_m(trained, pruned, method,
                                                              structure):
  workdir, results = pruned(method, structure)
  masks = dict(zip(masks_lib.leaf_names(_saved_masks(workdir, trained)),
                   jax.tree.leaves(_saved_masks(workdir, trained))))
  assert [layer["name"] for layer in results["layers"]] == list(LAYERS)
  for name in LAYERS:
    mask = _matrix(masks[name])
    if structure == "unstructured":
      assert mask.sum() == mask.size // 2, name  # round(0.5 * size) in every layer
    else:
      n, m = map(int, structure.split(":"))
      groups = mask.reshape(mask.shape[0] // m, m, mask.shape[1]).sum(axis=1)
      assert (groups == n).all(), name  # N of every M consecutive inputs, every output
  for name in ("hidden_0/bias", "hidden_1/bias", "output/bias"):
    assert np.asarray(masks[name]).all()  # only the kernels are pruned
  assert results["achieved_density"] == pytest.approx(0.5)
  assert results["layer_densities"] == {name: 0.5 for name in LAYERS}
  assert results["method"] == method and results["structure"] == structure
  assert results["calibration_seeds"] == [0] and results["calibration_seed"] == 0
  assert results["dense_test_accuracy"] == pytest.approx(
      json.loads((trained / "results.json").read_text())["final_test_accuracy"])


@pytest.mark.parametrize("structure", ["unstructured", "2:4"])
def test_sparsegpt_reconstructs_every_layer_better_than_magnitude_pruning(pruned, structure):
  _, magnitude = pruned("magnitude", structure)
  _, sparsegpt = pruned("sparsegpt", structure)
  # The layer-wise objective SparseGPT minimises: ||XW - XW'||^2 / ||XW||^2 on each layer's
  # calibration inputs (the first layer's are the same data for both methods).
  for ours, theirs in zip(sparsegpt["layers"], magnitude["layers"]):
    assert ours["error"] < theirs["error"], ours["name"]
  # ... and on this model it carries over to the pruned network's test loss.
  assert sparsegpt["pruned_test_loss"] <= magnitude["pruned_test_loss"]


def test_each_layer_is_calibrated_on_the_outputs_of_the_pruned_layers_before_it(trained):
  config = oneshot_config(trained)
  exp = create_experiment(config)
  settings = oneshot_settings_from_config(config, exp)
  source = load_source(settings, exp)
  seen = {}
  sparsegpt = ONESHOT_METHODS.get("sparsegpt")

  def spy(kernel, stats, density, structure, method_settings, name="layer"):
    seen[name] = stats
    return sparsegpt.prune_layer(kernel, stats, density, structure, method_settings, name=name)

  method = OneShotMethod("spy", "records each layer's statistics", True, True, True, spy)
  x = calibration_examples(exp, 64, seed=0)
  network = prune_network(EvalForward(exp.model), source.params, {}, exp.prunable, x, method,
                          0.5, settings.structure, OneShotSettings(), chunk=24)
  first = network.params["hidden_0"]
  dense = source.params["hidden_0"]
  assert not np.allclose(first["kernel"], dense["kernel"])  # pruned and reconstructed
  inputs = np.maximum(x @ np.asarray(first["kernel"]) + np.asarray(first["bias"]), 0)
  stale = np.maximum(x @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"]), 0)
  stats = seen["hidden_1/kernel"]
  assert int(stats.count) == 64  # three chunks of 24, the padding not counted
  np.testing.assert_allclose(stats.gram, inputs.T @ inputs, rtol=2e-4, atol=2e-3)
  np.testing.assert_allclose(stats.sum_squares, (inputs ** 2).sum(0), rtol=2e-4, atol=2e-3)
  assert not np.allclose(stats.gram, stale.T @ stale, rtol=1e-2)  # not the dense network's
  np.testing.assert_allclose(seen["hidden_0/kernel"].gram, x.T @ x, rtol=2e-4, atol=2e-3)


def test_calibration_draws_are_distinct_training_examples_chosen_by_their_seed(trained):
  exp = create_experiment(oneshot_config(trained))
  a, again, b = (calibration_examples(exp, 64, s) for s in (3, 3, 4))
  np.testing.assert_array_equal(a, again)
  assert not np.array_equal(a, b)
  assert len({row.tobytes() for row in a}) == 64  # drawn without replacement


def test_a_population_over_calibration_draws_reports_each_draw_and_mean_and_std(pruned):
  workdir, results = pruned("sparsegpt", calibration_seeds=(0, 1, 2), finetune="10it")
  draws = results["draws"]
  assert [d["calibration_seed"] for d in draws] == [0, 1, 2]
  accuracies = [d["pruned_test_accuracy"] for d in draws]
  pooled = results["pooled"]["pruned_test_accuracy"]
  assert pooled["mean"] == pytest.approx(np.mean(accuracies))
  assert pooled["std"] == pytest.approx(np.std(accuracies))
  assert pooled["values"] == {str(s): a for s, a in zip((0, 1, 2), accuracies)}
  assert len({d["pruned_test_loss"] for d in draws}) == 3  # the draws prune differently
  assert "finetuned_test_accuracy" in results["pooled"]
  for draw in draws:
    directory = workdir / f"calibration_{draw['calibration_seed']}"
    assert json.loads((directory / "draw.json").read_text()) == runs.finite_json(draw)
    assert (directory / "masks.npz").exists() and (directory / "finetune").is_dir()
  # A draw of the population is the single run of its calibration seed.
  _, single = pruned("sparsegpt", calibration_seed=1)
  assert draws[1]["pruned_test_loss"] == pytest.approx(single["pruned_test_loss"], rel=1e-6)
  assert draws[1]["layer_densities"] == single["layer_densities"]


def test_finetuning_trains_the_pruned_network_under_its_masks(trained, pruned):
  workdir, results = pruned("magnitude", "2:4", finetune="10it")
  assert results["finetune_steps"] == 10
  assert results["final_test_accuracy"] == results["finetuned_test_accuracy"]
  assert results["pruned_test_accuracy"] == pruned("magnitude", "2:4")[1]["pruned_test_accuracy"]
  exp = create_experiment(oneshot_config(trained))
  state = load_state(str(workdir / "finetune"), 10, exp.init_state())
  masks = _saved_masks(workdir, trained)
  for mask, kept, param in zip(jax.tree.leaves(masks), jax.tree.leaves(state.masks),
                               jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(mask, kept)
    assert not np.asarray(param)[~np.asarray(mask)].any()


def test_a_finished_run_is_returned_without_recomputing(trained, pruned, monkeypatch):
  workdir, results = pruned("wanda", "2:4")

  def fail(*args, **kwargs):
    raise AssertionError("recomputed")

  monkeypatch.setattr(oneshot_lib, "prune_network", fail)
  monkeypatch.setattr(oneshot_lib, "Trainer", fail)
  again = run_oneshot(oneshot_config(trained, method="wanda", structure="2:4"), str(workdir))
  assert again == runs.finite_json(json.loads(json.dumps(results)))


def test_an_interrupted_run_prunes_again_to_the_same_network_and_resumes_finetuning(
    trained, pruned, tmp_path):
  workdir, results = pruned("sparsegpt", "4:8", finetune="10it")
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  (copy / "results.json").unlink()  # killed after fine-tuning, before the results
  before = jax.tree.leaves(_saved_masks(copy, trained))
  again = run_oneshot(oneshot_config(trained, method="sparsegpt", structure="4:8",
                                     finetune="10it"), str(copy))
  for key in ("pruned_test_loss", "finetuned_test_loss", "layers", "finetune_history"):
    assert again[key] == results[key], key
  for mask, saved in zip(before, jax.tree.leaves(_saved_masks(copy, trained))):
    np.testing.assert_array_equal(mask, saved)


def test_the_report_tabulates_methods_and_a_population(pruned):
  workdir, _ = pruned("magnitude")
  pruned("sparsegpt")
  pruned("sparsegpt", calibration_seeds=(0, 1, 2), finetune="10it")
  text = write_report(str(workdir.parent))
  lines = text.splitlines()
  assert "one-shot pruning of trained runs" in lines[0]
  row = next(line for line in lines if line.startswith("magnitude  unstructured"))
  assert row.split()[3:5] == ["0it", "1"]
  population = next(line for line in lines
                    if line.startswith("sparsegpt  unstructured") and " 10it " in line)
  assert population.split()[4] == "3"  # three calibration draws
  assert (workdir.parent / "oneshot_report.txt").exists()
  single = write_report(str(workdir))
  assert "hidden_1/kernel" in single and "rel. error" in single


def test_the_oneshot_section_at_its_defaults_leaves_every_run_hash_unchanged(tiny_config):
  run_config = canonical_config(tiny_config)
  without = {key: value for key, value in run_config.items() if key != "oneshot"}
  assert config_hash(run_config) == config_hash(without)
  tiny_config.oneshot.method = "wanda"
  assert config_hash(canonical_config(tiny_config)) != config_hash(without)


def _unfinished(trained, tmp_path):
  copy = tmp_path / "unfinished"
  shutil.copytree(trained, copy)
  (copy / "results.json").unlink()
  return copy


@pytest.mark.parametrize("fields, message", [
    ({"from_workdir": "{tmp}/missing"}, r"^oneshot.from_workdir=\S+/missing does not exist"),
    ({"from_workdir": "{unfinished}"}, r"^oneshot.from_workdir=\S+/unfinished holds an "
                                       r"unfinished train run \(no final results\)"),
    ({"from_workdir": ""}, r"^oneshot.from_workdir must name a finished train run's workdir"),
    ({"calibration_examples": 10**6}, r"^oneshot.calibration_examples=1000000 exceeds the "
                                      r"\d+ training examples of mnist1d$"),
    ({"structure": "2:16", "density": 0.125}, r"^one-shot pruning: layer hidden_0/kernel has 40 "
                                              r"inputs on axis -2 .* not a multiple of m = 16"),
    ({"structure": "2:4", "density": 0.3}, r"^oneshot.structure 2:4 keeps density 0.5; set "
                                           r"oneshot.density=0.5"),
    ({"method": "obs"}, r"^unknown one-shot method 'obs'"),
    ({"calibration_seeds": (1, 1)}, r"^oneshot.calibration_seeds lists 1 more than once"),
])
def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path, fields, message):
  fields = {key: value.format(tmp=tmp_path, unfinished=_unfinished(trained, tmp_path))
            if isinstance(value, str) else value for key, value in fields.items()}
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=message) as error:
    run_oneshot(oneshot_config(trained, **fields), str(workdir))
  assert "\n" not in str(error.value)
  assert not workdir.exists()


def test_a_run_of_another_model_is_named_in_one_line(trained, tmp_path):
  config = oneshot_config(trained)
  config.model.widths = (16, 16)
  with pytest.raises(ConfigError, match=r"holds a run of another model or data \(model.widths: "
                                        r"saved \[32, 32\], now \[16, 16\]\)") as error:
    run_oneshot(config, str(tmp_path / "run"))
  assert "\n" not in str(error.value) and not (tmp_path / "run").exists()


def test_a_hessian_not_positive_definite_names_the_layer_and_a_larger_damp(trained, tmp_path):
  # 4 calibration examples of 40 inputs: X^T X has rank 4, singular without dampening.
  config = oneshot_config(trained, calibration_examples=4, damp=0.0)
  with pytest.raises(ConfigError, match=r"^sparsegpt: layer hidden_0/kernel: the dampened "
                                        r"Hessian is not positive definite .* use a larger "
                                        r"damp, e.g. 0.01$"):
    run_oneshot(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_cli_prunes_a_trained_run_reports_it_and_refuses_a_missing_one(trained, tmp_path):
  args = (f"--config={TEST_CONFIG}", "--config.mode=oneshot", "--config.train.tensorboard=False",
          "--config.oneshot.structure=2:4", "--config.oneshot.calibration_examples=32")
  missing = run_cli(*args, f"--config.oneshot.from_workdir={tmp_path / 'nothing'}",
                    f"--workdir={tmp_path / 'refused'}")
  assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
  assert "oneshot.from_workdir=" in missing.stderr and "does not exist" in missing.stderr
  assert not (tmp_path / "refused").exists()
  workdir = tmp_path / "cli"
  result = run_cli(*args, f"--config.oneshot.from_workdir={trained}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads((workdir / "results.json").read_text())["structure"] == "2:4"
  report = run_cli("report", f"--workdir={workdir}")
  assert report.returncode == 0, report.stderr[-2000:]
  assert "sparsegpt  2:4" in report.stdout and "rel. error" in report.stdout
