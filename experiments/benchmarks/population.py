"""Populations: K replicas in one compiled program vs K separate runs, in one run.

For K = 1, 2, 4, 8 (`--ks`) times `--steps` training steps of K replicas
(`Trainer(setup, seeds=...).run_block`: one vmapped, scanned block) against K
separate runs of the same steps one after another (`Trainer.run_block`, one
compiled program reused, as a Python loop over seeds does). Compilation is
excluded from both (each program runs once before timing); times are
medians over `--repeats`, the two timed alternately. Memory is the compiled
block's own (XLA's memory analysis: arguments, outputs and temporaries,
minus the training set both share), with lotto's estimate
(`jobs.replicas.replica_bytes`) beside it.

Models, with the IMP main job's training settings (Adam, batch 100,
MNIST-1D-shaped synthetic data for the MLP, MNIST-shaped for LeNet):
the MNIST-1D MLP 40-500-500-10 and LeNet-300-100.

  python experiments/benchmarks/population.py [--repeats 5] [--steps 500] [--ks 1,2,4,8]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto.data.registry import Dataset
from lotto.models import create_model, init_variables
from lotto.core import masks as masks_lib
from lotto.train import optim
from lotto.train.state import create_train_state
from lotto.train.trainer import Trainer
from sparse_train import Setup  # the benchmarks' synthetic TrainSetup (this script's folder)

MODELS = {  # name -> (model name, options, input shape)
    "mnist1d_mlp": ("mlp", {"widths": (500, 500)}, (40,)),
    "lenet300": ("lenet300", {}, (28, 28, 1)),
}
BATCH = 100


def _setup(model_name: str, steps: int) -> tuple[Setup, object]:
  name, options, shape = MODELS[model_name]
  model = create_model(name, 10, **options)
  rng = np.random.RandomState(0)
  x = rng.normal(size=(BATCH * 40, *shape)).astype(np.float32)
  y = rng.randint(0, 10, BATCH * 40).astype(np.int32)
  dataset = Dataset("synthetic", 10, x, y, x[:0], y[:0], x[:100], y[:100], 1.0, (0.0,), (1.0,))
  params, _ = init_variables(model, jax.random.PRNGKey(0), shape)
  setup = Setup(dataset, model, optim.create_optimizer("adam"),
                optim.create_schedule("constant", 1e-3, steps, steps),
                jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params),
                masks_lib.select_prunable(params), total_steps=steps)
  return setup, x


def _state(setup: Setup, seed: int):
  params, stats = init_variables(setup.model, jax.random.PRNGKey(seed),
                                 setup.dataset.input_shape)
  return create_train_state(params, stats, None, setup.tx, jax.random.PRNGKey(seed))


def _block_bytes(trainer: Trainer, state, steps: int, data_bytes: int) -> int:
  """The compiled block's arguments + outputs + temporaries, minus the shared training set."""
  indices = jnp.asarray(trainer.block_indices(trainer.seeds, 0, steps))
  compiled = trainer._block.lower(  # pylint: disable=protected-access
      state, trainer._x_train, trainer._y_train, indices).compile()  # pylint: disable=protected-access
  analysis = compiled.memory_analysis()
  if analysis is None:
    return -1
  return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes +
          analysis.temp_size_in_bytes - data_bytes)


def measure(model_name: str, ks: list[int], steps: int, repeats: int) -> list[dict]:
  """Per K: median seconds of the population and of K separate runs, and block memory."""
  setup, x = _setup(model_name, steps)
  data_bytes = x.nbytes + x.shape[0] * 4
  single = Trainer(setup)
  rows = []
  for k in ks:
    seeds = list(range(k))
    population = Trainer(setup, seeds=seeds)

    def together(population=population, seeds=seeds):
      state = population.place(population.stack([_state(setup, s) for s in seeds]))
      jax.block_until_ready(state)
      start = time.perf_counter()
      state, _ = population.run_block(state, steps)
      jax.block_until_ready(state)
      return time.perf_counter() - start

    def separately(seeds=seeds):
      states = [single.place(_state(setup, s)) for s in seeds]
      jax.block_until_ready(states)
      start = time.perf_counter()
      for seed, state in zip(seeds, states):
        state, _ = single.run_block(state, steps, data_seeds=(seed,))
        jax.block_until_ready(state)
      return time.perf_counter() - start

    together(), separately()  # compile both
    times = {"together": [], "separately": []}
    for _ in range(repeats):
      times["together"].append(together())
      times["separately"].append(separately())
    stacked = population.place(population.stack([_state(setup, s) for s in seeds]))
    rows.append({"k": k, "together": statistics.median(times["together"]),
                 "separately": statistics.median(times["separately"]),
                 "memory": _block_bytes(population, stacked, steps, data_bytes)})
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--ks", default="1,2,4,8")
  parser.add_argument("--models", default=",".join(MODELS))
  args = parser.parse_args()
  ks = [int(k) for k in args.ks.split(",")]
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {args.steps} steps, "
        f"batch {BATCH}, median of {args.repeats}")
  for model_name in args.models.split(","):
    rows = measure(model_name, ks, args.steps, args.repeats)
    print(f"\n{model_name}")
    print(f"{'K':>3} {'one program s':>14} {'K runs s':>9} {'ratio':>6} {'steps/s x K':>12} "
          f"{'speedup vs K=1':>15} {'block MiB':>10} {'MiB / K':>8}")
    base = rows[0]["together"] / rows[0]["k"]
    for row in rows:
      k = row["k"]
      print(f"{k:>3} {row['together']:>14.3f} {row['separately']:>9.3f} "
            f"{row['together'] / row['separately']:>6.2f} {k * args.steps / row['together']:>12.0f} "
            f"{base * k / row['together']:>15.2f} {row['memory'] / 2**20:>10.2f} "
            f"{row['memory'] / 2**20 / k:>8.2f}")


if __name__ == "__main__":
  main()
