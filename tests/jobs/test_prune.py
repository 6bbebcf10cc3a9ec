"""The prune job: end to end, pruning later in training, ERK, CLI errors."""
import json
import os

import jax
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.rng import purpose_key
from lotto.jobs import prune as prune_lib
from lotto.jobs.experiment import create_experiment
from lotto.jobs.prune import run_prune
from lotto.models import init_variables
from lotto.train.loop import load_state
from tests.jobs.test_cli import TEST_CONFIG, run_cli

# The tiny config's MLP 40-32-32-10: its prunable kernels, in order through the network.
LAYERS = ("hidden_0", "hidden_1", "output")
SIZES = {"hidden_0/kernel": 40 * 32, "hidden_1/kernel": 32 * 32, "output/kernel": 32 * 10}


def _kernels(tree):
  return [np.asarray(tree[name]["kernel"]) for name in LAYERS]


def _saved_masks(workdir, exp):
  return masks_lib.load(os.path.join(workdir, "masks.npz"), exp.init_state().masks)


def _effective_density(kernels):
  """Surviving weights on some input-to-output path of survivors, over all weights: a weight
  counts if its input unit is reached from the inputs and its output unit reaches the
  outputs (a chain of Dense masks [in, out], first layer first)."""
  reached = [np.ones(kernels[0].shape[0], bool)]
  for m in kernels:
    reached.append((m & reached[-1][:, None]).any(axis=0))
  reaching = [np.ones(kernels[-1].shape[1], bool)]
  for m in reversed(kernels):
    reaching.insert(0, (m & reaching[0][None, :]).any(axis=1))
  alive = sum(int((m & reached[i][:, None] & reaching[i + 1][None, :]).sum())
              for i, m in enumerate(kernels))
  return alive / sum(m.size for m in kernels)


@pytest.mark.slow
def test_prune_job_end_to_end(tiny_config, tmp_path):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "snip"
  tiny_config.prune.density = 0.05  # sparse enough that shuffling leaves some dead units
  tiny_config.prune.ablation = "shuffle"
  results = run_prune(tiny_config, str(tmp_path))
  assert results["method"] == "snip" and results["ablation"] == "shuffle"
  assert results["achieved_density"] == 131 / 2624  # round(0.05 * 2624) weights
  assert results["collapsed_layers"] == []
  masks = _kernels(_saved_masks(str(tmp_path), create_experiment(tiny_config)))
  assert sum(int(m.sum()) for m in masks) == 131
  effective = _effective_density(masks)
  assert effective < 131 / 2624  # weights on dead paths exist, so the next line can fail
  assert results["effective_density"] == effective
  assert (tmp_path / "masks.npz").exists() and (tmp_path / "layer_report.txt").exists()
  again = run_prune(tiny_config, str(tmp_path))  # resumes: same mask, same numbers
  assert again["history"] == results["history"]


def test_prune_early_in_training_continues_schedule(tiny_config, tmp_path, monkeypatch):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "magnitude"
  tiny_config.prune.density = 0.3
  tiny_config.prune.at_step = "20it"
  tiny_config.prune.ablation = "reinit"
  starts = []
  real_sparse_start = prune_lib.sparse_start

  def recording_sparse_start(*args, **kwargs):
    starts.append(jax.tree.map(np.asarray, real_sparse_start(*args, **kwargs)))
    return starts[-1]

  monkeypatch.setattr(prune_lib, "sparse_start", recording_sparse_start)
  results = run_prune(tiny_config, str(tmp_path))
  assert results["at_step"] == 20 and results["steps"] == 40
  assert [h["step"] for h in results["history"]] == [30, 40]  # sparse run starts at k
  # The mask is magnitude pruning of the step-20 weights: the largest round(0.3 * 2624) =
  # 787 |w| of the dense run's checkpoint at step 20 (numpy's sort; no ties).
  exp = create_experiment(tiny_config)
  theta_20 = load_state(str(tmp_path / "dense_to_k"), 20, exp.init_state())
  assert int(theta_20.step) == 20
  magnitudes = np.concatenate([np.abs(w).ravel() for w in _kernels(theta_20.params)])
  keep = np.zeros(magnitudes.size, bool)
  keep[np.argsort(-magnitudes)[:787]] = True
  masks = _saved_masks(str(tmp_path), exp)
  np.testing.assert_array_equal(np.concatenate([m.ravel() for m in _kernels(masks)]), keep)
  # reinit: that mask over a fresh init from the seed's "reinit" stream, at step 20; not the
  # original init (the seed's "init" stream) on any surviving weight.
  (start,) = starts
  assert int(start.step) == 20
  shape = exp.dataset.input_shape
  fresh, _ = init_variables(exp.model, purpose_key(tiny_config.seed, "reinit"), shape)
  original, _ = init_variables(exp.model, purpose_key(tiny_config.seed, "init"), shape)
  for got, mask, want, init in zip(_kernels(start.params), _kernels(masks), _kernels(fresh),
                                   _kernels(original)):
    np.testing.assert_array_equal(got, np.where(mask, want, 0))
    assert not np.any(got[mask] == init[mask])


@pytest.mark.slow
def test_prune_cli_end_to_end(tmp_path):
  workdir = tmp_path / "run"
  ok = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}", "--config.mode=prune",
               "--config.prune.method=synflow", "--config.prune.compression=1.5")
  assert ok.returncode == 0, ok.stderr[-2000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["target_density"] == pytest.approx(10 ** -1.5)
  assert results["iterations"] == 100
  bad = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'bad'}",
                "--config.mode=prune", "--config.prune.method=snap")
  assert bad.returncode == 2, bad.stderr[-1000:]
  lines = [l for l in bad.stderr.splitlines() if l.startswith("lotto: error:")]
  assert len(lines) == 1 and "unknown pruning method 'snap'; valid choices: grasp" in lines[0]
  assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("field, value, message", [
    ("density", 1.5, "prune.density must lie in (0, 1]"),
    ("density", 0.0, "prune.density must lie in (0, 1]"),
    ("scope", "local", "valid choices: global, layerwise"),
    ("ablation", "flip", "valid choices: none, shuffle"),
    ("at_step", "9000it", "is not before the end of training"),
])
def test_bad_prune_values_are_one_line_errors_that_write_nothing(tiny_config, tmp_path, field,
                                                                 value, message):
  tiny_config.mode = "prune"
  tiny_config.prune[field] = value
  with pytest.raises(ConfigError) as error:
    run_prune(tiny_config, str(tmp_path / "bad"))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "bad").exists()


def test_erk_distribution_through_the_prune_job(tiny_config, tmp_path):
  tiny_config.mode = "prune"
  tiny_config.prune.method = "magnitude"
  tiny_config.prune.density = 0.2
  tiny_config.prune.distribution = "erk"
  results = run_prune(tiny_config, str(tmp_path))
  # ERK keeps scale * (n_in + n_out) weights of a Dense layer (its density (n_in + n_out) /
  # (n_in n_out) times the scale), none capped here: scale = 0.2 * 2624 / (72 + 64 + 42),
  # counts round(72 scale) = round(212.28), round(64 scale) = round(188.69),
  # round(42 scale) = round(123.83).
  counts = {"hidden_0/kernel": 212, "hidden_1/kernel": 189, "output/kernel": 124}
  assert results["layer_densities"] == {n: counts[n] / SIZES[n] for n in SIZES}
  assert results["achieved_density"] == 525 / 2624
