"""Input pipelines: train steps/s of `stream` against `resident`, and the stream's host memory.

Part 1 trains through lotto's `Trainer.run_block` (the job's own path) on synthetic
data written as real array_record files (`lotto.data.write_examples`) in a temporary
directory: LeNet-300-100 (Adam, batch 60) on MNIST-shaped uint8 images and ResNet-20
(momentum, batch 128, crop + flip inside the step) on CIFAR-shaped ones. `resident`
holds the training set on the device and gathers each batch by index; `stream` reads
every block's examples from the files on the host (grain, in background threads) in
the same order and hands them to the same compiled step. Steps/s is timed over
consecutive blocks after a compiled warm-up block, median over repeats.

Part 2 streams synthetic CIFAR-shaped datasets (LeNet-300-100 on the flattened
images, batch 256) 4 and 16 times larger than `resident_limit_mb` (16 MB: 64 and 256
MB), each in a fresh subprocess for as many steps as one epoch of the larger one (the
same number of examples read), and reports the subprocess's peak resident memory
(VmHWM): streaming, it should not grow with the dataset; `resident` (the same data
loaded whole) for contrast.

Part 3 (`--imagenet`, or alone with `--imagenet-only`) times imagenet2012's host-side
preprocessing: JPEG images of ImageNet-like sizes (synthetic, smooth content, quality
90, encoded once in memory) decoded with PIL as tfds decodes them, then cropped by
`CroppedImages`: training views (random-resized crop to 224 and flip, read through
`StepStream` as training reads them) and evaluation views (resize to 256, centre crop
224, read through `StreamedEvalSet`), in images/s with 1 and 2 reader threads.

  python experiments/benchmarks/input_pipeline.py [--quick] [--repeats 3] [--imagenet]
  python experiments/benchmarks/input_pipeline.py --imagenet-only
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from lotto.core import masks as masks_lib
from lotto.data import Dataset, RecordExamples, StepStream, write_examples
from lotto.data.cropped_images import CroppedImages
from lotto.models import create_model, init_variables
from lotto.train import optim
from lotto.train.state import create_train_state
from lotto.train.streamed_eval import StreamedEvalSet
from lotto.train.trainer import Trainer

# name -> (model, input shape, batch, optimizer, augment, examples, block steps, timed blocks)
SETUPS = {
    "lenet300": ("lenet300", (28, 28, 1), 60, "adam", False, 12000, 100, 5),
    "resnet20": ("resnet20", (32, 32, 3), 128, "momentum", True, 2560, 4, 3),
}
QUICK = {"lenet300": (6000, 100, 3), "resnet20": (1280, 4, 2)}


@dataclasses.dataclass
class Setup:
  """A `TrainSetup` over synthetic data (what `Trainer` reads)."""
  dataset: Dataset
  model: object
  tx: object
  schedule: object
  params_shape: object
  prunable: object
  batch_size: int
  total_steps: int
  eval_every: int
  resident_limit_mb: float = 2048.0
  seed: int = 0
  eval_batch_size: int = 1000
  checkpoint_every: int = 10**9
  mesh: object = None
  loop: str = "scan"
  verbose: int = 0
  tensorboard: bool = False
  on_nan: str = "continue"
  precision: str = "float32"


def synthetic(shape: tuple[int, ...], count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Random uint8 images and labels."""
  rng = np.random.RandomState(seed)
  return rng.randint(0, 256, (count, *shape), dtype=np.uint8), rng.randint(0, 10, count)


def make_setup(model_name: str, shape, batch: int, opt: str, augment: bool, source, x, y,
               block: int, total: int, limit_mb: float = 2048.0) -> Setup:
  """A setup whose training set is `x, y` in memory (resident) or `source` (stream)."""
  streamed = source is not None
  dataset = Dataset("synthetic", 10, None if streamed else x, None if streamed else y,
                    x[:0], y[:0].astype(np.int32), x[:0], y[:0].astype(np.int32), 1 / 255,
                    (0.5,), (0.25,), augment, pipeline="stream" if streamed else "resident",
                    train_source=source)
  model = create_model(model_name, 10)
  params, _ = init_variables(model, jax.random.PRNGKey(0), shape)
  return Setup(dataset, model, optim.create_optimizer(opt, weight_decay=1e-4),
               optim.create_schedule("constant", 0.01, total, total),
               jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params),
               masks_lib.select_prunable(params), batch, total, block, limit_mb)


def initial(setup: Setup):
  """The setup's seed-0 state."""
  params, stats = init_variables(setup.model, jax.random.PRNGKey(0), setup.dataset.input_shape)
  return create_train_state(params, stats, None, setup.tx, jax.random.PRNGKey(2))


def steps_per_second(setup: Setup, block: int, blocks: int, repeats: int) -> list[float]:
  """steps/s over `blocks` consecutive blocks, once per repeat, after a warm-up block."""
  trainer = Trainer(setup)
  state = trainer.place(initial(setup))
  state, _ = trainer.run_block(state, block)  # compile (and start the stream's reader)
  rates = []
  for _ in range(repeats):
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(blocks):
      state, _ = trainer.run_block(state, block)  # returns host metrics: synchronised
    rates.append(block * blocks / (time.perf_counter() - start))
  return rates


def measure_speed(name: str, repeats: int, quick: bool, root: str) -> dict[str, float]:
  """Median steps/s of each pipeline on one setup (pipelines alternate per repeat)."""
  model, shape, batch, opt, augment, count, block, blocks = SETUPS[name]
  if quick:
    count, block, blocks = QUICK[name]
  x, y = synthetic(shape, count)
  source = write_examples(os.path.join(root, name), x, y, num_files=4)
  total = block * (1 + blocks * repeats)
  rates = {"resident": [], "stream": []}
  setups = {"resident": make_setup(model, shape, batch, opt, augment, None, x, y, block, total),
            "stream": make_setup(model, shape, batch, opt, augment, source, x, y, block, total)}
  for _ in range(repeats):
    for pipeline, setup in setups.items():
      rates[pipeline] += steps_per_second(setup, block, blocks, 1)
  return {k: statistics.median(v) for k, v in rates.items()}


def peak_rss_mb() -> float:
  """This process's peak resident memory (VmHWM), in MB. Not ru_maxrss: on Linux that
  keeps the high-water mark of the process before exec, i.e. of the forked parent."""
  with open("/proc/self/status", encoding="ascii") as status:
    for line in status:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def peak_memory(pipeline: str, directory: str, limit_mb: float, steps: int) -> None:
  """(In a subprocess.) `steps` steps over the files in `directory`; prints the peak RSS."""
  source = RecordExamples(directory)
  shape, batch = source.example_shape, 256
  if pipeline == "resident":
    x, y = source.read(np.arange(len(source)))
    setup = make_setup("lenet300", shape, batch, "adam", False, None, x, y, 50, steps, limit_mb)
  else:
    setup = make_setup("lenet300", shape, batch, "adam", False, source, np.zeros((1, *shape),
                       np.uint8), np.zeros((1,), np.int64), 50, steps, limit_mb)
  trainer = Trainer(setup)
  state = trainer.place(initial(setup))
  done = 0
  while done < steps:
    state, _ = trainer.run_block(state, min(50, steps - done))
    done += min(50, steps - done)
  jax.block_until_ready(state)
  print(json.dumps({"peak_rss_mb": peak_rss_mb(), "steps": steps}))


def measure_memory(sizes_mb: list[int], limit_mb: float, root: str) -> list[tuple]:
  """(dataset MB, pipeline, peak RSS MB, steps) for each size and pipeline; every run
  trains one epoch of the largest size, so all read the same number of examples."""
  rows = []
  steps = max(sizes_mb) * 2**20 // (32 * 32 * 3 + 4) // 256
  for size in sizes_mb:
    directory = os.path.join(root, f"memory_{size}")
    count = size * 2**20 // (32 * 32 * 3 + 4)
    x = np.lib.format.open_memmap(os.path.join(root, "x.npy"), "w+", np.uint8,
                                  (count, 32, 32, 3))
    for start in range(0, count, 8192):  # written in pieces: the parent stays small too
      x[start:start + 8192] = synthetic((32, 32, 3), min(8192, count - start), start)[0]
    write_examples(directory, x, np.arange(count) % 10)
    del x
    os.remove(os.path.join(root, "x.npy"))
    for pipeline in ("stream", "resident"):
      out = subprocess.run([sys.executable, __file__, "--memory-child", pipeline, directory,
                            str(limit_mb), str(steps)], capture_output=True, text=True,
                           check=True)
      result = json.loads(out.stdout.strip().splitlines()[-1])
      rows.append((size, pipeline, result["peak_rss_mb"], result["steps"]))
  return rows


# ImageNet-like image sizes (height, width): the common 500-wide landscape and portrait
# shapes and a few others; the training set's mean is about 400 x 350.
IMAGENET_SHAPES = ((375, 500), (333, 500), (500, 375), (500, 333), (400, 400), (281, 500),
                   (500, 500), (256, 340))


class JpegImages:
  """Synthetic JPEG images held encoded in memory, decoded on every read (as tfds's
  imagenet2012 records are)."""

  def __init__(self, count: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    self.jpegs, self.labels = [], rng.randint(0, 1000, count).astype(np.int32)
    for index in range(count):
      height, width = IMAGENET_SHAPES[index % len(IMAGENET_SHAPES)]
      rows, cols = np.mgrid[0:height, 0:width]
      base = (np.stack([rows * 255 // height, cols * 255 // width,
                        (rows + cols) * 127 // (height + width)], -1)
              + rng.randint(0, 24, (height, width, 3)))
      buffer = io.BytesIO()
      Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
      self.jpegs.append(buffer.getvalue())

  def __len__(self) -> int:
    return len(self.jpegs)

  def read_list(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The decoded images at `indices` and their labels."""
    indices = np.asarray(indices).reshape(-1)
    images = [np.asarray(Image.open(io.BytesIO(self.jpegs[i])).convert("RGB")) for i in indices]
    return images, self.labels[indices]


def imagenet_rates(count: int, batch: int, steps: int, threads: int) -> dict[str, float]:
  """images/s of training views (StepStream) and evaluation views (StreamedEvalSet)."""
  source = CroppedImages(JpegImages(count), 224)
  stream = StepStream(source, batch, group_steps=1, end_step=steps + 1, threads=threads)
  stream.take((0,), 0, 1)  # start the threads
  start = time.perf_counter()
  stream.take((0,), 1, steps)
  train = steps * batch / (time.perf_counter() - start)
  stream.close()
  evaluation = StreamedEvalSet(source, batch, 2048.0, threads=threads)
  start = time.perf_counter()
  for _ in evaluation.chunks():
    pass
  return {"train": train, "eval": evaluation.size / (time.perf_counter() - start)}


def imagenet_table(quick: bool) -> None:
  """Prints part 3's table."""
  count, batch, steps = (256, 32, 6) if quick else (1024, 64, 12)
  decode = JpegImages(64)
  decode.read_list(np.arange(8))  # warm-up
  start = time.perf_counter()
  for _ in range(2):
    decode.read_list(np.arange(64))
  decoded = 2 * 64 / (time.perf_counter() - start)
  print(f"\nimagenet2012 host preprocessing: {count} synthetic JPEGs of ImageNet-like sizes "
        f"(quality 90), views 224 x 224, batch {batch}; JPEG decode alone (1 thread): "
        f"{decoded:.0f} images/s")
  print(f"{'threads':>7} {'train views/s':>14} {'eval views/s':>13}")
  for threads in (1, 2):
    rates = imagenet_rates(count, batch, steps, threads)
    print(f"{threads:>7} {rates['train']:>14.0f} {rates['eval']:>13.0f}", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true",
                      help="fewer examples and steps in the speed part")
  parser.add_argument("--models", default="lenet300,resnet20")
  parser.add_argument("--limit-mb", type=float, default=16.0,
                      help="resident_limit_mb of the memory part (the stream's chunks: 1/16)")
  parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
  parser.add_argument("--imagenet", action="store_true",
                      help="also time imagenet2012's host preprocessing (part 3)")
  parser.add_argument("--imagenet-only", action="store_true", help="only part 3")
  args = parser.parse_args()
  if args.imagenet_only:
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start"
          f"{'; --quick' if args.quick else ''}")
    imagenet_table(args.quick)
    return
  if args.memory_child:
    peak_memory(args.memory_child[0], args.memory_child[1], float(args.memory_child[2]),
                int(args.memory_child[3]))
    return
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPU cores); "
        f"median of {args.repeats} repeats{'; --quick' if args.quick else ''}")
  with tempfile.TemporaryDirectory(prefix="lotto-input-pipeline-") as root:
    print(f"{'model':<10} {'batch':>5} {'examples':>8} {'block':>5} {'resident steps/s':>17} "
          f"{'stream steps/s':>15} {'stream:resident':>16}")
    for name in args.models.split(","):
      rates = measure_speed(name, args.repeats, args.quick, root)
      _, _, batch, _, _, count, block, _ = SETUPS[name]
      if args.quick:
        count, block, _ = QUICK[name]
      print(f"{name:<10} {batch:>5} {count:>8} {block:>5} {rates['resident']:>17.1f} "
            f"{rates['stream']:>15.1f} {rates['stream'] / rates['resident']:>16.2f}",
            flush=True)
    sizes = [4 * int(args.limit_mb), 16 * int(args.limit_mb)]
    print(f"\nhost peak memory (VmHWM) training on CIFAR-shaped uint8 data, batch 256, "
          f"resident_limit_mb={args.limit_mb:g} (stream chunks <= {args.limit_mb / 16:g} MB)")
    print(f"{'dataset MB':>10} {'x limit':>7} {'pipeline':>9} {'steps':>6} {'peak RSS MB':>12}")
    for size, pipeline, rss, steps in measure_memory(sizes, args.limit_mb, root):
      print(f"{size:>10} {size / args.limit_mb:>7.0f} {pipeline:>9} {steps:>6} {rss:>12.0f}",
            flush=True)
  if args.imagenet:
    imagenet_table(args.quick)


if __name__ == "__main__":
  main()
