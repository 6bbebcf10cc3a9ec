"""Pruning at initialization on MNIST-1D: every method x density x ablation x seed.

The full grid (288 cells, about 45 minutes on one core; its tables are in
README.md here):
  lotto --config=experiments/pai_mnist1d/config.py --workdir=runs/pai_mnist1d
Then: lotto report --workdir=runs/pai_mnist1d
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "prune_sweep"
  config.train.verbose = 0
  config.sweep.methods = ("magnitude", "random", "snip", "grasp", "grasp_abs", "synflow")
  config.sweep.densities = (0.5, 0.1, 0.03, 0.01)
  config.sweep.ablations = ("none", "shuffle", "reinit", "invert")
  config.sweep.seeds = (0, 1, 2)
  return config
