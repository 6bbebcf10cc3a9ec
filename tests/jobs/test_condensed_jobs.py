"""`sparse.execution = "condensed"` through the sparse_train job: kill-and-resume, results and
reports like a masked run's, and the bad-input lines (one line, exit 2, nothing written)."""
import jax
import numpy as np
import pytest

import lotto
from lotto.core.errors import ConfigError
from lotto.jobs.condensed_execution import condensed_setup, condensed_starts
from lotto.jobs.sparse_train import build_sparse_run, initial_state, run_sparse_train
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import load_state
from tests.jobs.test_cli import TEST_CONFIG, run_cli


def _condensed(config, method="set", distribution="fanin"):
  config.mode, config.sparse.method, config.sparse.density = "sparse_train", method, 0.25
  config.sparse.distribution, config.sparse.execution = distribution, "condensed"
  return config


class _Killed(Exception):
  pass


@pytest.mark.slow
def test_kill_and_resume_of_a_condensed_run_is_bit_identical(tiny_config, tmp_path):
  config = _condensed(tiny_config)
  straight = lotto.run_job(config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):  # at 22: between the updates at 20 and 25; resumes from 20
    run_sparse_train(config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [22])])
  resumed = run_sparse_train(config, str(tmp_path / "resumed"))
  for key in ("mask_updates", "final_test_accuracy", "final_test_loss", "history",
              "layer_densities", "density"):
    assert resumed[key] == straight[key]
  # Five updates (steps 5..25), each layer at k / fan_in: 10/40, 8/32, 8/32.
  assert [u["step"] for u in straight["mask_updates"]] == [5, 10, 15, 20, 25]
  assert straight["layer_densities"] == {"hidden_0/kernel": 0.25, "hidden_1/kernel": 0.25,
                                         "output/kernel": 0.25}
  exp, settings, update = build_sparse_run(config)
  condensed = condensed_setup(config, exp, settings)
  like = condensed_starts([initial_state(exp, settings, update)], condensed, exp)[0]
  a = load_state(str(tmp_path / "straight"), 40, like)
  b = load_state(str(tmp_path / "resumed"), 40, like)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The checkpoint holds the condensed form: k stored weights per unit, no dense kernel.
  assert a.params["hidden_0"]["values"].shape == (32, 10)
  assert "kernel" not in a.params["hidden_0"]


def _refused(config, tmp_path) -> str:
  with pytest.raises(ConfigError) as error:
    run_sparse_train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  message = str(error.value)
  assert "\n" not in message
  return message


def test_condensed_refuses_a_mask_that_is_not_constant_fan_in(tiny_config, tmp_path):
  message = _refused(_condensed(tiny_config, "static", distribution="erk"), tmp_path)
  assert message.startswith("layer hidden_0 is not constant fan-in: its output units keep ")
  assert "distribution=fanin" in message


def test_condensed_refuses_a_method_it_cannot_run(tiny_config, tmp_path):
  message = _refused(_condensed(tiny_config, "rigl", distribution="uniform"), tmp_path)
  assert "sparse.method='rigl' has no condensed form" in message
  assert "static, set, srigl" in message


def test_condensed_refuses_bfloat16_and_an_unknown_execution(tiny_config, tmp_path):
  config = _condensed(tiny_config, "static", distribution="uniform")  # refused before masks
  config.train.precision = "bfloat16"
  assert "train.precision='bfloat16'" in _refused(config, tmp_path)
  config.train.precision = "float32"
  config.sparse.execution = "sparse"
  message = _refused(config, tmp_path)
  assert "sparse.execution" in message and "masked, condensed" in message


@pytest.mark.slow
def test_cli_condensed_bad_mask_is_one_line_exit_2(tmp_path):
  workdir = tmp_path / "run"
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={workdir}",
                   "--config.mode=sparse_train", "--config.sparse.method=static",
                   "--config.sparse.distribution=erk", "--config.sparse.execution=condensed")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "not constant fan-in" in lines[0], result.stderr[-2000:]
  assert not workdir.exists()


@pytest.mark.slow
def test_export_of_a_condensed_run_writes_condensed_layers_that_predict_as_the_masked_run(
    tiny_config, tmp_path):
  from lotto import sparse  # pylint: disable=import-outside-toplevel
  from lotto.jobs.export import export_run  # pylint: disable=import-outside-toplevel
  config = _condensed(tiny_config, "static")
  lotto.run_job(config, str(tmp_path / "condensed"))
  config.sparse.execution = "masked"
  lotto.run_job(config, str(tmp_path / "masked"))
  condensed = export_run(str(tmp_path / "condensed"))
  masked = export_run(str(tmp_path / "masked"))
  assert condensed.kernels == {"hidden_0": "condensed", "hidden_1": "condensed",
                               "output": "condensed"}
  assert (condensed.surviving, condensed.total) == (masked.surviving, masked.total) == (
      32 * 10 + 32 * 8 + 10 * 8, 40 * 32 + 32 * 32 + 32 * 10)
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (64, 40)))
  a = np.asarray(sparse.load_compressed(condensed.path)(x))
  b = np.asarray(sparse.load_compressed(masked.path)(x))
  np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)   # 40 steps of summation order
  np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["static", "srigl"])
def test_a_condensed_population_equals_separate_condensed_runs(tiny_config, tmp_path, method):
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  from lotto.jobs.replicas import seed_dir  # pylint: disable=import-outside-toplevel
  from tests.jobs.test_population import _population_and_singles  # pylint: disable=import-outside-toplevel
  config = _condensed(tiny_config, method)
  config.train.duration, config.train.tensorboard = "20it", False
  _, singles = _population_and_singles(tmp_path, run_sparse_train, config, seeds=(0, 1))
  for seed, single in singles.items():
    directory = seed_dir(str(tmp_path / "population"), seed)
    with open(os.path.join(directory, "results.json")) as file:
      replica = json.load(file)
    assert replica["mask_updates"] == single["mask_updates"]  # each update's positions, per seed
    assert [u["step"] for u in single["mask_updates"]] == ([5, 10] if method == "srigl" else [])
    assert replica["final_test_accuracy"] == single["final_test_accuracy"]
    assert replica["layer_densities"] == single["layer_densities"]
