"""The compressed model on disk: it reloads and predicts the same, and `export_run` /
`lotto export` write it for a finished run (one-line errors otherwise)."""
import io
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from lotto import sparse
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.export import export_run
from lotto.models import create_model
from lotto.runtime import runs
from lotto.runtime.checkpoints import Checkpointer, read_saved_state
from lotto.topologies import fitted_radixnet
from lotto.train import optim
from lotto.train.state import create_train_state
from tests.conftest import REPO


def _radix_mlp(seed=0):
  """Random params of the test config's MLP (40-32-32-10) under the fitted RadiX-Net."""
  rng = np.random.default_rng(seed)
  shapes = {"hidden_0": (40, 32), "hidden_1": (32, 32), "output": (32, 10)}
  params = {n: {"kernel": rng.normal(size=s).astype(np.float32) / np.sqrt(s[0]),
                "bias": rng.normal(size=s[1]).astype(np.float32) * 0.1}
            for n, s in shapes.items()}
  layers = [*fitted_radixnet([40, 32, 32]), np.ones((32, 10), bool)]
  masks = {n: {"kernel": m, "bias": np.ones(m.shape[1], bool)} for n, m in zip(shapes, layers)}
  return params, masks


def test_a_saved_model_reloads_and_predicts_the_same(tmp_path):
  params, masks = _radix_mlp()
  model = sparse.compress_mlp(params, masks, {"hidden_0": "radix", "hidden_1": "nm",
                                              "output": "bcoo"})
  path = str(tmp_path / "model.npz")
  with open(path, "wb") as handle:
    size = sparse.save_compressed(handle, model, {"note": "test"})
  assert size == os.path.getsize(path)
  loaded = sparse.load_compressed(path)
  assert loaded.kernels == {"hidden_0": "radix", "hidden_1": "nm", "output": "bcoo"}
  x = np.random.default_rng(1).normal(size=(5, 40)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
  buffer = io.BytesIO()  # an open file (a bucket's) takes the same bytes
  assert sparse.save_compressed(buffer, model, {"note": "test"}) == size
  buffer.seek(0)
  np.testing.assert_array_equal(np.asarray(sparse.load_compressed(buffer)(x)), np.asarray(model(x)))
  header = sparse.read_header(path)
  assert header["info"] == {"note": "test"}
  assert header["layers"][0]["static"] == {"in_features": 40, "out_features": 32, "size": 32,
                                           "shifts": [0, 1, 2, 3], "crop": 24}
  (tmp_path / "other.npz").write_bytes(b"not a zip")
  with pytest.raises(ConfigError, match="other.npz is not a readable compressed model"):
    sparse.load_compressed(str(tmp_path / "other.npz"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished train run's files, written as `train_run` writes them (its kept final
  checkpoint `checkpoints/10` by `Checkpointer`, then results.json) without training: a
  TrainState of the test config's MLP under its fitted RadiX-Net, with Adam moments."""
  params, masks = _radix_mlp(seed=2)
  workdir = str(tmp_path_factory.mktemp("export") / "run")
  state = create_train_state(params, {}, masks, optim.create_optimizer("adam"),
                             jax.random.PRNGKey(0), step=10)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=(10,))
  checkpointer.save(10, state, {"history": []})
  checkpointer.close()
  runs.write_results(workdir, {"mode": "train", "config_hash": "0" * 12, "steps": 10})
  return workdir


def test_export_run_writes_the_final_model_with_its_size(finished_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  exported = export_run(workdir)
  assert exported.path == os.path.join(workdir, sparse.COMPRESSED_FILE)
  assert exported.size_bytes == os.path.getsize(exported.path) and exported.step == 10
  assert exported.kernels == {"hidden_0": "radix", "hidden_1": "radix", "output": "dense"}
  assert (exported.surviving, exported.total) == (160 + 256 + 320, 40 * 32 + 32 * 32 + 320)
  _, state = read_saved_state(os.path.join(workdir, "checkpoints"))
  x = np.random.default_rng(0).normal(size=(8, 40)).astype(np.float32)
  dense = create_model("mlp", 10, widths=(32, 32)).apply(
      {"params": masks_lib.apply(state["params"], state["masks"])}, x)
  np.testing.assert_allclose(np.asarray(sparse.load_compressed(exported.path)(x)),
                             np.asarray(dense), atol=1e-5)


def test_an_imp_run_exports_its_last_level_unless_told(finished_run, tmp_path):
  # An IMP layout made of the finished run's checkpoint (levels 0 and 1).
  workdir = tmp_path / "imp"
  for level in (0, 1):
    shutil.copytree(os.path.join(finished_run, "checkpoints"),
                    workdir / f"level_{level}" / "checkpoints")
  results = {"mode": "imp", "complete": True, "levels": [{"level": 0}, {"level": 1}]}
  (workdir / "results.json").write_text(json.dumps(results))
  assert export_run(str(workdir)).path == str(workdir / "level_1" / sparse.COMPRESSED_FILE)
  assert export_run(str(workdir), level=0).level == 0
  with pytest.raises(ConfigError, match="level 2 is not a finished level of .* \\(levels 0..1\\)"):
    export_run(str(workdir), level=2)
  (workdir / "results.json").write_text(json.dumps({**results, "complete": False}))
  with pytest.raises(ConfigError, match="is unfinished; re-run its command to finish it"):
    export_run(str(workdir))
  (workdir / "results.json").write_text(json.dumps({"mode": "population"}))
  with pytest.raises(ConfigError, match="holds a population: export one replica"):
    export_run(str(workdir))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "lotto.main", *args], capture_output=True,
                        text=True, timeout=120, cwd=REPO)


@pytest.mark.slow
def test_lotto_export_prints_one_line_and_exits_2_on_bad_input(finished_run, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run, workdir)
  done = _cli("export", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.startswith(f"wrote {workdir}/compressed.npz: ")
  missing = _cli("export", f"--workdir={tmp_path / 'missing'}", "--level=1")
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1] == (
      f"lotto: error: no run directory {tmp_path / 'missing'}")
