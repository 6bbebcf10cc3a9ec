"""Pruning a little later in training (Missing the Mark, section 6) on MNIST-1D.

Each method scores theta_k of a dense run at step k (k = 0 is pruning at
initialization), and the masked net trains from theta_k for the remaining
1500 - k iterations with the schedule continuing at k. Five methods x two
densities x four pruning steps x three seeds = 120 cells (about 20 minutes on
2 cores):
  lotto --config=experiments/pai_mnist1d/late_config.py --workdir=runs/pai_mnist1d_late
Then: lotto report --workdir=runs/pai_mnist1d_late (one table row per method
and pruning step; plot accuracy_vs_density.png).
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "prune_sweep"
  config.train.verbose = 0
  config.sweep.methods = ("magnitude", "random", "snip", "grasp", "synflow")
  config.sweep.densities = (0.1, 0.01)
  config.sweep.ablations = ("none",)
  config.sweep.at_steps = ("0it", "50it", "150it", "500it")
  config.sweep.seeds = (0, 1, 2)
  return config
