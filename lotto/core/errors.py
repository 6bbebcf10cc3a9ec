"""lotto's exceptions: bad user input, and a run that diverged.

Anything a user can get wrong (a name, a number, a duration, a workdir that
holds another run) raises `ConfigError` with a one-line message naming what is
wrong and the valid choices; the CLI prints it and exits with code 2. A run
whose loss stops being finite raises `Diverged` (exit code 3). A dataset file that cannot
be read raises `DataError` (a `ConfigError`: exit code 2), naming the file.
"""


class ConfigError(ValueError):
  """Bad user input: an unknown name, an out-of-range value, a clash."""


class Diverged(RuntimeError):
  """Training produced a non-finite loss (with `train.on_nan = "stop"`).

  Attributes:
    step: the global step at the end of the block whose loss was not finite.
    directory: the run's directory.
    last_checkpoint: the latest checkpoint step written before it (None if none).
  """

  def __init__(self, step: int, directory: str, last_checkpoint: int | None):
    self.step, self.directory, self.last_checkpoint = step, directory, last_checkpoint
    kept = (f"the last finite checkpoint is step {last_checkpoint} in {directory}/checkpoints"
            if last_checkpoint is not None else "no checkpoint was written before it")
    super().__init__(f"training diverged: non-finite loss in the steps up to {step} of "
                     f"{directory}; {kept}; lower the learning rate, or set "
                     "train.on_nan=continue to train on")


class StorageError(ConfigError):
  """A file could not be written (disk full, read-only): one line naming the path and the
  free space, exit code 2 like other input errors, and nothing complete is lost."""


class DataError(ConfigError):
  """A dataset file is missing, truncated or unreadable (at the start or midway through a
  streamed run): one line naming the file, exit code 2 like other input errors; checkpoints
  already written stay, and a rerun resumes from the last one in the same data order."""

  def __init__(self, path: str, problem: str, advice: str = ""):
    self.path, self.problem, self.advice = path, problem, advice
    super().__init__(f"dataset file {path} is {problem}" + (f"; {advice}" if advice else ""))
