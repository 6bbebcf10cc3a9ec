"""Images/s of lotto's masked train step in float32 and bfloat16 (`train.precision`).

ResNet-50 (ImageNet stem) on ImageNet-shaped synthetic data by default: one jitted
step (SGD momentum, masks at 20 % density), timed over `--steps` steps after a
compile-and-warm-up step, median over `--repeats`. Prints the device with the table:
on an accelerator bfloat16 should be faster; CPUs have no bfloat16 units.

  python experiments/benchmarks/precision_step.py [--model resnet50] [--batch 64]
      [--size 224] [--steps 5] [--repeats 3]
  python experiments/benchmarks/precision_step.py --quick   # tiny, any machine
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from lotto.core import masks as masks_lib
from lotto.data.inputs import InputSpec
from lotto.models import create_model, init_variables
from lotto.train import optim
from lotto.train.state import create_train_state
from lotto.train.step import make_train_step


def images_per_second(model_name: str, batch: int, size: int, classes: int, precision: str,
                      steps: int, repeats: int) -> float:
  """Median images/s of the masked train step under `precision`."""
  model = create_model(model_name, classes)
  shape = (size, size, 3)
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params,
                                 masks_lib.select_prunable(params), 0.2)
  tx = optim.create_optimizer("momentum", momentum=0.9)
  state = create_train_state(params, stats, masks, tx, jax.random.PRNGKey(2))
  inputs = InputSpec(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False)
  step = jax.jit(make_train_step(model.apply, tx, lambda s: 0.1, inputs, precision=precision),
                 donate_argnums=0)
  x = jax.random.randint(jax.random.PRNGKey(3), (batch, *shape), 0, 256).astype(jnp.uint8)
  y = jax.random.randint(jax.random.PRNGKey(4), (batch,), 0, classes)
  state, metrics = step(state, x, y)  # compile and warm up
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, x, y)
    jax.block_until_ready(metrics)
    rates.append(batch * steps / (time.perf_counter() - start))
  return statistics.median(rates)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet50")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--classes", type=int, default=1000)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help="batch 4 at 64x64, 2 steps, 1 repeat")
  args = parser.parse_args()
  if args.quick:
    args.batch, args.size, args.steps, args.repeats = 4, 64, 2, 1
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}, "
        f"{jax.device_count()} device(s)); {args.model}, batch {args.batch}, "
        f"{args.size}x{args.size}, masked step, median of {args.repeats}")
  print(f"{'precision':<10} {'images/s':>10}")
  rates = {}
  for precision in ("float32", "bfloat16"):
    rates[precision] = images_per_second(args.model, args.batch, args.size, args.classes,
                                         precision, args.steps, args.repeats)
    print(f"{precision:<10} {rates[precision]:>10.1f}")
  print(f"bfloat16 : float32 = {rates['bfloat16'] / rates['float32']:.2f}x")


if __name__ == "__main__":
  main()
