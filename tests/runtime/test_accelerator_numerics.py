"""Every mode on several simulated devices with TPU numerics: x64 off and never switched on
(SynFlow's "auto" dtype resolves to float32_rescaled), the global batch from a per-device
batch, and the same numbers whatever the device count."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    # A TPU as lotto sees one: its backend name, and no 64-bit arithmetic at all.
    jax.default_backend = lambda: "tpu"
    def no_x64(*args, **kwargs):
      raise AssertionError("a program asked for 64-bit arithmetic")
    jax.enable_x64 = no_x64
    import lotto
    from tests.conftest import load_config
    assert not jax.config.jax_enable_x64
    workdir, count = sys.argv[1], len(jax.devices())
    results = {}
    for mode, extra in [("train", {}), ("prune", {"method": "synflow"}), ("imp", {}),
                        ("sparse_train", {})]:
      config = load_config("test")
      config.mode = mode
      config.data.batch_size = 0
      config.data.per_device_batch_size = 48 // count  # the same global batch, 48
      config.imp.levels = 2
      config.imp.rewind = "10it"  # theta_k restored onto the mesh, masked by host-made masks
      config.prune.iterations = 5
      for key, value in extra.items():
        config.prune[key] = value
      out = lotto.run_job(config, f"{workdir}/{mode}")
      saved = json.load(open(f"{workdir}/{mode}/config.json"))
      assert saved["data"]["batch_size"] == 48 and saved["prune"]["synflow_dtype"] == \\
          "float32_rescaled", saved
      results[mode] = out
    print("RESULTS", json.dumps({m: r.get("final_test_accuracy", r.get("levels", [{}])[-1]
                                          .get("final_test_accuracy")) for m, r in results.items()}))
""")


def _run(tmp_path, count):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count} "
             + os.environ.get("XLA_FLAGS", ""), JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0",
             PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"d{count}")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULTS ")]
  assert lines, result.stderr[-3000:]
  return json.loads(lines[0][len("RESULTS "):])


@pytest.mark.slow
def test_every_mode_runs_on_several_devices_without_64_bit_arithmetic(tmp_path):
  one, four = _run(tmp_path, 1), _run(tmp_path, 4)
  assert set(one) == {"train", "prune", "imp", "sparse_train"}
  for mode in one:
    assert one[mode] is not None and 0.0 <= one[mode] <= 1.0, (mode, one[mode])
    # The same global batch split over 4 devices: the same accuracy up to summation order.
    assert abs(one[mode] - four[mode]) <= 0.02, (mode, one[mode], four[mode])
