"""Magnitude pruning after training: the baseline of the PaI reproduction.

One IMP level with fraction 1 - d (global scope): train the dense net,
prune |theta_T| once to density d, then
  - level 1 retrains the mask from theta_0 (one-shot lottery ticket), and
  - the magnitude_after_training branch fine-tunes theta_T * mask for the same
    1500 iterations.
Run for every density and seed of the sweep (about 4 minutes in all):
  for s in 0 1 2; do for f in 0.5 0.9 0.97 0.99; do
    lotto --config=experiments/pai_mnist1d/mat_config.py \\
        --workdir=runs/pai_mnist1d_mat/f${f}_s$s --config.seed=$s --config.imp.fraction=$f
  done; done
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "imp"
  config.train.verbose = 0
  config.imp.levels = 1
  config.imp.fraction = 0.9
  config.imp.scope = "global"
  config.imp.rewind = "0it"
  config.imp.branches = ("magnitude_after_training",)
  config.imp.mat_from = "final"
  return config
