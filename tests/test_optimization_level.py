"""The bit-identity claims, checked at XLA's default optimization level too.

The suite runs XLA:CPU at -O0 (tests/conftest.py: it is compile-bound), but jobs
and benchmarks run at XLA's default level, where fusion and instruction order
differ. Every claim that two computations give identical bits is rerun here in a
fresh process without the -O0 flag: a dynamic run equals the static run until
its first mask change; 2 processes equal 1 process on the same global batch (each
pipeline); a population equals separate runs and resumes bit-identically; a killed
run (with masks changing during training) resumes to the same bits; the stream
pipeline trains to the resident pipeline's bits, and a streamed run killed mid-epoch
resumes to them.
"""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, XLA_DEFAULT_ENV

BIT_IDENTITY_TESTS = (
    "tests/jobs/test_sparse_train.py::"
    "test_a_dynamic_run_equals_the_static_run_until_its_first_mask_change",
    "tests/jobs/test_sparse_train.py::test_kill_between_mask_updates_and_resume_is_bit_identical",
    "tests/train/test_step.py::test_masks_and_mask_state_survive_kill_and_resume",
    "tests/runtime/test_distributed.py::"
    "test_two_processes_train_as_one_process_on_the_same_global_batch",
    "tests/jobs/test_population.py::test_rigl_population_equals_separate_runs",
    "tests/jobs/test_population.py::test_population_kill_and_resume_equals_uninterrupted",
    "tests/train/test_stream_training.py::test_stream_and_resident_train_to_identical_params",
    "tests/train/test_stream_training.py::"
    "test_kill_mid_epoch_and_resume_streaming_equals_uninterrupted_resident",
)


@pytest.mark.slow
def test_bit_identity_holds_at_xla_default_optimization_level(tmp_path):
  env = {key: value for key, value in os.environ.items()
         if key not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "PYTEST_XDIST_WORKER",
                        "PYTEST_XDIST_WORKER_COUNT", "PYTEST_CURRENT_TEST")}
  env[XLA_DEFAULT_ENV] = "1"
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
       "-m", "", "--basetemp", str(tmp_path / "run"), *BIT_IDENTITY_TESTS],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  summary = result.stdout.strip().splitlines()[-1]
  assert "failed" not in summary and "skipped" not in summary, summary
  # Every listed test ran (a parametrized test counts once per case: 12 cases in all).
  assert summary.startswith("12 passed"), summary
