"""A run whose loss stops being finite stops (exit 3), says so in results.json, and keeps
every checkpoint written before it; `train.on_nan = "continue"` trains on."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lotto
from lotto.core.errors import ConfigError, Diverged
from lotto.jobs.experiment import create_experiment
from lotto.runtime.checkpoints import Checkpointer
from lotto.train.hooks import AtStepsHook
from tests.jobs.test_cli import TEST_CONFIG, run_cli

RUNNERS = {"train": lotto.run_train, "prune": lotto.run_prune, "imp": lotto.run_imp,
           "stability": lotto.run_stability}


def _exploding(config, mode):
  config.mode = mode
  config.optimizer.name, config.optimizer.learning_rate = "sgd", 1e8
  config.stability.rewind_steps = ("0it",)
  return config


@pytest.mark.parametrize("mode", sorted(RUNNERS))
def test_every_mode_stops_and_records_the_divergence(tiny_config, tmp_path, mode):
  with pytest.raises(Diverged) as error:
    RUNNERS[mode](_exploding(tiny_config, mode), str(tmp_path))
  assert error.value.step == 10  # the first block (eval_every 10) already has a NaN loss
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["mode"] == mode and results["diverged"] is True
  assert results["diverged_at_step"] == 10 and results["last_finite_checkpoint"] is None


@pytest.mark.slow
def test_the_cli_exits_3_with_one_line(tmp_path):
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path}",
                   "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e8")
  assert result.returncode == 3
  assert result.stderr.strip().startswith("lotto: error: training diverged: non-finite loss "
                                          "in the steps up to 10 of ")
  assert len(result.stderr.strip().splitlines()) == 1


def test_checkpoints_before_the_divergence_are_kept_and_continue_trains_on(tiny_config,
                                                                           tmp_path):
  def poison(step, state):  # NaN weights after the step-20 checkpoint was written
    return state.replace(params=jax.tree.map(lambda p: p * jnp.nan, state.params))

  with pytest.raises(Diverged, match="the last finite checkpoint is step 20") as error:
    lotto.run_train(tiny_config, str(tmp_path), hooks=[AtStepsHook.of(poison, [30])])
  assert error.value.step == 40
  exp = create_experiment(tiny_config)
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
  assert checkpointer.steps() == [20]
  state, _ = checkpointer.restore(20, exp.init_state())
  assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(state.params))
  # The same run, resumed with on_nan=continue (not part of the config's identity), finishes
  # from the kept checkpoint; its results no longer say diverged.
  tiny_config.train.on_nan = "continue"
  results = lotto.run_train(tiny_config, str(tmp_path))
  saved = json.loads((tmp_path / "results.json").read_text())
  assert results["steps"] == 40 and "diverged" not in saved
  assert np.isfinite(saved["final_test_loss"])


def _strict_json(path):
  """The file parsed as standard JSON: a bare NaN or Infinity token is an error."""
  def refuse(token):
    raise ValueError(f"not JSON: {token}")
  return json.loads(path.read_text(), parse_constant=refuse)


class _Killed(Exception):
  pass


def test_continue_keeps_the_divergence_writes_valid_json_and_export_refuses(tiny_config,
                                                                            tmp_path):
  config = _exploding(tiny_config, "train")
  with pytest.raises(Diverged):
    lotto.run_train(config, str(tmp_path))
  # Re-run with on_nan=continue, as the message suggests, killed once after the divergence:
  # the step it first happened survives the resume.
  config.train.on_nan = "continue"

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):
    lotto.run_train(config, str(tmp_path), hooks=[AtStepsHook.of(crash, [30])])
  results = lotto.run_train(config, str(tmp_path))
  saved = _strict_json(tmp_path / "results.json")
  assert results["steps"] == 40 and saved["steps"] == 40
  assert saved["diverged"] is True and saved["diverged_at_step"] == 10
  assert [h["train_loss"] for h in saved["history"]] == [None, None, None, None]  # NaN -> null
  from lotto.jobs.export import export_run  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match=r"^the weights at step 40 in .* are not finite "
                     r"\(6 of 6 arrays, first hidden_0/bias; the loss diverged at step 10\): "
                     r"nothing exported$"):
    export_run(str(tmp_path))
  assert not (tmp_path / "compressed.npz").exists()


def test_an_imp_run_that_trained_on_through_a_divergence_says_so(tiny_config, tmp_path):
  config = _exploding(tiny_config, "imp")
  config.train.on_nan, config.imp.levels = "continue", 1
  results = lotto.run_imp(config, str(tmp_path))
  saved = _strict_json(tmp_path / "results.json")
  assert saved["diverged"] is True and saved["diverged_at_step"] == 10
  # Level 0 diverged; level 1 (rewound to init, 80 % of the weights) happened to stay finite.
  assert [l.get("diverged_at_step") for l in saved["levels"]] == [10, None]
  assert results["diverged"] is True
