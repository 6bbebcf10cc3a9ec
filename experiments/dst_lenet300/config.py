"""Dynamic sparse training on LeNet-300-100 (mnist_5k): dense vs static vs SET vs RigL vs GMP
vs the IMP ticket at 10 / 5 / 2 / 1 % density, seeds 0, 1, 2.

Argument: static | set | rigl | gmp (a sparse_sweep over the four densities, lotto's
defaults: ERK start for static/set/rigl, updates every 100 steps, drop fraction 0.3
cosine, stop at 75 %; GMP uniform from 25 % to 75 % of training), dense (a static
mask of density 1), or imp (lottery tickets: layerwise IMP, 20 % per level for 20
levels, 80 % ... 1.15 %, rewinding to initialization; run per seed):
  lotto --config=experiments/dst_lenet300/config.py:rigl --workdir=runs/dst_lenet300/rigl
All and the table/plot: python experiments/sparse_training/run.py --study dst_lenet300
"""
import os

from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")

DENSITIES = (0.1, 0.05, 0.02, 0.01)
VARIANTS = ("static", "set", "rigl", "gmp", "dense", "imp")


def get_config(argument: str = "rigl"):
  if argument not in VARIANTS:
    raise ValueError(f"unknown variant {argument!r}; valid choices: {', '.join(VARIANTS)}")
  config = load_config_file(SHARED, "lenet300_5k")
  config.sweep.seeds = (0, 1, 2)
  if argument == "imp":
    config.mode = "imp"
    config.imp.levels, config.imp.fraction, config.imp.scope = 20, 0.2, "layerwise"
    config.imp.rewind = "0it"
    return config
  config.mode = "sparse_sweep"
  config.sweep.methods = ("static",) if argument == "dense" else (argument,)
  config.sweep.densities = (1.0,) if argument == "dense" else DENSITIES
  return config
