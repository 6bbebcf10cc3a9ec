"""What every report shares: finding results on disk, matplotlib off-screen, writing files."""
from __future__ import annotations

import io
import os
from typing import Any, Callable

from lotto.core.errors import StorageError
from lotto.reports import faults
from lotto.runtime import runs
from lotto.runtime.devices import is_main_process


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (imported on first plot)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_figure(fig, path: str) -> None:
  """Lays out, writes (PNG, 120 dpi, atomically: `runs.write_bytes`) and closes a figure.

  Raises:
    StorageError: the directory cannot be written (one line).
  """
  try:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format="png")
    runs.write_bytes(path, buffer.getvalue())
  finally:
    pyplot().close(fig)


class ReportFiles:
  """The files one report writes (tables, plots). A directory that cannot be written (read-
  only, disk full) is not tried again, and `note` says why in one line: the tables are
  printed all the same."""

  def __init__(self):
    self.errors: dict[str, str] = {}  # directory -> the first failed write's message

  def attempt(self, directory: str, write: Callable[..., Any], *args: Any) -> Any:
    """`write(*args)` (which writes into `directory`): its value, or None if it failed or
    `directory` failed before."""
    if directory in self.errors:
      return None
    try:
      return write(*args)
    except StorageError as error:
      self.errors[directory] = str(error)
      return None

  def note(self) -> str | None:
    """One line, or None if every file was written."""
    if not self.errors:
      return None
    first = next(iter(self.errors.values()))
    more = len(self.errors) - 1
    return (f"report files (tables, plots) not written: {first}"
            + (f"; nor in {more} other director{'y' if more == 1 else 'ies'}" if more else ""))


def finish_report(path: str, tables: list[str], lines: list[str],
                  plots: Callable[[], list[str]] | None, outputs: ReportFiles | None,
                  label: str = "plots") -> str:
  """Writes a report's file at `path` (its tables, then its lines about runs not tabulated as
  they are) and, on the main process, its plots (`plots()` writes them and returns their
  paths); returns the text to print: tables, the plots' paths, the lines.

  Args:
    outputs: `write_report`'s, shared by every report; None: this report's own, and the
      text ends with a line if a file could not be written.
  """
  files_of = ReportFiles() if outputs is None else outputs
  directory = os.path.dirname(path)
  files_of.attempt(directory, runs.write_text, path, "\n".join(tables + lines) + "\n")
  written = (files_of.attempt(directory, plots)
             if plots is not None and tables and is_main_process() else None)
  text = "\n".join(tables + ([f"{label}: {', '.join(written)}"] if written else []) + lines)
  return with_note(text, files_of) if outputs is None else text


def with_note(text: str, outputs: ReportFiles) -> str:
  """`text` and, if some files were not written, the line saying why."""
  note = outputs.note()
  return text if note is None else f"{text}\n{note}"


def load_results(workdir: str, mode: str) -> list[dict]:
  """Every readable results.json of `mode` under `workdir` (the root included), sorted by path,
  each with its directory as "path". Runs that diverged are included (`faults.stopped`
  tells those with nothing to tabulate); damaged files are skipped (`faults.scan`)."""
  found, _ = faults.scan(workdir)
  return [result for result in found if result.get("mode") == mode]


def with_seed(result: dict) -> dict:
  """`result` with the run's seed, read from the config.json beside it (0 if none)."""
  if "seed" in result:
    return result
  return {**result, "seed": (faults.run_config(result["path"]) or {}).get("seed", 0)}


def split(results: list[dict], required: tuple[str, ...], workdir: str
          ) -> tuple[list[dict], list[str]]:
  """(the runs a table can show: every `required` key present, not null or empty; lines:
  for each other run, where it diverged or what its results.json lacks, and for each shown
  run that diverged, where and whether it trained on)."""
  shown, lines = [], []
  for result in results:
    missing = [key for key in required if result.get(key) in (None, [])]
    if missing:
      lines.append(faults.unreported_line(result, workdir, missing))
      continue
    shown.append(result)
    if result.get("diverged"):
      lines.append(faults.diverged_line(result, workdir, shown=True))
  return shown, lines

