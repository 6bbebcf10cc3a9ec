"""SRigL against RigL, SET and static on LeNet-300-100 and the 10x-wider LeNet (mnist_5k).

Argument "<model>,<method>,<execution>,<density>,<seed>": model lenet300 (784-300-100-10,
3,000 iterations, updates every 100) or wide (784-3000-1000-10, shortened to 300
iterations, updates every 25: see README.md); method static | set | rigl | srigl;
execution masked | condensed (condensed: static, set and srigl only). Every method starts
from the same constant fan-in mask (sparse.distribution=fanin, the same seed's draw) with
the output layer dense (masks.exclude="^output/"; SRigL's own convention), so the methods
differ only in how they change the mask. One run:
  lotto --config=experiments/srigl/config.py:lenet300,srigl,masked,0.05,0 \
        --workdir=runs/srigl/lenet300_srigl_masked_d0.05_s0
All, the table and the plot: python experiments/srigl/run.py
"""
import os

from lotto.jobs.config_files import load_config_file

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")
MODELS = ("lenet300", "wide")
METHODS = ("static", "set", "rigl", "srigl")
EXECUTIONS = ("masked", "condensed")
DENSITIES = (0.1, 0.05, 0.02, 0.01)
SEEDS = (0, 1, 2)
WIDE_STEPS, WIDE_UPDATE_EVERY = 300, 25


def get_config(argument: str = "lenet300,srigl,masked,0.1,0"):
  model, method, execution, density, seed = argument.split(",")
  if model not in MODELS or method not in METHODS or execution not in EXECUTIONS:
    raise ValueError(f"unknown variant {argument!r}; models {MODELS}, methods {METHODS}, "
                     f"executions {EXECUTIONS}")
  config = load_config_file(SHARED, "lenet300_5k")
  config.mode = "sparse_train"
  config.seed = int(seed)
  config.sparse.method, config.sparse.density = method, float(density)
  config.sparse.distribution = "fanin"
  config.masks.exclude = "^output/"
  config.sparse.execution = execution
  if model == "wide":
    config.model.name, config.model.widths = "mlp", (3000, 1000)
    config.train.duration = f"{WIDE_STEPS}it"
    config.train.eval_every = config.train.checkpoint_every = "100it"
    config.sparse.update_every = f"{WIDE_UPDATE_EVERY}it"
  return config
