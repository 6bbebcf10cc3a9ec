"""Bad input the issue list found: config files that cannot load, small gaps in the checks,
seeds that would alias, sweep cells that would collide, NaN in early stopping."""
import math
import re

import pytest

from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.jobs.prune_sweep import run_prune_sweep
from lotto.train.evaluate import early_stopping
from tests.jobs.test_cli import run_cli


@pytest.mark.slow
@pytest.mark.parametrize("source, message", [
    (None, "config file {path} does not exist"),
    ("def get_config(:\n  pass\n", "config file {path}: syntax error at line 1"),
    ("import not_a_module_xyz\n", "config file {path} failed to load: ModuleNotFoundError: "
                                  "No module named 'not_a_module_xyz'"),
    ("def get_config():\n  return {}['x']\n", "failed to load: KeyError: 'x'"),
    ("x = 1\n", "config file {path} defines no get_config() function"),
])
def test_a_config_file_that_cannot_load_is_one_line_exit_2(tmp_path, source, message):
  path = tmp_path / "config.py"
  if source is not None:
    path.write_text(source)
  result = run_cli(f"--config={path}", f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      result.stderr.strip().splitlines()[0]]  # exactly one line, no traceback
  assert result.stderr.startswith("lotto: error: ")
  assert message.format(path=path) in result.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("section, field, value, message", [
    ("model", "widths", (32, 0), "model.widths must be a non-empty tuple of positive integers"),
    ("model", "widths", (), "model.widths must be a non-empty tuple of positive integers"),
    ("train", "eval_every", "0it", "train.eval_every must be a positive duration"),
    ("train", "checkpoint_every", "0ep", "train.checkpoint_every must be a positive duration"),
    (None, "seed", 2**32, "seed must be an integer in [0, 2**32)"),
    (None, "seed", -1, "seed must be an integer in [0, 2**32)"),
])
def test_small_input_gaps_are_one_line_errors(tiny_config, section, field, value, message):
  (tiny_config if section is None else tiny_config[section])[field] = value
  with pytest.raises(ConfigError) as error:
    create_experiment(tiny_config)
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("field, value, message", [
    ("densities", (0.1, 0.1000001), "sweep cells would share a directory (magnitude_d0.1_none_s0)"),
    ("methods", ("magnitude", "magnitude"), "sweep cells would share a directory"),
    ("seeds", (0, 2**32), "sweep.seeds entry must be an integer in [0, 2**32)"),
])
def test_sweeps_refuse_colliding_cells_and_aliasing_seeds(tiny_config, tmp_path, field, value,
                                                         message):
  tiny_config.mode = "prune_sweep"
  tiny_config.sweep.methods, tiny_config.sweep.densities = ("magnitude",), (0.1,)
  tiny_config.sweep[field] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    run_prune_sweep(tiny_config, str(tmp_path / "sweep"))
  assert not (tmp_path / "sweep").exists()


def test_a_sweep_list_given_as_a_string_is_refused(tiny_config, tmp_path):
  tiny_config.mode = "prune_sweep"
  tiny_config.unlock()
  del tiny_config.sweep["methods"]
  tiny_config.sweep.methods = "magnitude"  # a str where a tuple belongs (library use)
  with pytest.raises(ConfigError, match=r"sweep.methods must be a tuple, e.g. "
                                        r"sweep.methods=\('magnitude',\)"):
    run_prune_sweep(tiny_config, str(tmp_path / "sweep"))


def test_early_stopping_ignores_non_finite_validation_losses():
  history = [{"step": 10, "val_loss": 1.0, "test_accuracy": 0.5},
             {"step": 20, "val_loss": math.nan, "test_accuracy": 0.1},
             {"step": 30, "val_loss": -math.inf, "test_accuracy": 0.1},
             {"step": 40, "val_loss": 0.9, "test_accuracy": 0.6}]
  assert early_stopping(history) == {"early_stop_step": 40, "early_stop_test_accuracy": 0.6,
                                     "early_stop_val_loss": 0.9}
  assert early_stopping(history[1:3])["early_stop_step"] is None


@pytest.mark.parametrize("points, message", [
    (1_000_000_000, "stability.points must be an integer in [3, 1001]; got 1000000000"),
    (2, "stability.points must be an integer in [3, 1001]; got 2"),
    (True, "stability.points must be an integer in [3, 1001]; got True"),
])
def test_stability_points_are_bounded(tiny_config, points, message):
  from lotto.jobs.stability_settings import stability_settings_from_config  # pylint: disable=import-outside-toplevel
  tiny_config.mode, tiny_config.stability.rewind_steps = "stability", ("0it", "10it")
  tiny_config.stability.points = points
  with pytest.raises(ConfigError) as info:
    stability_settings_from_config(tiny_config, create_experiment(tiny_config))
  assert str(info.value) == message


def test_a_key_below_a_value_or_a_missing_key_names_the_field(tiny_config):
  from lotto.jobs.config_files import check_override  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError) as info:
    check_override(tiny_config, "optimizer.name.value")
  assert str(info.value) == ("--config.optimizer.name.value: config.optimizer.name is a str "
                             "field (now 'adam'), not a section with a field 'value'; set it as "
                             "--config.optimizer.name=VALUE")
  with pytest.raises(ConfigError, match=r"^--config.optimizer.nam: config.optimizer has no "
                                        r"field 'nam'; its fields: b1, b2, eps, "):
    check_override(tiny_config, "optimizer.nam")
  check_override(tiny_config, "optimizer.name")  # a field: no error
