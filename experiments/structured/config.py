"""What structure costs: unstructured vs 2:4 vs 4x4 blocks under IMP with rewinding and
SynFlow at matched densities (50, 25, 12.5, 6.25 %), the output layer dense for all.

Argument "<model>,<method>,<structure>": model lenet300_5k | mnist1d_mlp; method imp
(layerwise, half of each layer per level for 4 levels, rewinding to 100 it; run per seed)
or synflow (a prune_sweep over the four densities and seeds 0-2, layerwise, 100 rounds);
structure unstructured | 2:4 | block:4x4:
  lotto --config=experiments/structured/config.py:mnist1d_mlp,synflow,2:4 --workdir=runs/s/a
All and the table/plot: python experiments/sparse_training/run.py --study structured
"""
import os

from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")

DENSITIES = (0.5, 0.25, 0.125, 0.0625)


def get_config(argument: str = "mnist1d_mlp,synflow,2:4"):
  model, method, structure = argument.split(",")
  config = load_config_file(SHARED, model)
  config.masks.exclude = "^output/"  # 10 outputs split into neither 4-groups nor 4x4 tiles
  if method == "imp":
    config.mode = "imp"
    config.imp.levels, config.imp.fraction, config.imp.scope = 4, 0.5, "layerwise"
    config.imp.rewind, config.imp.structure = "100it", structure
  elif method == "synflow":
    config.mode = "prune_sweep"
    config.prune.scope, config.prune.structure = "layerwise", structure
    config.sweep.methods, config.sweep.densities = ("synflow",), DENSITIES
    config.sweep.seeds = (0, 1, 2)
  else:
    raise ValueError(f"unknown method {method!r}; valid choices: imp, synflow")
  return config
