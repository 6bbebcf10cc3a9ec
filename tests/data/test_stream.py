"""The stream pipeline's reader: the resident order exactly, lotto's array_record files,
each process's own columns, bounded read-ahead, damaged files, and the pipeline choice."""
import os

import numpy as np
import pytest

from lotto import data as data_lib
from lotto.core.errors import ConfigError, DataError
from lotto.data import stream as stream_lib
from lotto.data.examples import ArrayExamples, RecordExamples, write_examples


def _coded(n=60, shape=(2, 3)):
  """Example i is filled with i (uint16) and labelled i % 10: any read is checkable."""
  x = np.broadcast_to(np.arange(n, dtype=np.uint16).reshape(n, *[1] * len(shape)),
                      (n, *shape)).copy()
  return x, (np.arange(n) % 10).astype(np.int32)


class _Spy(ArrayExamples):
  """ArrayExamples that records every index it is asked for."""

  def __init__(self, x, y):
    super().__init__(x, y)
    self.asked = []

  def read(self, indices):
    self.asked.extend(int(i) for i in indices)
    return super().read(indices)


def test_the_stream_reads_the_resident_order_across_epochs_restarts_and_replicas():
  x, y = _coded()
  stream = data_lib.StepStream(ArrayExamples(x, y), batch_size=8, group_steps=3)
  # 60 examples, batch 8: 7 steps per epoch, so steps 5..19 cross two epoch boundaries.
  for start, count in ((0, 5), (5, 4), (9, 11), (3, 2), (3, 6)):  # (3, ...): a rewind
    got_x, got_y = stream.take([4], start, count)
    rows = data_lib.batch_indices(4, 60, 8, start, count)
    np.testing.assert_array_equal(got_x, x[rows])
    np.testing.assert_array_equal(got_y, y[rows])
    assert got_x.shape == (count, 8, 2, 3)
  got_x, _ = stream.take([5], 9, 2)  # another seed: its own order
  np.testing.assert_array_equal(got_x, x[data_lib.batch_indices(5, 60, 8, 9, 2)])
  stream.close()
  population = data_lib.StepStream(ArrayExamples(x, y), 8, group_steps=2, replica_axis=True)
  got_x, got_y = population.take([0, 1, 2], 6, 5)
  rows = np.stack([data_lib.batch_indices(s, 60, 8, 6, 5) for s in (0, 1, 2)], axis=1)
  assert got_x.shape == (5, 3, 8, 2, 3)
  np.testing.assert_array_equal(got_x, x[rows])
  np.testing.assert_array_equal(got_y, y[rows])
  population.close()


def test_each_process_reads_only_its_own_columns_of_every_global_batch():
  # A global batch of 12 over 4 devices on 2 processes (simulated): process 0 owns
  # columns 0..5, process 1 columns 6..11, as devices.local_columns gives them.
  x, y = _coded()
  rows = data_lib.batch_indices(7, 60, 12, 2, 6)
  parts = []
  for columns in ((0, 6), (6, 12)):
    spy = _Spy(x, y)
    stream = data_lib.StepStream(spy, 12, group_steps=6, columns=columns, end_step=8)
    got_x, got_y = stream.take([7], 2, 6)
    stream.close()
    assert got_x.shape == (6, 6, 2, 3)
    # It read exactly its columns of steps 2..7, in order, and nothing of the others.
    assert spy.asked == rows[:, columns[0]:columns[1]].reshape(-1).tolist()
    parts.append((got_x, got_y))
  np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], axis=1), x[rows])
  np.testing.assert_array_equal(np.concatenate([p[1] for p in parts], axis=1), y[rows])


def test_read_ahead_is_bounded_by_the_prefetch_depth():
  x, y = _coded(600)
  spy = _Spy(x, y)
  stream = data_lib.StepStream(spy, batch_size=10, group_steps=4, end_step=1000)
  stream.take([0], 0, 1)
  stream.close()  # waits for nothing, but no read starts after this
  # One group handed over and PREFETCH_CHUNKS groups read ahead, never more (however many
  # steps remain): 3 groups of 4 steps of 10 examples.
  assert len(spy.asked) <= (1 + stream_lib.PREFETCH_CHUNKS) * 4 * 10


def test_record_files_round_trip_in_any_order(tmp_path):
  x, y = _coded(50)
  written = write_examples(str(tmp_path / "set"), x, y, num_files=3)
  opened = RecordExamples(str(tmp_path / "set"))
  assert len(opened) == 50 and opened.example_shape == (2, 3) and opened.label_shape == ()
  order = np.array([49, 0, 17, 16, 33, 17, 34])  # across all three files, one twice
  for source in (written, opened):
    got_x, got_y = source.read(order)
    assert got_x.dtype == np.uint16 and got_y.dtype == np.int32
    np.testing.assert_array_equal(got_x, x[order])
    np.testing.assert_array_equal(got_y, y[order])
  # Sequence labels (next-token targets): an int32 array per example.
  tokens = np.arange(40, dtype=np.uint8).reshape(5, 8)
  targets = (np.arange(40).reshape(5, 8) + 1).astype(np.int32)
  sequences = write_examples(str(tmp_path / "seq"), tokens, targets)
  got_x, got_y = sequences.read(np.array([4, 1]))
  np.testing.assert_array_equal(got_x, tokens[[4, 1]])
  np.testing.assert_array_equal(got_y, targets[[4, 1]])


def test_a_missing_or_truncated_file_is_one_line_naming_it(tmp_path):
  x, y = _coded(300, shape=(64,))
  write_examples(str(tmp_path / "set"), x, y, num_files=2)
  second = str(tmp_path / "set" / "examples-00001-of-00002.array_record")
  source = RecordExamples(str(tmp_path / "set"))
  intact = open(second, "rb").read()
  # Cut short while open (midway through a run): the next read of that file names it.
  with open(second, "r+b") as handle:
    handle.truncate(len(intact) // 2)
  source.read(np.array([0, 1]))  # the first file still reads
  with pytest.raises(DataError, match=rf"^dataset file {second} is truncated \(\d+ of "
                     rf"{len(intact)} bytes\); restore or rewrite it") as caught:
    source.read(np.array([3, 290]))
  assert "\n" not in str(caught.value) and caught.value.path == second
  # Opening damaged files: truncated, then missing.
  with pytest.raises(DataError, match=rf"^dataset file {second} is truncated"):
    RecordExamples(str(tmp_path / "set"))
  os.remove(second)
  with pytest.raises(DataError, match=rf"^dataset file {second} is missing"):
    RecordExamples(str(tmp_path / "set"))
  with pytest.raises(DataError, match=r"examples.json is missing"):
    RecordExamples(str(tmp_path / "nowhere"))
  # Restored, it reads again as written.
  with open(second, "wb") as handle:
    handle.write(intact)
  np.testing.assert_array_equal(RecordExamples(str(tmp_path / "set")).read(np.array([290]))[0],
                                x[[290]])


def test_a_file_damaged_under_the_reader_threads_raises_at_the_take_that_needs_it(tmp_path):
  x, y = _coded(200, shape=(16,))
  source = write_examples(str(tmp_path / "set"), x, y)
  path = source.files[0].path
  stream = data_lib.StepStream(source, 10, group_steps=2, end_step=100)
  stream.take([0], 0, 2)
  with open(path, "r+b") as handle:
    handle.truncate(100)
  with pytest.raises(DataError, match=rf"^dataset file {path} is truncated"):
    for start in range(2, 40, 2):
      stream.take([0], start, 2)
  stream.close()


def test_auto_picks_resident_under_the_limit_and_stream_over_it():
  mb = 2**20
  assert stream_lib.choose_pipeline("auto", 10 * mb, 10.0, "cifar10") == "resident"
  assert stream_lib.choose_pipeline("auto", 10 * mb + 1, 10.0, "cifar10") == "stream"
  assert stream_lib.choose_pipeline("stream", 1, 10.0, "cifar10") == "stream"
  assert stream_lib.choose_pipeline("resident", 10 * mb, 10.0, "cifar10") == "resident"
  with pytest.raises(ConfigError, match=r"^data.pipeline=resident: the imagenet training set "
                     r"takes about 146,000 MB on the device, over data.resident_limit_mb=2048; "
                     r"use data.pipeline=stream \(or auto\)"):
    stream_lib.choose_pipeline("resident", 146_000 * mb, 2048.0, "imagenet")
  with pytest.raises(ConfigError, match=r"^unknown data.pipeline 'disk'; valid choices: auto, "
                     r"resident, stream$"):
    stream_lib.choose_pipeline("disk", 1, 1.0, "mnist")


def test_load_dataset_streams_a_tfds_training_set_without_reading_it():
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=40):
    resident = data_lib.load_dataset("cifar10", validation_size=16)
    streamed = data_lib.load_dataset("cifar10", validation_size=16, pipeline="stream")
    # 24 CIFAR images + labels = 24 * 3076 bytes: over a 0.05 MB limit, auto streams.
    auto = data_lib.load_dataset("cifar10", validation_size=16, pipeline="auto",
                                 resident_limit_mb=0.05)
    assert (resident.pipeline, streamed.pipeline, auto.pipeline) == ("resident", "stream",
                                                                      "stream")
    assert streamed.x_train is None and streamed.num_train == 24
    assert streamed.input_shape == (32, 32, 3)
    x, y = data_lib.read_all(streamed.train_examples())
  np.testing.assert_array_equal(x, resident.x_train)
  np.testing.assert_array_equal(y, resident.y_train)
  np.testing.assert_array_equal(streamed.x_val, resident.x_val)
  with pytest.raises(ConfigError, match=r"the mnist1d training set takes about 0.5 MB"):
    data_lib.load_dataset("mnist1d", 500, pipeline="resident", resident_limit_mb=0.1)
