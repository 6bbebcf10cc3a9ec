"""One-shot pruning report (`config.mode = "oneshot"` runs): test accuracy and loss (and a
language model's perplexity and bits per character) of the
trained, pruned and fine-tuned networks by method, structure and density, as mean +- std
over calibration draws (and over the runs of the same setting, e.g. training seeds), and
for a single run each layer's density and reconstruction error.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from lotto.reports.common import ReportFiles, finish_report, split

REPORT_FILE = "oneshot_report.txt"
# What a oneshot run needs to be in the table.
REQUIRED = ("method", "structure", "target_density", "dense_test_accuracy")
COLUMNS = (("dense_test_accuracy", "dense acc %", 100.0),
           ("pruned_test_accuracy", "pruned acc %", 100.0),
           ("pruned_test_loss", "pruned loss", 1.0),
           ("finetuned_test_accuracy", "fine-tuned acc %", 100.0))
# A language model's runs (perplexity in their results) get these columns too.
LANGUAGE_COLUMNS = (("dense_test_perplexity", "dense ppl", 1.0),
                    ("pruned_test_perplexity", "pruned ppl", 1.0),
                    ("pruned_test_bpc", "pruned bpc", 1.0),
                    ("finetuned_test_perplexity", "fine-tuned ppl", 1.0))
DENSE_KEYS = ("dense_test_accuracy", "dense_test_perplexity")


def draws_of(result: dict) -> list[dict]:
  """A run's calibration draws (a single-draw run is its own draw), each with the run's
  dense metrics."""
  draws = result.get("draws") or [result]
  dense = {key: result[key] for key in DENSE_KEYS if key in result}
  return [{**draw, **dense} for draw in draws]


def columns_of(results: list[dict]) -> tuple[tuple[str, str, float], ...]:
  """The table's columns: accuracy and loss, and perplexity and bits per character when a
  run reports them (a language model's)."""
  language = any("dense_test_perplexity" in result for result in results)
  return COLUMNS + (LANGUAGE_COLUMNS if language else ())


def _setting(result: dict) -> tuple[str, str, float, int]:
  return (result["method"], result["structure"], round(float(result["target_density"]), 8),
          int(result.get("finetune_steps", 0)))


def _cell(values: list[float], scale: float) -> str:
  if not values:
    return "-"
  return f"{scale * np.mean(values):.2f}+-{scale * np.std(values):.2f}"


def oneshot_table(results: list[dict]) -> str:
  """One row per (method, structure, density, fine-tune steps): each column's mean +- std
  (ddof = 0) over every calibration draw of every run of that setting, and their count."""
  groups = collections.defaultdict(list)
  for result in results:
    groups[_setting(result)] += draws_of(result)
  columns = columns_of(results)
  header = (f"{'method':<10} {'structure':<12} {'density':>8} {'finetune':>9} {'draws':>5} "
            + " ".join(f"{title:>16}" for _, title, _ in columns))
  lines = ["one-shot pruning of trained runs: test metrics, mean +- std over calibration draws",
           header]
  for setting in sorted(groups):
    method, structure, density, steps = setting
    draws = groups[setting]
    cells = [_cell([d[key] for d in draws if d.get(key) is not None], scale)
             for key, _, scale in columns]
    lines.append(f"{method:<10} {structure:<12} {density:>8.4g} {f'{steps}it':>9} "
                 f"{len(draws):>5} " + " ".join(f"{cell:>16}" for cell in cells))
  return "\n".join(lines)


def layer_table(result: dict) -> str:
  """Each pruned layer of one run, in the order pruned: inputs, density and the relative
  reconstruction error of its output on its calibration inputs (mean over draws)."""
  errors = collections.defaultdict(list)
  rows = {}
  for draw in draws_of(result):
    for layer in draw.get("layers", []):
      rows.setdefault(layer["name"], layer)
      if layer.get("error") is not None:
        errors[layer["name"]].append(layer["error"])
  if not rows:
    return ""
  width = max(len("layer"), *(len(name) for name in rows))
  lines = [f"layers of {os.path.basename(result['path'].rstrip(os.sep)) or result['path']} "
           f"({result['method']} {result['structure']})",
           f"{'layer':<{width}} {'inputs':>7} {'density':>8} {'rel. error':>11}"]
  for name, layer in rows.items():
    error = f"{np.mean(errors[name]):.4g}" if errors[name] else "-"
    lines.append(f"{name:<{width}} {layer['inputs']:>7} {layer['density']:>8.2%} {error:>11}")
  return "\n".join(lines)


def write_oneshot_report(workdir: str, results: list[dict],
                         outputs: ReportFiles | None = None) -> str:
  """The one-shot table (and, for a single run, its layer table) in
  `workdir/oneshot_report.txt`; a line for each run that cannot be tabulated.

  Args:
    workdir: where the report goes.
    results: the oneshot runs' results (each with its directory as "path").
    outputs: the report's files (`write_report` shares one); by default the returned text
      ends with a line if the file could not be written.
  """
  shown, lines = split(results, REQUIRED, workdir)
  tables = [oneshot_table(shown)] if shown else []
  if len(shown) == 1 and layer_table(shown[0]):
    tables.append(layer_table(shown[0]))
  return finish_report(os.path.join(workdir, REPORT_FILE), ["\n\n".join(tables)] if tables
                       else [], lines, None, outputs)
