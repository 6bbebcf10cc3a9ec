"""`lotto report` on what is not there; the reports themselves are exercised by the jobs' tests."""
from tests.jobs.test_cli import run_cli


def test_report_on_empty_workdir_is_a_clear_error(tmp_path):
  result = run_cli("report", f"--workdir={tmp_path}")
  assert result.returncode == 2 and "no results (results.json of a prune" in result.stderr
