"""What every report shares: finding results on disk, matplotlib off-screen, writing files."""
from __future__ import annotations

import io
import os

from lotto.core.errors import StorageError
from lotto.runtime import files, runs


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (imported on first plot)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_figure(fig, path: str) -> None:
  """Lays out, writes (PNG, 120 dpi) and closes a matplotlib figure.

  Raises:
    StorageError: the directory cannot be written (one line).
  """
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=120, format="png")
  try:
    with files.open_file(path, "wb") as handle:
      handle.write(buffer.getvalue())
  except OSError as error:
    raise StorageError(f"cannot write {path}: {error.strerror or error} "
                       f"({runs.free_space(path)})") from None
  finally:
    pyplot().close(fig)


def load_results(workdir: str, mode: str) -> list[dict]:
  """Every results.json of `mode` under `workdir` (the root included), sorted by path."""
  found = []
  for root, _, names in sorted(files.walk(workdir)):
    if runs.RESULTS_FILE in names:
      result = runs.read_json(os.path.join(root, runs.RESULTS_FILE))
      if result.get("mode") == mode:
        found.append({**result, "path": root})
  return found


def with_seed(result: dict) -> dict:
  """`result` with the run's seed, read from the config.json beside it (0 if none)."""
  if "seed" in result:
    return result
  config_path = os.path.join(result["path"], runs.CONFIG_FILE)
  seed = runs.read_json(config_path).get("seed", 0) if files.exists(config_path) else 0
  return {**result, "seed": seed}
