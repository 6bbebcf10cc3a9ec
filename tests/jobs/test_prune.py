"""The prune job: end to end, pruning later in training, ERK, CLI errors."""
import json

import numpy as np
import pytest

from lotto.core import distributions
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.jobs.prune import run_prune
from tests.jobs.test_cli import TEST_CONFIG, run_cli


@pytest.mark.slow
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
  exp = create_experiment(tiny_config)
  shapes = distributions.layer_sizes(exp.params_shape, exp.prunable)
  expected = distributions.layer_distribution("erk", 0.2, shapes)
  for name, density in results["layer_densities"].items():
    size = int(np.prod(shapes[name]))
    assert abs(density * size - expected[name] * size) <= 1.0
  assert results["achieved_density"] == pytest.approx(0.2, abs=2e-3)
