"""`import lotto` is enough for a notebook, and loads no JAX until an entry point is used."""
import subprocess
import sys

import pytest

import lotto
from lotto.jobs import (imp, masked_train, oneshot, prune, prune_sweep, sparse_sweep, sparse_train,
                        stability)
from lotto.reports import write_report
from tests.conftest import REPO


def test_entry_points_are_the_jobs_functions():
  assert lotto.run_train is masked_train.run_train
  assert lotto.run_prune is prune.run_prune
  assert lotto.run_sweep is prune_sweep.run_prune_sweep
  assert lotto.run_imp is imp.run_imp
  assert lotto.run_stability is stability.run_stability
  assert lotto.run_sparse_train is sparse_train.run_sparse_train
  assert lotto.run_sparse_sweep is sparse_sweep.run_sparse_sweep
  assert lotto.run_oneshot is oneshot.run_oneshot
  assert lotto.write_report is write_report
  config = lotto.load_config(str(REPO / "configs" / "test.py"))
  assert config.model.widths == (32, 32) and lotto.get_base_config().mode == "train"
  with pytest.raises(AttributeError, match="no attribute 'run_everything'"):
    lotto.run_everything  # pylint: disable=pointless-statement


def test_import_lotto_loads_no_jax():
  code = "import sys, lotto; print('jax' in sys.modules, 'flax' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       check=True).stdout.split()
  assert out == ["False", "False"]
