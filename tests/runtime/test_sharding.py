"""Data parallelism: the sharded step equals the single-device step (8 CPU devices), and
the stream pipeline's sharded batches give the resident sharded run's bits."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from tests.conftest import load_config
    from lotto.jobs.experiment import create_experiment
    from lotto.train.trainer import Trainer
    assert len(jax.devices()) == 8, jax.devices()
    config = load_config("test")
    config.data.batch_size = 64
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.data_parallel = "off"
    single = Trainer(create_experiment(config))
    config.data_parallel = "on"
    sharded = Trainer(create_experiment(config))
    assert sharded.experiment.mesh is not None and single.experiment.mesh is None
    a = single.place(single.experiment.init_state())
    b = sharded.place(sharded.experiment.init_state())
    for step in range(5):
      a, ma = single.run_block(a, 1)
      b, mb = sharded.run_block(b, 1)
      jax.block_until_ready((a, b))  # no long unsynchronised collective chains
      np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
    kernel = b.params["hidden_0"]["kernel"]
    assert len(kernel.sharding.device_set) == 8 and kernel.sharding.is_fully_replicated
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    # The stream pipeline on the same mesh: its host-read batches, sharded 8 ways, give
    # the resident sharded run's bits (chunks of 2 steps of 64 x 164 bytes: 0.33 MB / 16).
    config.data.pipeline, config.data.resident_limit_mb = "stream", 0.33
    streamed = Trainer(create_experiment(config))
    assert streamed.pipeline == "stream" and streamed._feed.chunk == 2
    c = streamed.place(streamed.experiment.init_state())
    b = sharded.place(sharded.experiment.init_state())
    for count in (3, 4):
      b, mb = sharded.run_block(b, count)
      c, mc = streamed.run_block(c, count)
      np.testing.assert_array_equal(mb["loss"], mc["loss"])
    for x, y in zip(jax.tree.leaves(b), jax.tree.leaves(c)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    print("SHARDED_OK")
""")


@pytest.mark.slow
def test_sharded_step_equals_single_device_step(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  env.setdefault("LOTTO_CACHE", str(tmp_path))
  result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO)
  assert "SHARDED_OK" in result.stdout, result.stderr[-3000:]
