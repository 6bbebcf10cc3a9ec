"""Machine-dependent fields, resolved once where a job starts: SynFlow's dtype by backend
(never float64 on a TPU), the global batch from a per-device batch, and the one-line errors
for a batch that does not divide over the devices."""
import jax
import pytest

from lotto.core.errors import ConfigError
from lotto.jobs import backend
from lotto.jobs.experiment import canonical_config, create_experiment
from lotto.runtime import devices
from lotto.runtime.identity import config_hash


@pytest.mark.parametrize("machine, resolved", [("cpu", "float64"), ("gpu", "float64"),
                                               ("tpu", "float32_rescaled")])
def test_auto_synflow_dtype_is_float64_only_where_the_backend_has_it(machine, resolved):
  assert backend.synflow_dtype("auto", machine) == resolved
  assert backend.synflow_dtype("float32", machine) == "float32"


def test_float64_asked_of_a_tpu_and_an_unknown_dtype_are_one_line():
  assert backend.synflow_dtype("float64", "gpu") == "float64"
  with pytest.raises(ConfigError, match=r"^prune.synflow_dtype=float64 asks a TPU for 64-bit "
                                        r"arithmetic .*use prune.synflow_dtype=auto"):
    backend.synflow_dtype("float64", "tpu")
  with pytest.raises(ConfigError, match=r"^unknown prune.synflow_dtype 'float16'; valid "
                                        r"choices: auto, float64, float32_rescaled, float32$"):
    backend.synflow_dtype("float16", "cpu")


def test_the_global_batch_from_a_per_device_batch(monkeypatch):
  monkeypatch.setattr(backend.jax, "device_count", lambda: 8)
  assert backend.global_batch_size(0, 16, "auto") == 128
  assert backend.global_batch_size(0, 16, "on") == 128
  assert backend.global_batch_size(0, 16, "off") == 16  # one device trains the batch
  assert backend.global_batch_size(60, 0, "auto") == 60
  with pytest.raises(ConfigError, match=r"^data.batch_size=60 and data.per_device_batch_size=16 "
                                        r"are both set; set data.batch_size=0 to use the "
                                        r"per-device batch \(global batch 16 x 8 devices = 128\)"):
    backend.global_batch_size(60, 16, "auto")
  with pytest.raises(ConfigError, match=r"^data.per_device_batch_size must be a non-negative"):
    backend.global_batch_size(0, -4, "auto")
  with pytest.raises(ConfigError, match=r"^data.batch_size must be a positive integer; got 0$"):
    backend.global_batch_size(0, 0, "auto")


def test_resolving_twice_changes_nothing_and_keeps_the_main_jobs_hash(tiny_config):
  from tests.conftest import load_config  # pylint: disable=import-outside-toplevel
  main = backend.resolve(load_config("mnist1d_mlp"))
  assert main.prune.synflow_dtype == "float64"  # on this CPU
  # The main job's run name as published before these fields existed.
  assert config_hash(canonical_config(main)) == "b5e43a2d2f7a"
  tiny_config.data.batch_size = 0
  tiny_config.data.per_device_batch_size = 25
  once = backend.resolve(tiny_config)
  assert (once.data.batch_size, once.data.per_device_batch_size) == (25 * jax.device_count(), 0)
  assert canonical_config(backend.resolve(once)) == canonical_config(once)
  assert create_experiment(tiny_config).batch_size == 25 * jax.device_count()
  # A non-default precision is another run.
  tiny_config.train.precision = "bfloat16"
  assert config_hash(canonical_config(backend.resolve(tiny_config))) != config_hash(
      canonical_config(once))


def test_a_batch_that_does_not_divide_over_the_devices_names_the_nearest_sizes(monkeypatch):
  monkeypatch.setattr(devices.jax, "devices", lambda: [object()] * 8)
  with pytest.raises(ConfigError, match=r"^data.batch_size=60 is not divisible by the 8 devices; "
                                        r"the nearest valid sizes are 56 or 64 \(or set "
                                        r"data.per_device_batch_size with data.batch_size=0, or "
                                        r"data_parallel=off\)$"):
    devices.create_mesh("auto", 60)
  with pytest.raises(ConfigError, match=r"the nearest valid sizes are 8 \("):
    devices.create_mesh("on", 5)
