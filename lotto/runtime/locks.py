"""One process per workdir: a lock file holding the owner's pid and host.

`acquire(workdir)` creates `workdir/lock` atomically (O_EXCL). A lock held by a
live process (or by a process on another host, which cannot be checked) is a
one-line error; a lock left by a dead process on this host is taken over; the
same process may take its own lock again (a notebook re-running a cell).
Jobs release their locks when they end (`releasing_locks`), even on errors.
A workdir in a bucket (gs://) is not locked: object stores have no O_EXCL.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import socket
from typing import Iterator

from lotto.core.errors import ConfigError
from lotto.runtime import files
from lotto.runtime.devices import is_main_process, note

LOCK_FILE = "lock"
_HELD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("lotto_locks",
                                                                        default=None)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def _owner(path: str) -> dict:
  try:
    with open(path) as handle:
      return json.load(handle)
  except (OSError, ValueError):
    return {}  # half-written or unreadable: treated as stale below


def acquire(workdir: str) -> None:
  """Takes `workdir/lock` for this process (released by `releasing_locks`).

  Raises:
    ConfigError: another live process (or one on another host) holds it.
  """
  if not is_main_process():
    return
  if not files.is_local(workdir):
    note(f"workdir {workdir} is in a bucket: it is not locked (keep one process per workdir)")
    return
  path = os.path.join(workdir, LOCK_FILE)
  me = {"pid": os.getpid(), "host": socket.gethostname()}
  for _ in range(2):
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      owner = _owner(path)
      if owner == me:
        break
      if owner and (owner.get("host") != me["host"] or _alive(int(owner.get("pid", -1)))):
        raise ConfigError(
            f"workdir {workdir} is in use by process {owner.get('pid')} on host "
            f"{owner.get('host')} ({path}); wait for it to finish, or delete the lock file if "
            "that process is gone") from None
      os.remove(path)  # stale: its process died on this host
      continue
    with os.fdopen(descriptor, "w") as handle:
      json.dump(me, handle)
    break
  held = _HELD.get()
  if held is not None and path not in held:
    held.append(path)


@contextlib.contextmanager
def releasing_locks() -> Iterator[None]:
  """Releases every lock `acquire` takes inside the block when the block ends."""
  token = _HELD.set([])
  try:
    yield
  finally:
    for path in reversed(_HELD.get() or []):
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    _HELD.reset(token)
