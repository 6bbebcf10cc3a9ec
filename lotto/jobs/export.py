"""`lotto export --workdir=DIR`: a finished run's masked model as a compressed file.

Reads the final params and masks of a finished run from its kept checkpoint
(train and sparse_train: `DIR/checkpoints`; prune: `DIR/train/checkpoints`;
imp: `DIR/level_<L>/checkpoints` of the last level unless one is given),
compresses them (`lotto.sparse.compress_mlp`, the run's N:M or block structure
from its config.json) and writes `compressed.npz` beside them: `DIR` for a
single run, `DIR/level_<L>` for an IMP level. `lotto.sparse.load_compressed`
reads it back into a predict function.
"""
from __future__ import annotations

import dataclasses
import io
import os

import jax
import numpy as np

from lotto import sparse
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure, parse_structure
from lotto.runtime import files, runs
from lotto.runtime.checkpoints import read_saved_state

EXPORTABLE = ("train", "prune", "sparse_train", "imp")
# The config section holding each mode's mask structure.
_STRUCTURE_SECTION = {"prune": "prune", "imp": "imp", "sparse_train": "sparse"}


@dataclasses.dataclass(frozen=True)
class Exported:
  """What `export_run` wrote.

  Attributes:
    path: the compressed model file.
    size_bytes: its size on disk.
    dense_bytes: what the model's params take as dense arrays.
    surviving, total: the weights of the Dense kernels that survive, and all of them.
    step: the checkpoint step exported.
    level: the IMP level exported (None for other modes).
    kernels: each layer's kernel.
  """
  path: str
  size_bytes: int
  dense_bytes: int
  surviving: int
  total: int
  step: int
  level: int | None
  kernels: dict[str, str]

  def summary(self) -> str:
    """One line for the command line."""
    kernels = ", ".join(f"{name}={kernel}" for name, kernel in self.kernels.items())
    return (f"wrote {self.path}: {self.size_bytes / 1e3:.1f} kB for {self.surviving} of "
            f"{self.total} weights (dense params {self.dense_bytes / 1e3:.1f} kB); "
            f"kernels {kernels}")


def _finished_results(workdir: str) -> dict:
  if not files.is_dir(workdir):
    raise ConfigError(f"no run directory {workdir}")
  results = runs.read_intact(os.path.join(workdir, runs.RESULTS_FILE), ("mode",))
  if results is None:
    raise ConfigError(f"{workdir} holds no finished run (no readable {runs.RESULTS_FILE}); "
                      "finish it by re-running its command")
  stopped = results.get("complete") is False or not ("steps" in results or "levels" in results)
  if results.get("diverged") and stopped:
    raise ConfigError(f"the run in {workdir} diverged at step {results.get('diverged_at_step')} "
                      "and stopped: it has no final params")
  if results.get("complete") is False:
    raise ConfigError(f"the run in {workdir} is unfinished; re-run its command to finish it")
  return results


def check_finite(params, what: str, diverged_at: int | None = None) -> None:
  """Refuses weights with a NaN or an infinity (a run trained on through divergence).

  Raises:
    ConfigError: naming the first non-finite array and how many there are.
  """
  names = masks_lib.leaf_names(params)
  bad = [n for n, leaf in zip(names, jax.tree.leaves(params)) if not np.isfinite(leaf).all()]
  if bad:
    when = f"; the loss diverged at step {diverged_at}" if diverged_at is not None else ""
    raise ConfigError(f"{what} are not finite ({len(bad)} of {len(names)} arrays, first "
                      f"{bad[0]}{when}): nothing exported")


def _unit(workdir: str, results: dict, level: int | None) -> tuple[str, int | None]:
  """(the directory holding the final checkpoint's `checkpoints/`, the IMP level)."""
  mode = results["mode"]
  if mode == "population":
    raise ConfigError(f"{workdir} holds a population: export one replica, "
                      f"--workdir={os.path.join(workdir, 'seed_<s>')}")
  if mode.endswith("sweep"):
    raise ConfigError(f"{workdir} holds a sweep: export one cell, "
                      f"--workdir={os.path.join(workdir, 'cells', '<name>')}")
  if mode not in EXPORTABLE:
    raise ConfigError(f"cannot export a {mode} run; exportable modes: {', '.join(EXPORTABLE)}")
  if mode != "imp":
    if level is not None:
      raise ConfigError(f"--level is for IMP runs; {workdir} holds a {mode} run")
    return (os.path.join(workdir, "train") if mode == "prune" else workdir), None
  levels = [record["level"] for record in results.get("levels", [])]
  if not levels:
    raise ConfigError(f"the IMP run in {workdir} has no finished level")
  level = levels[-1] if level is None else level
  if level not in levels:
    raise ConfigError(f"level {level} is not a finished level of {workdir} (levels "
                      f"{levels[0]}..{levels[-1]})")
  return os.path.join(workdir, f"level_{level}"), level


def _structure(workdir: str, mode: str) -> Structure | None:
  """The structure the run's masks were selected under (None: unstructured or unknown)."""
  config = runs.read_intact(os.path.join(workdir, runs.CONFIG_FILE)) or {}
  text = config.get(_STRUCTURE_SECTION.get(mode, ""), {}).get("structure", "unstructured")
  try:
    return parse_structure(text)
  except ConfigError:
    return None


def export_run(workdir: str, level: int | None = None, kernel: str = sparse.AUTO,
               path: str | None = None) -> Exported:
  """Writes the compressed model of a finished run and returns its size on disk.

  Args:
    workdir: a finished train, prune, sparse_train or imp run (a replica
      `seed_<s>` of a population, or a sweep's cell, is one too).
    level: the IMP level (default: the last finished one); only for IMP runs.
    kernel: one of `lotto.sparse.KERNEL_NAMES` for every layer (default "auto").
    path: the file to write (default: `compressed.npz` in the run's directory,
      or in `level_<L>/` for IMP).

  Returns:
    What was written (`Exported`).

  Raises:
    ConfigError: a missing, unfinished or diverged run, a mode that cannot be
      exported, a bad level, a model that is not an MLP, or masks without the
      chosen kernel's structure.
  """
  results = _finished_results(workdir)
  directory, level = _unit(workdir, results, level)
  step, state = read_saved_state(os.path.join(directory, "checkpoints"))
  if "params" not in state or "masks" not in state:
    raise ConfigError(f"the checkpoint at step {step} in {directory} holds no params and masks")
  params = jax.tree.map(np.asarray, state["params"])
  masks = jax.tree.map(np.asarray, state["masks"])
  check_finite(params, f"the weights at step {step} in {directory}",
               results.get("diverged_at_step"))
  if sparse.is_condensed(params):  # sparse.execution=condensed: its layers as they are
    if kernel not in (sparse.AUTO, "condensed"):
      raise ConfigError(f"the run in {workdir} trained condensed layers: export them with "
                        f"--kernel=auto or condensed (got {kernel!r})")
    model = sparse.condensed_mlp(params, masks)
    stored = [params[n]["values" if "values" in params[n] else "kernel"] for n in model.names]
    surviving = sum(int(np.size(v)) for v in stored)
    total = sum(layer.in_features * layer.out_features for layer in model.layers)
  else:
    model = sparse.compress_mlp(params, masks, kernel, _structure(workdir, results["mode"]))
    names = list(model.names)
    surviving = sum(int(masks[n]["kernel"].sum()) for n in names)
    total = sum(int(masks[n]["kernel"].size) for n in names)
  path = path or os.path.join(directory if level is not None else workdir,
                              sparse.COMPRESSED_FILE)
  info = {"workdir": files.absolute(workdir), "mode": results["mode"], "step": step,
          "level": level, "config_hash": results.get("config_hash")}
  buffer = io.BytesIO()
  size = sparse.save_compressed(buffer, model, info)
  runs.write_bytes(path, buffer.getvalue())  # atomically, on the main process
  return Exported(path=path, size_bytes=size,
                  dense_bytes=sum(leaf.nbytes for leaf in jax.tree.leaves(params)),
                  surviving=surviving, total=total, step=step, level=level,
                  kernels=model.kernels)
