"""config.data.pipeline and config.data.resident_limit_mb at the config edge: auto's choice,
one-line errors, and a run identity that does not depend on the pipeline."""
import pytest

from lotto.core.errors import ConfigError
from lotto.jobs import backend
from lotto.jobs.experiment import canonical_config, create_experiment
from lotto.runtime import runs
from lotto.runtime.identity import config_hash
from tests.conftest import load_config
from tests.jobs.test_cli import TEST_CONFIG, run_cli


def test_auto_keeps_the_training_set_resident_under_the_limit_and_streams_it_over(tiny_config):
  assert tiny_config.data.pipeline == "auto" and tiny_config.data.resident_limit_mb == 2048.0
  assert create_experiment(tiny_config).dataset.pipeline == "resident"
  # configs/test.py's 3,800 MNIST-1D examples of 40 float32 and an int32 label: 0.59 MB.
  tiny_config.data.resident_limit_mb = 0.5
  exp = create_experiment(tiny_config)
  assert exp.dataset.pipeline == "stream" and exp.resident_limit_mb == 0.5
  tiny_config.data.resident_limit_mb = 0.6
  assert create_experiment(tiny_config).dataset.pipeline == "resident"


@pytest.mark.parametrize("field, value, message", [
    ("pipeline", "disk", "unknown data.pipeline 'disk'; valid choices: auto, resident, stream"),
    ("resident_limit_mb", 0.0, "data.resident_limit_mb must be > 0; got 0.0"),
    ("resident_limit_mb", -1.0, "data.resident_limit_mb must be > 0; got -1.0"),
])
def test_bad_pipeline_fields_are_one_line_errors(tiny_config, field, value, message):
  tiny_config.data[field] = value
  with pytest.raises(ConfigError) as error:
    create_experiment(tiny_config)
  assert str(error.value) == message


def test_a_resident_request_over_the_limit_gives_the_estimate(tiny_config):
  tiny_config.data.pipeline, tiny_config.data.resident_limit_mb = "resident", 0.1
  with pytest.raises(ConfigError) as error:
    create_experiment(tiny_config)
  assert str(error.value) == (
      "data.pipeline=resident: the mnist1d training set takes about 0.6 MB on the device, "
      "over data.resident_limit_mb=0.1; use data.pipeline=stream (or auto), or raise "
      "data.resident_limit_mb if the device has the memory")


def test_the_pipeline_is_not_part_of_a_runs_identity(tmp_path):
  main = backend.resolve(load_config("mnist1d_mlp"))
  resident = canonical_config(main)
  main.data.pipeline, main.data.resident_limit_mb = "stream", 64.0
  streamed = canonical_config(main)
  # The same numbers either way: neither field enters the hash, so the main job keeps the
  # hash it was published with, whichever pipeline it runs on.
  before = {**resident, "data": {k: v for k, v in resident["data"].items()
                                 if k not in ("pipeline", "resident_limit_mb")}}
  assert config_hash(resident) == config_hash(streamed) == config_hash(before) == "b5e43a2d2f7a"
  runs.prepare_workdir(resident, str(tmp_path))
  runs.check_workdir(streamed, str(tmp_path))  # a resident run resumes streamed


@pytest.mark.slow
def test_resident_over_the_limit_on_the_command_line_is_one_line_exit_2(tmp_path):
  result = run_cli(f"--config={TEST_CONFIG}", f"--workdir={tmp_path / 'run'}",
                   "--config.data.pipeline=resident", "--config.data.resident_limit_mb=0.1")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "lotto: error: data.pipeline=resident: the mnist1d training set takes about 0.6 MB on "
      "the device, over data.resident_limit_mb=0.1; use data.pipeline=stream (or auto), or "
      "raise data.resident_limit_mb if the device has the memory"]
  assert not (tmp_path / "run").exists()
