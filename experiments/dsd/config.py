"""DSD (dense-sparse-dense, Han et al. 2017) vs dense training of the same length.

Argument "<model>,<variant>": model lenet300_5k | mnist1d_mlp; variant dsd (thirds:
dense, 50 % sparse by per-layer magnitude, dense again at 0.1x the LR) or dense.
Each is a sparse_sweep over seeds 0, 1, 2:
  lotto --config=experiments/dsd/config.py:mnist1d_mlp,dsd --workdir=runs/dsd/mnist1d_mlp_dsd
All four and the table: python experiments/sparse_training/run.py --study dsd
"""
import os

from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")


def get_config(argument: str = "mnist1d_mlp,dsd"):
  model, variant = argument.split(",")
  if variant not in ("dsd", "dense"):
    raise ValueError(f"unknown variant {variant!r}; valid choices: dsd, dense")
  config = load_config_file(SHARED, model)
  config.mode = "sparse_sweep"
  config.sweep.seeds = (0, 1, 2)
  config.sweep.methods = ("dsd",) if variant == "dsd" else ("static",)
  config.sweep.densities = (0.5,) if variant == "dsd" else (1.0,)
  return config
