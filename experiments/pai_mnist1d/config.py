"""Pruning at initialization on MNIST-1D: every method x density x ablation x seed.

Full grid (issue 3 item 8; ~290 cells, about 40 min on 2 cores):
  lotto --config=experiments/pai_mnist1d/config.py --workdir=runs/pai_mnist1d
Reduced grid actually run so far (see README.md here):
  lotto --config=experiments/pai_mnist1d/config.py --workdir=runs/pai_mnist1d_small \\
      --config.sweep.ablations='("none","shuffle")' --config.sweep.seeds='(0,)'
Then: lotto report --workdir=runs/pai_mnist1d_small
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
