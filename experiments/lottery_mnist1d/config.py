"""Lottery tickets on MNIST-1D against the authors' notebook (Greydanus, arXiv:2011.14439).

The notebook's recipe: MLP 40-500-500-10, Adam lr 2e-2, batch 100, 1500
steps per round, layerwise pruning, rewind to initialization. Here 20% of
each layer per level for 20 levels (density 100% -> 1.15%: sparsities 0.49,
0.79, 0.89, 0.95, 0.99 at levels 3, 7, 10, 13, 20), with random masks of the
ticket's per-layer densities and randomly reinitialized tickets as controls.

Run three seeds (about 5 minutes each on one core), then the report:
  for s in 0 1 2; do
    lotto --config=experiments/lottery_mnist1d/config.py \\
        --workdir=runs/lottery_mnist1d/seed_$s --config.seed=$s
  done
  lotto report --workdir=runs/lottery_mnist1d
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "imp"
  config.optimizer.learning_rate = 2e-2
  config.train.verbose = 0
  config.imp.levels = 20
  config.imp.fraction = 0.2
  config.imp.scope = "layerwise"
  config.imp.rewind = "0it"
  config.imp.branches = ("random", "reinit")
  return config
