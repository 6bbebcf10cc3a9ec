"""Train-step throughput: dense (a plain optax step, no masks) vs masked (lotto's step),
per-step dispatch vs scanned loop.

Prints steps/s (median over repeats) for LeNet-300-100 at batch 60 and
ResNet-20 at batch 128 on synthetic data of the right shapes, with the ratios
masked/dense and scan/per-step. Both loops are lotto's own
(`make_train_block(loop="step" | "scan")`): the batch is gathered on device
from the resident training set in both; "step" dispatches one jitted step per
iteration from Python, "scan" runs the whole block as one compiled lax.scan.
ResNet-20 runs 6 steps per timing (its convolutions' gradients are in
XLA:CPU's canonical form, `lotto.models.conv_grad`, so the scan is no longer
20x slower than per-step dispatch; `--native-conv-grads` times JAX's own
gradients instead, for comparison). When torch is installed, the ResNet-20 row
is followed by the same-sitting PyTorch figure from `torch_resnet20.py`.

  python experiments/benchmarks/train_step.py [--repeats 5] [--models lenet300,resnet20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import torch_resnet20
from lotto.core import masks as masks_lib
from lotto.data.inputs import InputSpec
from lotto.models import create_model, init_variables, layers
from lotto.train import optim
from lotto.train.block import make_train_block
from lotto.train.state import create_train_state
from lotto.train.step import cross_entropy, make_train_step, model_variables

SETUPS = {  # name -> (input shape, batch, steps per timed run, steps in a timed scan, optimizer)
    "lenet300": ((28, 28, 1), 60, 500, 500, "adam"),
    "resnet20": ((32, 32, 3), 128, 6, 6, "momentum"),
}


def _state(model, shape, tx, masked: bool):
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  masks = None
  if masked:
    prunable = masks_lib.select_prunable(params)
    masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, prunable, 0.2)
  return create_train_state(params, stats, masks, tx, jax.random.PRNGKey(2))


def plain_dense_step(apply_fn, tx, schedule, inputs):
  """The dense baseline: an optax step with no masks anywhere (what lotto's step adds to)."""

  def step(state, raw, labels):
    x = inputs(raw, jax.random.fold_in(state.rng, state.step))

    def loss_fn(params):
      variables = model_variables(params, state.batch_stats)
      if state.batch_stats:
        logits, updated = apply_fn(variables, x, train=True, mutable=["batch_stats"])
        return cross_entropy(logits, labels).mean(), updated["batch_stats"]
      return cross_entropy(apply_fn(variables, x, train=True), labels).mean(), state.batch_stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    direction, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = schedule(state.step)
    params = jax.tree.map(lambda p, u: p - lr * u, state.params, direction)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         batch_stats=stats), {"loss": loss}

  return step


def measure(name: str, repeats: int) -> dict[str, float]:
  shape, batch, steps, scan_steps, opt = SETUPS[name]
  model = create_model(name, 10)
  tx = optim.create_optimizer(opt, weight_decay=1e-4)
  schedule = optim.create_schedule("constant", 0.01, steps, steps)
  inputs = InputSpec(1.0, (0.0,), (1.0,), False)
  num_examples = batch * 20
  x = jax.random.normal(jax.random.PRNGKey(3), (num_examples, *shape))
  y = jax.random.randint(jax.random.PRNGKey(4), (num_examples,), 0, 10)
  indices = jnp.asarray(np.random.RandomState(0).randint(0, num_examples, (steps, batch)),
                        jnp.int32)
  out = {}
  for masked in (False, True):
    step_fn = (make_train_step if masked else plain_dense_step)(model.apply, tx, schedule, inputs)
    label = "masked" if masked else "dense"
    for mode, loop, count in (("per_step", "step", steps), ("scan", "scan", scan_steps)):
      block = make_train_block(step_fn, loop)

      def timed():
        state = _state(model, shape, tx, masked)
        jax.block_until_ready(state)
        start = time.perf_counter()
        state, _ = block(state, x, y, indices[:count])
        jax.block_until_ready(state)
        return count / (time.perf_counter() - start)

      timed()  # compile
      runs = repeats if count == steps else 1
      out[f"{label}_{mode}"] = statistics.median(timed() for _ in range(runs))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--models", default="lenet300,resnet20")
  parser.add_argument("--native-conv-grads", action="store_true",
                      help="JAX's own convolution gradients (slow inside loops on CPU)")
  args = parser.parse_args()
  if args.native_conv_grads:
    layers.conv_general_dilated = jax.lax.conv_general_dilated
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({jax.device_count()} device(s)); median of {args.repeats} repeats; steps/s"
        f"{'; native conv gradients' if args.native_conv_grads else ''}")
  header = (f"{'model':<10} {'batch':>5} {'dense/step':>11} {'dense/scan':>11} "
            f"{'masked/step':>12} {'masked/scan':>12} {'masked:dense(scan)':>19} "
            f"{'scan:step(masked)':>18}")
  print(header)
  for name in args.models.split(","):
    r = measure(name, args.repeats)
    print(f"{name:<10} {SETUPS[name][1]:>5} {r['dense_per_step']:>11.1f} {r['dense_scan']:>11.1f} "
          f"{r['masked_per_step']:>12.1f} {r['masked_scan']:>12.1f} "
          f"{r['masked_scan'] / r['dense_scan']:>19.2f} "
          f"{r['masked_scan'] / r['masked_per_step']:>18.2f}", flush=True)
    if name == "resnet20":
      batch = SETUPS[name][1]
      torch_rate = torch_resnet20.images_per_second(args.repeats)
      line = (f"resnet20 images/s: lotto masked per-step {r['masked_per_step'] * batch:.1f}, "
              f"scan {r['masked_scan'] * batch:.1f}")
      if torch_rate is None:
        line += "; torch not installed (no same-sitting PyTorch figure)"
      else:
        line += (f"; PyTorch eager (torch_resnet20.py) {torch_rate:.1f}; lotto:torch "
                 f"{max(r['masked_per_step'], r['masked_scan']) * batch / torch_rate:.2f}")
      print(line, flush=True)


if __name__ == "__main__":
  main()
