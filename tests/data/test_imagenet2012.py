"""imagenet2012 under tfds.testing.mock_data: streamed only, every split as host-cropped
views of `data.image_size`, training views keyed by (seed, step, example), resumable
streams, streamed evaluation, and its one-line errors."""
import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lotto import data as data_lib
from lotto.core.errors import ConfigError
from lotto.data import crops
from lotto.train.streamed_eval import StreamedEvalSet, eval_set

SIZE = 8
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def mocked():
  """The mocked imagenet2012 (12 images of varying sizes per split) and its raw splits."""
  with tfds.testing.mock_data(num_examples=12):
    dataset = data_lib.load_dataset("imagenet2012", validation_size=2, image_size=SIZE,
                                    pipeline="auto")
    train = tfds.data_source("imagenet2012", split="train")
    test = tfds.data_source("imagenet2012", split="validation")
    raw = {"train": [(np.asarray(train[i]["image"]), int(train[i]["label"]))
                     for i in range(len(train))],
           "test": [(np.asarray(test[i]["image"]), int(test[i]["label"]))
                    for i in range(len(test))]}
    yield dataset, raw


def _expected_steps(dataset, raw, seed, first, count, batch):
  """The training views of steps [first, first + count), built here from the raw images:
  each example's view keyed by (seed, step, its index in the train split)."""
  rows = dataset.train_source.rows  # train-split indices of the training examples
  xs, ys = [], []
  for step in range(first, first + count):
    order = data_lib.batch_indices(seed, len(rows), batch, step, 1)[0]
    xs.append([crops.train_view(raw["train"][rows[r]][0], SIZE,
                                crops.example_uniforms(seed, step, rows[r])) for r in order])
    ys.append([raw["train"][rows[r]][1] for r in order])
  return np.asarray(xs, np.uint8), np.asarray(ys, np.int32)


def test_imagenet2012_is_streamed_as_views_of_the_image_size(mocked):
  dataset, raw = mocked
  assert {len(image.shape) for image, _ in raw["train"]} == {3}
  assert len({image.shape for image, _ in raw["train"]}) > 1  # the sizes vary
  assert dataset.pipeline == "stream" and dataset.x_train is None and dataset.num_train == 10
  assert dataset.input_shape == (SIZE, SIZE, 3) and dataset.num_classes == 1000
  assert not dataset.augment  # nothing inside the step: the views are made on the host
  assert (dataset.scale, dataset.mean, dataset.std) == (1 / 255, (0.485, 0.456, 0.406),
                                                        (0.229, 0.224, 0.225))
  assert dataset.streams_evaluation and dataset.x_test is None and dataset.x_val is None
  x, y = dataset.eval_examples("test").read(np.arange(12))
  np.testing.assert_array_equal(x, [crops.eval_view(image, SIZE) for image, _ in raw["test"]])
  np.testing.assert_array_equal(y, [label for _, label in raw["test"]])
  val_rows = dataset.val_source.rows
  x, _ = dataset.eval_examples("val").read(np.arange(2))
  np.testing.assert_array_equal(x, [crops.eval_view(raw["train"][r][0], SIZE) for r in val_rows])
  assert not set(val_rows) & set(dataset.train_source.rows)


def test_the_stream_feeds_each_step_its_keyed_views_in_batch_order(mocked):
  dataset, raw = mocked
  stream = data_lib.StepStream(dataset.train_examples(), 4, group_steps=2, end_step=6,
                               threads=2)
  x, y = stream.take((3,), 0, 6)
  stream.close()
  expected_x, expected_y = _expected_steps(dataset, raw, 3, 0, 6, 4)
  assert x.shape == (6, 4, SIZE, SIZE, 3)
  np.testing.assert_array_equal(x, expected_x)
  np.testing.assert_array_equal(y, expected_y)
  # 10 examples, batch 4: 2 steps per epoch; an example seen in epochs 0 and 1 is
  # cropped differently (its step differs).
  rows = dataset.train_source.rows
  epoch0 = {rows[r]: (s, c) for s in range(2)
            for c, r in enumerate(data_lib.batch_indices(3, 10, 4, s, 1)[0])}
  epoch1 = {rows[r]: (s, c) for s in range(2, 4)
            for c, r in enumerate(data_lib.batch_indices(3, 10, 4, s, 1)[0])}
  both = sorted(set(epoch0) & set(epoch1))
  assert both
  assert not all(np.array_equal(x[epoch0[e]], x[epoch1[e]]) for e in both)


def test_a_resumed_stream_equals_the_uninterrupted_one(mocked):
  dataset, _ = mocked
  whole = data_lib.StepStream(dataset.train_examples(), 4, group_steps=3, end_step=7, threads=2)
  x, y = whole.take((5,), 0, 7)
  whole.close()
  first = data_lib.StepStream(dataset.train_examples(), 4, group_steps=3, end_step=7, threads=1)
  head = first.take((5,), 0, 3)
  first.close()  # killed; a new process resumes at step 3 with other chunks and threads
  second = data_lib.StepStream(dataset.train_examples(), 4, group_steps=2, end_step=7,
                               threads=2)
  tail = second.take((5,), 3, 4)
  second.close()
  np.testing.assert_array_equal(np.concatenate([head[0], tail[0]]), x)
  np.testing.assert_array_equal(np.concatenate([head[1], tail[1]]), y)


def test_a_population_and_a_process_read_their_own_seeds_and_columns(mocked):
  dataset, raw = mocked
  stream = data_lib.StepStream(dataset.train_examples(), 4, group_steps=2, replica_axis=True,
                               columns=(1, 3), end_step=3, threads=2)
  x, y = stream.take((3, 8), 0, 3)
  stream.close()
  assert x.shape == (3, 2, 2, SIZE, SIZE, 3)
  for k, seed in enumerate((3, 8)):
    expected_x, expected_y = _expected_steps(dataset, raw, seed, 0, 3, 4)
    np.testing.assert_array_equal(x[:, k], expected_x[:, 1:3])
    np.testing.assert_array_equal(y[:, k], expected_y[:, 1:3])


def test_without_augmentation_training_reads_the_evaluation_views(mocked):
  _, raw = mocked
  with tfds.testing.mock_data(num_examples=12):
    plain = data_lib.load_dataset("imagenet2012", validation_size=2, image_size=SIZE,
                                  augment=False, pipeline="stream")
  rows = plain.train_source.rows
  x, _ = plain.train_examples().read_augmented(np.arange(3), np.full(3, 1), np.arange(3))
  np.testing.assert_array_equal(x, [crops.eval_view(raw["train"][r][0], SIZE)
                                    for r in rows[:3]])


def test_streamed_evaluation_sums_every_example_once(mocked):
  dataset, _ = mocked

  def evaluate(scale, x, y, w):  # a stand-in for the compiled evaluation function
    per_example = x.astype(jnp.float32).mean(axis=(2, 3, 4)) * scale
    return (per_example * w).sum(), (y * w).sum()

  examples = dataset.eval_examples("test")
  x, y = data_lib.read_all(examples)
  # 12 examples in batches of 5 (the last padded), 2 batches per chunk: 2 chunks, the
  # second with one batch of padding only.
  limit_mb = 2 * 5 * (SIZE * SIZE * 3 + 4) * 16 / 2**20
  streamed = StreamedEvalSet(examples, 5, limit_mb, threads=2)
  assert (streamed.size, streamed.batch_size, streamed.chunk, streamed.num_chunks) == (
      12, 5, 2, 2)
  loss, correct = streamed.sums(evaluate, jnp.float32(2.0))
  assert loss == pytest.approx(2.0 * x.astype(np.float64).mean(axis=(1, 2, 3)).sum(), rel=1e-5)
  assert int(correct) == int(y.sum())
  assert isinstance(eval_set(dataset, "val", 5, 2048.0), StreamedEvalSet)


def test_imagenet2012_errors_are_one_line():
  with pytest.raises(ConfigError, match=r"^data.pipeline=resident: imagenet2012 can only be "
                     r"streamed .*; use data.pipeline=stream or auto$"):
    data_lib.load_dataset("imagenet2012", pipeline="resident")
  with pytest.raises(ConfigError, match=r"^data.image_size=32 applies only to the datasets "
                     r"cropped on the host \(imagenet2012\); cifar10 is used at its stored "
                     r"size: set data.image_size=0$"):
    data_lib.load_dataset("cifar10", image_size=32)
  with pytest.raises(ConfigError, match=r"^data.image_size must be a non-negative int"):
    data_lib.load_dataset("imagenet2012", image_size=-1, pipeline="auto")


def test_missing_imagenet2012_names_the_manual_download_and_build_command(tmp_path):
  with pytest.raises(ConfigError) as error:
    data_lib.load_dataset("imagenet2012", data_dir=str(tmp_path), pipeline="auto")
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"tfds dataset 'imagenet2012' is not prepared in {tmp_path} ")
  assert ("put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org) in a "
          "directory M, then run `tfds build imagenet2012 --data_dir=DIR --manual_dir=M "
          "--file_format=array_record`") in message
  assert message.endswith("and set config.data.data_dir=DIR")


def _imagenet_config():
  spec = importlib.util.spec_from_file_location("imagenet_resnet50",
                                                ROOT / "configs" / "imagenet_resnet50.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_the_imagenet_resnet50_config_loads_its_data_and_model_on_mock_data():
  from lotto.jobs.experiment import create_experiment  # pylint: disable=import-outside-toplevel
  config = _imagenet_config()
  assert (config.data.name, config.model.name, config.data.image_size) == (
      "imagenet2012", "resnet50", 0)
  config.data.image_size = 32
  config.data.batch_size = config.data.eval_batch_size = 4
  config.data.validation_size = 4
  with tfds.testing.mock_data(num_examples=12):
    exp = create_experiment(config)
  assert exp.dataset.pipeline == "stream" and exp.dataset.input_shape == (32, 32, 3)
  assert exp.steps_per_epoch == 2 and exp.total_steps == 180  # 90 epochs of 8 examples
  assert exp.params_shape["output"]["kernel"].shape == (2048, 1000)


@pytest.mark.slow
def test_the_imagenet_resnet50_config_trains_on_mock_data(tmp_path):
  from lotto.jobs import run_job  # pylint: disable=import-outside-toplevel
  config = _imagenet_config()
  # The recipe at a size 2 CPU cores run in seconds: 16x16 views, a small MLP instead of
  # ResNet-50, one IMP level of 2 steps.
  config.data.image_size = 16
  config.data.batch_size = config.data.eval_batch_size = 4
  config.data.validation_size = 4
  config.model.name, config.model.widths = "mlp", (16,)
  config.train.duration, config.train.eval_every, config.train.checkpoint_every = (
      "2it", "1it", "2it")
  config.schedule.warmup, config.schedule.drops = "1it", ()
  config.imp.levels, config.imp.rewind, config.imp.branches = 1, "1it", ()
  config.train.verbose = 0
  with tfds.testing.mock_data(num_examples=12):
    results = run_job(config, str(tmp_path))
  level = results["levels"][0]
  assert results["complete"] and results["total_steps"] == 2
  assert np.isfinite(level["final_train_loss"]) and np.isfinite(level["final_test_loss"])
  # Every one of the 12 test images counted once.
  assert level["final_test_accuracy"] * 12 == pytest.approx(
      round(level["final_test_accuracy"] * 12), abs=1e-9)


def test_the_imagenet_datasets_are_tested_on_their_labelled_validation_split(monkeypatch):
  # imagenet_resized has no test split and imagenet2012's has no labels.
  asked, real = [], tfds.data_source

  def spy(name, split, **kwargs):
    asked.append((name, split))
    return real(name, split=split, **kwargs)

  monkeypatch.setattr(tfds, "data_source", spy)
  with tfds.testing.mock_data(num_examples=8):
    data_lib.load_dataset("imagenet_resized/64x64", pipeline="auto")
    data_lib.load_dataset("imagenet2012", image_size=SIZE, pipeline="auto")
    data_lib.load_dataset("cifar10")
  assert asked == [("imagenet_resized/64x64", "train"), ("imagenet_resized/64x64", "validation"),
                   ("imagenet2012", "train"), ("imagenet2012", "validation"),
                   ("cifar10", "train"), ("cifar10", "test")]
