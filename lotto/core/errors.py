"""The one exception type for bad user input.

Anything a user can get wrong (a name, a number, a duration, a workdir that
holds another run) raises `ConfigError` with a one-line message naming what is
wrong and the valid choices; the CLI prints it and exits with code 2.
"""


class ConfigError(ValueError):
  """Bad user input: an unknown name, an out-of-range value, a clash."""
