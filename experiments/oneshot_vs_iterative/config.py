"""One-shot vs iterative magnitude pruning during training (Alford et al.'s claim).

Argument "<model>,<schedule>": model lenet300_5k | mnist1d_mlp; schedule
  iterative: GMP every 200 steps (100 on MNIST-1D) from 20 % to 67 % of training,
  oneshot:   GMP with begin == end: one prune to the final density at the
             middle of that window (then fine-tuning for the rest),
  dense:     the unpruned baseline (a static mask of density 1).
Each is a sparse_sweep over densities 50 ... 1 % and seeds 0, 1, 2:
  lotto --config=experiments/oneshot_vs_iterative/config.py:lenet300_5k,iterative \\
      --workdir=runs/oneshot_vs_iterative/lenet300_5k_iterative
All six and the table/plot: python experiments/sparse_training/run.py --study oneshot_vs_iterative
"""
import os

from lotto.core.durations import parse_duration
from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")

DENSITIES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)
VARIANTS = ("iterative", "oneshot", "dense")


def get_config(argument: str = "lenet300_5k,iterative"):
  model, variant = argument.split(",")
  if variant not in VARIANTS:
    raise ValueError(f"unknown schedule {variant!r}; valid choices: {', '.join(VARIANTS)}")
  config = load_config_file(SHARED, model)
  steps = parse_duration(config.train.duration, 1)
  config.mode = "sparse_sweep"
  config.sweep.seeds = (0, 1, 2)
  begin, end = steps // 5, (2 * steps) // 3 // 100 * 100  # 600/2000 (LeNet), 300/1000 (MLP)
  config.sparse.method = "gmp"
  config.sweep.methods = ("gmp",)
  config.sweep.densities = DENSITIES
  if variant == "iterative":
    config.sparse.update_every = "200it" if model == "lenet300_5k" else "100it"
    config.sparse.begin, config.sparse.end = f"{begin}it", f"{end}it"
  elif variant == "oneshot":
    config.sparse.begin = config.sparse.end = f"{(begin + end) // 2}it"
  else:
    config.sweep.methods, config.sweep.densities = ("static",), (1.0,)
  return config
