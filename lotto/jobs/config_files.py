"""Loading `get_config()` files, with one-line errors for files that cannot load."""
from __future__ import annotations

import os
import types

from lotto.core.errors import ConfigError


def load_config_file(path: str, argument: str | None = None):
  """Runs a config file and returns its `get_config(argument)` (or `get_config()`).

  Raises:
    ConfigError: the file is missing or unreadable, has a syntax error (with
      its line), fails to import, has no get_config(), or get_config raises.
  """
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path} does not exist; the shipped configs are in "
                      "configs/ (lotto --help lists them)")
  try:
    with open(path, encoding="utf-8") as handle:
      source = handle.read()
  except (OSError, UnicodeDecodeError) as error:
    raise ConfigError(f"config file {path} cannot be read: {error}") from None
  try:
    code = compile(source, path, "exec")
  except SyntaxError as error:
    raise ConfigError(f"config file {path}: syntax error at line {error.lineno}: "
                      f"{error.msg}") from None
  module = types.ModuleType("lotto_user_config")
  module.__file__ = path
  try:
    exec(code, module.__dict__)  # pylint: disable=exec-used
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
      raise ConfigError(f"config file {path} defines no get_config() function")
    return get_config(argument) if argument is not None else get_config()
  except ConfigError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    raise ConfigError(f"config file {path} failed to load: {type(error).__name__}: "
                      f"{' '.join(str(error).split())}") from None
