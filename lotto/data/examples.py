"""Random-access training examples: what the `stream` pipeline reads, a batch at a time.

Sources behind one interface (`Examples`: its length, `read(indices)` -> the
examples and labels at those indices, in that order, and the shape and dtype of one
example):

- `ArrayExamples`: arrays in host memory (MNIST-1D and mnist_5k are generated or
  shipped in a package, so they are in memory whatever the pipeline);
- `RecordExamples`: lotto's own array_record files (`write_examples`), read with
  array_record's reader: one record per example, its int32 label(s)
  (little-endian) followed by the example's raw bytes, and an `examples.json` that
  records the shapes, dtype and every file's record count and size;
- `TfdsExamples` (`lotto.data.tfds`): a prepared tfds dataset's split
  (`tfds.data_source` over its array_record files).

`Subset` takes some rows of another source: the training split without the
validation examples `load_dataset` holds out.

A file that is missing, truncated or unreadable, whether found when the source is
opened or midway through a run, raises `DataError` naming the file (the CLI prints
one line and exits 2; a rerun resumes from the last checkpoint in the same order).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from array_record.python import array_record_module

from lotto.core.errors import DataError

INDEX_FILE = "examples.json"
RECORD_FORMAT = "lotto.examples/1"  # int32 label(s), then the example's bytes


class Examples(Protocol):
  """A random-access set of labelled examples (labels are int32: one per example, or an
  array per example, e.g. next-token labels)."""
  example_shape: tuple[int, ...]
  example_dtype: np.dtype
  label_shape: tuple[int, ...]

  def __len__(self) -> int: ...

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(examples [n, *example_shape], int32 labels [n, *label_shape]) at `indices`, in
    their order."""

  def labels(self) -> np.ndarray:
    """Every example's label (int32 [len, *label_shape])."""


def label_bytes(examples: Examples) -> int:
  """Bytes of one example's int32 label(s)."""
  return 4 * int(np.prod(examples.label_shape, dtype=np.int64))


def example_bytes(examples: Examples) -> int:
  """Bytes of one example and its label as the device holds them (the resident estimate)."""
  return int(np.prod(examples.example_shape, dtype=np.int64)) * np.dtype(
      examples.example_dtype).itemsize + label_bytes(examples)


def read_all(examples: Examples, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Every example and label of `examples`, read `chunk` at a time."""
  parts = [examples.read(np.arange(s, min(s + chunk, len(examples))))
           for s in range(0, len(examples), chunk)]
  if not parts:
    return (np.zeros((0, *examples.example_shape), examples.example_dtype),
            np.zeros((0, *examples.label_shape), np.int32))
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class Subset:
  """The examples of another source at `rows` (a training split without its held-out
  validation examples)."""

  def __init__(self, examples: Examples, rows: np.ndarray):
    self.examples, self.rows = examples, np.asarray(rows, np.int64)
    self.example_shape, self.example_dtype = examples.example_shape, examples.example_dtype
    self.label_shape = examples.label_shape
    # A source that makes its own training views (`lotto.data.cropped_images`) stays one.
    self.host_augment = bool(getattr(examples, "host_augment", False))

  def __len__(self) -> int:
    return len(self.rows)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The source's examples at rows[indices]."""
    return self.examples.read(self.rows[np.asarray(indices).reshape(-1)])

  def read_augmented(self, indices: np.ndarray, seeds: np.ndarray, steps: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The source's training views at rows[indices] (keyed by the source's rows)."""
    return self.examples.read_augmented(self.rows[np.asarray(indices).reshape(-1)], seeds,
                                        steps)

  def labels(self) -> np.ndarray:
    """Every label (read from the source)."""
    return read_all(self)[1]


class ArrayExamples:
  """Examples held in host memory (`x[indices]`, `y[indices]`)."""

  def __init__(self, x: np.ndarray, y: np.ndarray):
    self.x, self.y = x, np.asarray(y, np.int32)
    self.example_shape, self.example_dtype = tuple(x.shape[1:]), x.dtype
    self.label_shape = tuple(self.y.shape[1:])

  def __len__(self) -> int:
    return len(self.x)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x[indices], y[indices])."""
    return self.x[indices], self.y[indices]

  def labels(self) -> np.ndarray:
    """Every label."""
    return self.y


@dataclasses.dataclass(frozen=True)
class RecordFile:
  """One array_record file of a source: its path, its records, its size when written
  (None: not recorded, as for tfds's files)."""
  path: str
  records: int
  size: int | None = None


def locate(files: Sequence[RecordFile], index: int) -> RecordFile:
  """The file that holds record `index` of the files' concatenation."""
  for file in files:
    if index < file.records:
      return file
    index -= file.records
  return files[-1]


def damaged_file(files: Sequence[RecordFile]) -> tuple[str, str] | None:
  """(path, what is wrong) of the first file that is missing, shorter than recorded or
  whose index cannot be read; None when all look intact."""
  for file in files:
    if not os.path.exists(file.path):
      return file.path, "missing"
    size = os.path.getsize(file.path)
    if file.size is not None and size != file.size:
      return file.path, f"truncated ({size} of {file.size} bytes)"
    try:
      reader = array_record_module.ArrayRecordReader(file.path)
      count = reader.num_records()
      reader.close()
    except (RuntimeError, OSError, ValueError) as error:
      return file.path, f"truncated or unreadable ({' '.join(str(error).split())[:120]})"
    if count < file.records:
      return file.path, f"truncated ({count} of {file.records} records)"
  return None


def read_guarded(files: Sequence[RecordFile], what: str, keys: Sequence[int],
                 read: Callable[[Sequence[int]], Any]) -> Any:
  """`read(keys)`, with any failure turned into a `DataError` naming the damaged file
  (or the file that holds the first key, or `what` when the files are not known)."""
  try:
    return read(keys)
  except DataError:
    raise
  except Exception as error:  # readers and decoders raise many unrelated types
    reason = " ".join(str(error).split())[:160] or type(error).__name__
    raise _damage(files, what, keys, f"unreadable ({reason})") from None


def _damage(files: Sequence[RecordFile], what: str, keys: Sequence[int],
            fallback: str) -> DataError:
  advice = "restore or rewrite it and rerun: the run resumes from its last checkpoint"
  if not files:
    return DataError(what, fallback, advice)
  found = damaged_file(files)
  if found is not None:
    return DataError(found[0], found[1], advice)
  return DataError(locate(files, int(keys[0]) if len(keys) else 0).path, fallback, advice)


class RecordExamples:
  """lotto's array_record files of one example set (`write_examples`).

  Each file has one thread-safe `ArrayRecordReader` (opened at the first read, as
  grain's `ArrayRecordDataSource` does); a read splits its indices over the files
  with numpy and reads each file's records in one call. (grain's data source splits
  them in Python per record and starts a thread pool per call: 26 ms against 19 ms
  for 6,000 MNIST-sized records over 4 files on 2 cores.)
  """

  def __init__(self, directory: str):
    index_path = os.path.join(directory, INDEX_FILE)
    try:
      with open(index_path, encoding="utf-8") as handle:
        index = json.load(handle)
      if index.get("format") != RECORD_FORMAT:
        raise ValueError(f"format {index.get('format')!r}")
      self.example_shape = tuple(int(d) for d in index["shape"])
      self.example_dtype = np.dtype(index["dtype"])
      self.label_shape = tuple(int(d) for d in index["label_shape"])
      self.files = [RecordFile(os.path.join(directory, f["name"]), int(f["records"]),
                               int(f["bytes"])) for f in index["files"]]
    except FileNotFoundError:
      raise DataError(index_path, "missing", "write the examples with "
                      "lotto.data.examples.write_examples") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise DataError(index_path, f"unreadable ({error})") from None
    found = damaged_file(self.files)
    if found is not None:
      raise DataError(*found, "rewrite the examples")
    self.record_bytes = example_bytes(self)  # label and example
    self._starts = np.cumsum([0] + [f.records for f in self.files])
    self._readers: list = [None] * len(self.files)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return int(self._starts[-1])

  def _reader(self, number: int):
    with self._lock:
      if self._readers[number] is None:
        self._readers[number] = array_record_module.ArrayRecordReader(
            self.files[number].path, "readahead_buffer_size:0")
      return self._readers[number]

  def _records(self, keys: np.ndarray) -> list[bytes]:
    files = np.searchsorted(self._starts, keys, side="right") - 1
    records: list[bytes] = [b""] * len(keys)
    for number in np.unique(files):
      where = np.flatnonzero(files == number)
      positions = (keys[where] - self._starts[number]).tolist()
      for slot, record in zip(where.tolist(), self._reader(int(number)).read(positions)):
        records[slot] = record
    return records

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The examples and labels at `indices`, decoded from their records."""
    keys = np.asarray(indices, np.int64).reshape(-1)
    records = read_guarded(self.files, "", keys, self._records)
    lengths = np.fromiter(map(len, records), np.int64, len(records))
    if np.any(lengths != self.record_bytes):  # a file cut short after it was opened
      first = int(np.flatnonzero(lengths != self.record_bytes)[0])  # reads as empty records
      raise _damage(self.files, "", keys[first:], f"truncated (record {keys[first]} has "
                    f"{lengths[first]} of {self.record_bytes} bytes)")
    raw = np.frombuffer(b"".join(records), np.uint8).reshape(len(keys), self.record_bytes)
    cut = label_bytes(self)
    labels = np.ascontiguousarray(raw[:, :cut]).view("<i4").astype(np.int32)
    x = np.ascontiguousarray(raw[:, cut:]).view(self.example_dtype)
    return (x.reshape(len(keys), *self.example_shape),
            labels.reshape(len(keys), *self.label_shape))

  def labels(self) -> np.ndarray:
    """Every label (reads every record)."""
    return read_all(self)[1]


def write_examples(directory: str, x: np.ndarray, y: np.ndarray, num_files: int = 1,
                   chunk: int = 4096) -> RecordExamples:
  """Writes examples as lotto's array_record files (uncompressed, one record per example,
  group size 1 for random access) and returns them opened.

  Args:
    directory: created if needed; holds `examples.json` and the files.
    x: examples [n, ...] (any fixed shape and numeric dtype).
    y: integer labels [n] (or [n, ...]: an array of labels per example).
    num_files: how many files the examples are split over (contiguous runs).
    chunk: examples converted to records at a time (bounds the memory used).
  """
  os.makedirs(directory, exist_ok=True)
  n = len(x)
  bounds = np.linspace(0, n, num_files + 1).astype(int)
  files = []
  for number, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
    name = f"examples-{number:05d}-of-{num_files:05d}.array_record"
    writer = array_record_module.ArrayRecordWriter(os.path.join(directory, name),
                                                   "group_size:1,uncompressed")
    for start in range(begin, end, chunk):
      stop = min(start + chunk, end)
      labels = np.asarray(y[start:stop], "<i4").reshape(stop - start, -1).view(np.uint8)
      body = np.ascontiguousarray(x[start:stop]).reshape(stop - start, -1).view(np.uint8)
      for row in np.concatenate([labels, body], axis=1):
        writer.write(row.tobytes())
    writer.close()
    files.append({"name": name, "records": int(end - begin),
                  "bytes": os.path.getsize(os.path.join(directory, name))})
  index = {"format": RECORD_FORMAT, "shape": list(x.shape[1:]), "dtype": np.dtype(x.dtype).str,
           "label_shape": list(np.shape(y)[1:]), "files": files}
  with open(os.path.join(directory, INDEX_FILE), "w", encoding="utf-8") as handle:
    json.dump(index, handle, indent=1)
  return RecordExamples(directory)
