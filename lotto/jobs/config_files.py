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
    separator = ""
    if argument is not None:
      separator = (f" (in --config=FILE:ARGUMENT a ':' ends the file name: the file here is "
                   f"{path!r} and {argument!r} is the argument passed to its get_config)")
    raise ConfigError(f"config file {path} does not exist{separator}; the shipped configs are "
                      "in configs/ (lotto --help lists them)")
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


def check_override(config, dotted: str) -> None:
  """Checks that `--config.<dotted>=...` names a field of `config`, before absl sets it.

  Raises:
    ConfigError: a key that is not there (naming the section's fields), or a key
      below a field that is a value, not a section (naming the field and its type).
  """
  node, walked = config, []
  for key in dotted.split("."):
    if not hasattr(node, "keys"):  # a value: nothing lies below it
      field = ".".join(walked)
      raise ConfigError(f"--config.{dotted}: config.{field} is a {type(node).__name__} field "
                        f"(now {node!r}), not a section with a field {key!r}; set it as "
                        f"--config.{field}=VALUE")
    if key not in node.keys():
      where = f"config.{'.'.join(walked)}" if walked else "the config"
      raise ConfigError(f"--config.{dotted}: {where} has no field {key!r}; its fields: "
                        f"{', '.join(sorted(node.keys()))}")
    node = node[key]
    walked.append(key)
