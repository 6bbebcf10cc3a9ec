"""`lotto report` reads files only: every run under a directory is reported, of every kind."""
import json

import pytest

from lotto.reports import write_report
from tests.jobs.test_cli import run_cli


@pytest.mark.slow
def test_report_on_empty_workdir_is_a_clear_error(tmp_path):
  result = run_cli("report", f"--workdir={tmp_path}")
  assert result.returncode == 2 and "no results (results.json of a prune" in result.stderr


def _write(path, payload):
  path.mkdir(parents=True, exist_ok=True)
  (path / "results.json").write_text(json.dumps(payload))


def _imp(fraction, accuracies):
  levels = [{"level": level, "density": (1 - fraction) ** level, "final_test_accuracy": acc,
             "early_stop_test_accuracy": acc, "early_stop_step": 100}
            for level, acc in enumerate(accuracies)]
  return {"mode": "imp", "fraction": fraction, "levels": levels, "branches": []}


def _stability(accuracy):
  point = {"alphas": [0.0, 0.5, 1.0], "errors": [0.3, 0.5, 0.3], "instability": 0.2,
           "endpoint_errors": [0.3, 0.3], "density": 1.0}
  return {"mode": "stability", "points": 3, "levels": 1,
          "rewind": [{"rewind_step": 0, "dense": point, "sparse": point,
                      "ticket_accuracy": accuracy, "ticket_density": 0.8}]}


def test_every_run_of_every_kind_is_reported(tmp_path):
  _write(tmp_path / "lottery", _imp(0.2, [0.61, 0.62]))
  _write(tmp_path / "study_a", _stability(0.7))
  _write(tmp_path / "study_a" / "k_0" / "imp", _imp(0.2, [0.11, 0.12]))  # part of study_a
  _write(tmp_path / "study_b", _stability(0.6))
  text = write_report(str(tmp_path))
  assert text.count("instability = max test error") == 2  # both stability studies
  assert (tmp_path / "study_a" / "stability.png").exists()
  assert (tmp_path / "study_b" / "stability.png").exists()
  imp_table = (tmp_path / "imp_report.txt").read_text()
  # One IMP run pooled (the study's own IMP run is not a run of its own): n = 1, 61/62 %.
  rows = [line.split() for line in imp_table.splitlines()[2:]]
  assert [(r[0], r[2], r[3]) for r in rows] == [("0", "1", "61.0"), ("1", "1", "62.0")]

