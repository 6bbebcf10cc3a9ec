"""Cost of mask updates during training: static vs gmp, set and rigl, in one run.

Times `Trainer.run_block` (scanned blocks) for `--steps` steps with each
method's `MaskUpdate` updating every `--update-every` steps inside the
compiled program (the Trainer starts a block at every update step; the
block's first step carries the update behind `lax.cond`), against the same
steps with a static mask (the plain masked step). "cond only" traces RigL's
update but is never due in the timed window: the price of the seam alone. Models: LeNet-300-100 (batch 100,
28x28 inputs) and the MNIST-1D MLP (40-500-500-10, batch 100), synthetic
data of the right shapes, Adam, start density 10 % (ERK-free uniform masks;
GMP starts dense and prunes toward 10 %). Prints steps/s (median over
repeats, the methods timed round-robin) and each method's wall time relative to static.

  python experiments/benchmarks/sparse_train.py [--repeats 5] [--steps 1000]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import numpy as np

from lotto import dynamic
from lotto.core import masks as masks_lib
from lotto.data.registry import Dataset
from lotto.models import create_model, init_variables
from lotto.train import optim
from lotto.train.state import create_train_state
from lotto.train.trainer import Trainer

MODELS = {  # name -> (model name, options, input shape)
    "lenet300": ("lenet300", {}, (28, 28, 1)),
    "mnist1d_mlp": ("mlp", {"widths": (500, 500)}, (40,)),
}
METHODS = ("static", "cond only", "gmp", "set", "rigl")
BATCH = 100


def make_method(name: str, prunable, sizes: list[int], steps: int, every: int):
  """The MaskUpdate of `name` with updates at every multiple of `every` in the window."""
  if name == "static":
    return None
  if name == "cond only":  # traced, never due in the timed window
    return dynamic.DropAndGrow(prunable, every, stop=100 * steps + every, begin=100 * steps)
  if name == "gmp":
    return dynamic.GradualMagnitude(prunable, every, steps - every, every,
                                    tuple(0.1 for _ in sizes))
  return dynamic.DropAndGrow(prunable, every, stop=steps,
                             growth="random" if name == "set" else "gradient")


@dataclasses.dataclass
class Setup:
  """A `TrainSetup` for the benchmark: synthetic data of the model's shapes."""
  dataset: Dataset
  model: object
  tx: object
  schedule: object
  params_shape: object
  prunable: object
  seed: int = 0
  batch_size: int = BATCH
  eval_batch_size: int = 1000
  total_steps: int = 0
  eval_every: int = 100
  checkpoint_every: int = 100
  mesh: object = None
  loop: str = "scan"
  verbose: int = 0
  tensorboard: bool = False
  on_nan: str = "continue"
  precision: str = "float32"
  resident_limit_mb: float = 2048.0


def measure(model_name: str, steps: int, every: int, repeats: int) -> dict[str, float]:
  """steps/s of every method on one model (median over `repeats`, round-robin)."""
  name, options, shape = MODELS[model_name]
  model = create_model(name, 10, **options)
  rng = np.random.RandomState(0)
  x = rng.normal(size=(BATCH * 20, *shape)).astype(np.float32)
  y = rng.randint(0, 10, BATCH * 20).astype(np.int32)
  dataset = Dataset("synthetic", 10, x, y, x[:0], y[:0], x[:100], y[:100], 1.0, (0.0,), (1.0,))
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  prunable = masks_lib.select_prunable(params)
  setup = Setup(dataset, model, optim.create_optimizer("adam"),
                optim.create_schedule("constant", 1e-3, steps, steps),
                jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params),
                prunable, total_steps=steps)
  sizes = [p.size for p, f in zip(jax.tree.leaves(params), jax.tree.leaves(prunable)) if f]
  sparse = masks_lib.random_masks(jax.random.PRNGKey(1), params, prunable, 0.1)
  timers = {}
  for method_name in METHODS:
    method = make_method(method_name, prunable, sizes, steps, every)
    trainer = Trainer(setup, mask_update=method)
    masks = None if method_name == "gmp" else sparse

    def timed(method=method, trainer=trainer, masks=masks):
      state = create_train_state(params, stats, masks, setup.tx, jax.random.PRNGKey(2))
      state = trainer.place(state.replace(
          mask_state=dynamic.init_mask_state(method, state.params, state.masks)))
      jax.block_until_ready(state)
      start = time.perf_counter()
      state, _ = trainer.run_block(state, steps)  # split at the update steps, as in training
      jax.block_until_ready(state)
      return steps / (time.perf_counter() - start), state

    _, state = timed()  # compile
    if method is not None and method_name != "cond only":
      ran = int((np.asarray(jax.device_get(state.mask_state["log"]["step"])) >= 0).sum())
      assert ran == len([s for s in method.due_steps if s < steps]), (method_name, ran)
    timers[method_name] = timed
  rates = {name: [] for name in METHODS}
  for _ in range(repeats):  # round-robin, so drift in the machine's speed hits every method
    for name, timed in timers.items():
      rates[name].append(timed()[0])
  return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--update-every", type=int, default=100)
  parser.add_argument("--models", default="lenet300,mnist1d_mlp")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} "
        f"device(s)); {args.steps} steps per timed block, mask update every "
        f"{args.update_every}; median of {args.repeats} repeats")
  print(f"{'model':<12} {'method':<10} {'steps/s':>9} {'time vs static':>15}")
  for model_name in args.models.split(","):
    rates = measure(model_name, args.steps, args.update_every, args.repeats)
    for method_name, rate in rates.items():
      print(f"{model_name:<12} {method_name:<10} {rate:>9.1f} "
            f"{rates['static'] / rate:>14.3f}x", flush=True)


if __name__ == "__main__":
  main()
