"""The `lotto` command: `lotto --config=configs/<file>.py --workdir=DIR`.

`lotto report --workdir=DIR` prints the tables of every run under DIR and
(re)writes its plots. `lotto export --workdir=DIR [--level=L]` writes the
compressed model of a finished run (`lotto.jobs.export`). For sweeps,
`--list_cells` prints the cells and `--cell=i` runs only cell i (one task of
a job array).

Overrides: `--config.optimizer.learning_rate=0.01` etc. (the config is locked,
so a misspelled key is an error). `config.mode` selects the job. Bad input
prints one line `lotto: error: ...` to stderr and exits with code 2, leaving
existing files untouched.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lotto.core.errors import ConfigError, Diverged

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a get_config() file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; resumed if present).")
_CELL = flags.DEFINE_integer("cell", None, "Sweeps: run only cell i (0-based; one task of a "
                             "job array) in WORKDIR/cells/<name>.")
_LEVEL = flags.DEFINE_integer("level", None, "export: the IMP level to export (default: the "
                             "last finished one).")
_LIST_CELLS = flags.DEFINE_boolean("list_cells", False, "Sweeps: print the cells (index and "
                                   "name) that --cell indexes, and exit.")

USAGE_EXIT_CODE = 2
DIVERGED_EXIT_CODE = 3  # a non-finite loss stopped training (train.on_nan = "stop")


def _print_lines(text: str) -> None:
  """Prints to stdout; a reader that stops early (`lotto --help | head`) is not an error."""
  try:
    print(text, flush=True)
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def _fail(message: str) -> None:
  print(f"lotto: error: {message}", file=sys.stderr)
  sys.exit(USAGE_EXIT_CODE)


HELP_FLAGS = ("--help", "-help", "-h", "--h", "-?", "--helpshort")


def _config_path(argv: list[str]) -> tuple[str, str | None] | None:
  """(file, argument) named by --config=FILE[:ARGUMENT], if any."""
  for index, arg in enumerate(argv[1:], start=1):
    value = None
    if arg.startswith("--config="):
      value = arg[len("--config="):]
    elif arg == "--config" and index + 1 < len(argv):
      value = argv[index + 1]
    if value is not None:
      path, _, argument = value.partition(":")
      return path, argument or None
  return None


def _overrides(argv: list[str]) -> list[str]:
  """The dotted fields of every `--config.<field>=value` (or `--config.<field> value`)."""
  fields = []
  for arg in argv[1:]:
    if arg.startswith("--config."):
      fields.append(arg[len("--config."):].split("=", 1)[0])
  return fields


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing whose errors are one line and exit code 2; `--help` is lotto's own."""
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    from lotto.jobs import help_text  # pylint: disable=import-outside-toplevel
    _print_lines(help_text())
    sys.exit(0)
  config = _config_path(argv)
  if config is not None:
    # Loaded once here so a file that cannot load is one line, not a traceback
    # from inside config_flags (which then loads it again).
    from lotto.jobs import config_files  # pylint: disable=import-outside-toplevel
    try:
      loaded = config_files.load_config_file(*config)
      for dotted in _overrides(argv):
        config_files.check_override(loaded, dotted)
    except ConfigError as error:
      _fail(str(error))
  try:
    return FLAGS(argv)
  except flags.Error as error:
    _fail(" ".join(str(error).split()))
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    # config_flags raises these for unknown keys or wrongly typed overrides.
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    _fail(f"bad --config override: {' '.join(message.split())}")
  return []


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if argv[1:] == ["report"]:
    if not _WORKDIR.value:
      _fail("--workdir is required")
    # Imported here so `lotto --help` stays fast (no JAX).
    from lotto.reports import write_report  # pylint: disable=import-outside-toplevel
    from lotto.runtime.devices import note  # pylint: disable=import-outside-toplevel
    try:
      note(write_report(_WORKDIR.value))
    except ConfigError as error:
      _fail(str(error))
    return
  if argv[1:] == ["export"]:
    if not _WORKDIR.value:
      _fail("--workdir is required")
    from lotto.jobs.export import export_run  # pylint: disable=import-outside-toplevel
    from lotto.runtime.devices import note  # pylint: disable=import-outside-toplevel
    try:
      note(export_run(_WORKDIR.value, level=_LEVEL.value).summary())
    except ConfigError as error:
      _fail(str(error))
    return
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --config=... --workdir=...")
  if _CONFIG.value is None:
    _fail("--config is required, e.g. --config=configs/mnist1d_mlp.py")
  if not _WORKDIR.value:
    _fail("--workdir is required")
  # Imported here so `lotto --help` stays fast.
  from lotto import jobs  # pylint: disable=import-outside-toplevel
  from lotto.runtime import interrupts  # pylint: disable=import-outside-toplevel
  try:
    with interrupts.stop_on_signals():
      if _LIST_CELLS.value:
        _print_lines("\n".join(f"{index}\t{name}"
                                for index, name in enumerate(jobs.list_cells(_CONFIG.value))))
      elif _CELL.value is not None:
        jobs.run_cell(_CONFIG.value, _WORKDIR.value, _CELL.value)
      else:
        jobs.run_job(_CONFIG.value, _WORKDIR.value)
  except ConfigError as error:
    _fail(str(error))
  except Diverged as error:
    print(f"lotto: error: {error}", file=sys.stderr)
    sys.exit(DIVERGED_EXIT_CODE)
  except interrupts.Interrupted as error:
    print(f"lotto: {error}", file=sys.stderr)
    sys.exit(error.exit_code)


def run() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
