"""Workdir files through `etils.epath`: local paths and buckets (gs://, s3://) alike.

Every file lotto reads or writes under a workdir goes through here (or
through orbax, which takes the same paths), so `--workdir=gs://bucket/run`
works wherever epath can reach the bucket (gcsfs or TensorFlow installed,
credentials set). Paths stay strings everywhere else: `os.path.join` joins
bucket paths too.

On a bucket, a rename is a copy and a delete, so "atomic" writes there are
best effort, and the workdir lock (`runtime.locks`, O_EXCL) is local only.
"""
from __future__ import annotations

import os
from typing import IO, Iterator

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
  """True for a path on this machine's filesystem (no scheme such as gs://)."""
  return "://" not in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
  """`path` made absolute if local; a bucket path unchanged."""
  path = os.fspath(path)
  return os.path.abspath(path) if is_local(path) else path


def exists(path: str | os.PathLike) -> bool:
  return epath.Path(path).exists()


def is_dir(path: str | os.PathLike) -> bool:
  return epath.Path(path).is_dir()


def listdir(path: str | os.PathLike) -> list[str]:
  """The names in directory `path`, sorted."""
  return sorted(child.name for child in epath.Path(path).iterdir())


def makedirs(path: str | os.PathLike) -> None:
  """Creates directory `path` and its parents (no error if it exists)."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def open_file(path: str | os.PathLike, mode: str = "r") -> IO:
  """Opens a file for reading or writing ("r", "w", "rb", "wb")."""
  return epath.Path(path).open(mode)


def replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
  """Renames `source` to `target`, replacing it (atomic on a local filesystem)."""
  epath.Path(source).replace(target)


def remove(path: str | os.PathLike) -> None:
  """Deletes a file; a missing one is not an error."""
  epath.Path(path).unlink(missing_ok=True)


def rmtree(path: str | os.PathLike) -> None:
  """Deletes a directory tree; a missing one is not an error."""
  target = epath.Path(path)
  if target.exists():
    target.rmtree()


def walk(top: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
  """(directory, subdirectories, files) under `top`, like `os.walk`, sorted, top first."""
  directories, names = [], []
  for child in sorted(epath.Path(top).iterdir(), key=lambda c: c.name):
    (directories if child.is_dir() else names).append(child.name)
  yield os.fspath(top), directories, names
  for name in directories:
    yield from walk(os.path.join(os.fspath(top), name))
