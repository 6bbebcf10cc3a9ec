"""Rewinding study on MNIST-1D: instability to SGD noise and ticket accuracy against k.

For k in 0, 50, 100, 250, 500, 1000 iterations (of 1500): the dense network's
instability from theta_k, and IMP (layerwise, 36% per level) rewound to k for
7 levels (density 4.4%, where tickets start to lose accuracy in the main job)
with the instability of that sparse network. 11 points on each path.

Run (about 10 minutes on 2 cores):
  lotto --config=experiments/rewinding_mnist1d/config.py --workdir=runs/rewinding_mnist1d
  lotto report --workdir=runs/rewinding_mnist1d
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "stability"
  config.train.verbose = 0
  config.imp.fraction = 0.36
  config.imp.scope = "layerwise"
  config.stability.rewind_steps = ("0it", "50it", "100it", "250it", "500it", "1000it")
  config.stability.levels = 7
  config.stability.points = 11
  return config
