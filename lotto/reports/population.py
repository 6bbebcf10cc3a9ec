"""Population report: each replica's metrics and their mean +- std (`config.seeds` runs).

The replicas' own results (prune, imp) are also pooled by those modes'
reports; this table is the population's own summary, for every mode.
"""
from __future__ import annotations

import os

from lotto.reports.common import ReportFiles, with_note
from lotto.runtime import runs

REPORT_FILE = "population_report.txt"
# Columns a population does not pool (perplexity and bits per character: a language
# model's only) are left out.
COLUMNS = (("final_test_accuracy", "final acc %", 100.0),
           ("early_stop_test_accuracy", "early-stop acc %", 100.0),
           ("final_test_perplexity", "final ppl", 1.0),
           ("final_test_bpc", "final bpc", 1.0),
           ("density", "density %", 100.0))


def population_table(result: dict) -> str:
  """One row per seed, then mean +- std (population std, ddof=0) of each column."""
  pooled = result["pooled"]
  columns = [(key, title, scale) for key, title, scale in COLUMNS if key in pooled]
  lines = [f"population of {len(result['seeds'])} {result['base_mode']} runs in one program "
           f"({result.get('wall_time_s', 0.0):.1f} s)",
           f"{'seed':>8} " + " ".join(f"{title:>17}" for _, title, _ in columns)]
  for seed in result["seeds"]:
    lines.append(f"{seed:>8} " + " ".join(
        _cell(pooled[key]["values"].get(str(seed)), scale) for key, _, scale in columns))
  pooled_cells = ["-" if pooled[key].get("mean") is None or pooled[key].get("std") is None
                  else f"{scale * pooled[key]['mean']:.2f}+-{scale * pooled[key]['std']:.2f}"
                  for key, _, scale in columns]
  lines.append(f"{'mean+-sd':>8} " + " ".join(f"{cell:>17}" for cell in pooled_cells))
  return "\n".join(lines)


def _cell(value: float | None, scale: float) -> str:
  """A seed's value, "-" if it was not finite (null: a replica that trained on through a
  divergence)."""
  return f"{'-':>17}" if value is None else f"{scale * value:>17.2f}"


def write_population_report(populations: list[dict], outputs: ReportFiles | None = None) -> str:
  """Writes each population's table into its directory; returns the tables to print (with a
  line for a file that could not be written, unless `outputs` is `write_report`'s)."""
  parts = []
  files_of = ReportFiles() if outputs is None else outputs
  for result in populations:
    text = population_table(result)
    path = os.path.join(result["path"], REPORT_FILE)
    written = files_of.attempt(result["path"], _write, path, text)
    parts.append(f"{text}\n(written to {path})" if written else text)
  text = "\n\n".join(parts)
  return with_note(text, files_of) if outputs is None else text


def _write(path: str, text: str) -> bool:
  runs.write_text(path, text + "\n")
  return True
