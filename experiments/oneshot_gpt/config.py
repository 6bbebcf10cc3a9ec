"""One-shot pruning of a character GPT on shakespeare_char, against IMP and RigL.

Argument "<what>[,<options>]":
  train                          the dense GPT, seeds 0, 1, 2 in one program
  oneshot,<method>,<setting>,<s> magnitude | wanda | sparsegpt of training seed s at
                                 setting u50 | u60 | u70 | u80 (unstructured, % pruned),
                                 2:4 | 4:8; over calibration draws 0..4 (magnitude uses
                                 no calibration data: one draw)
  imp,<levels>                   IMP with rewinding to 100 it, seed 0: fraction 0.5 per
                                 level (levels 1: 50 % pruned) or 1 - sqrt(0.2) (levels 2:
                                 80 % pruned)
  rigl,<density>                 RigL (mode sparse_train) at density 0.5 or 0.2, seed 0

  lotto --config=experiments/oneshot_gpt/config.py:train --workdir=runs/oneshot_gpt/train
  lotto --config=experiments/oneshot_gpt/config.py:oneshot,wanda,2:4,0 \\
      --workdir=runs/oneshot_gpt/oneshot/wanda_2:4_seed0 \\
      --config.oneshot.from_workdir=runs/oneshot_gpt/train/seed_0
All of them, the table and the plot: python experiments/oneshot_gpt/run.py
"""
import math

from lotto.jobs import defaults

SETTINGS = {"u50": ("unstructured", 0.5), "u60": ("unstructured", 0.4),
            "u70": ("unstructured", 0.3), "u80": ("unstructured", 0.2),
            "2:4": ("2:4", 0.5), "4:8": ("4:8", 0.5)}
METHODS = ("magnitude", "wanda", "sparsegpt")
SEEDS = (0, 1, 2)
DRAWS = (0, 1, 2, 3, 4)
STEPS = 800


def gpt_config():
  """The dense character GPT: 2 blocks, 2 heads, width 64, context 128 (120,801 params)."""
  config = defaults.get_base_config()
  config.data.name = "shakespeare_char"
  config.data.batch_size = 32
  config.data.eval_batch_size = 500
  config.data.validation_size = 0
  config.model.name = "gpt"
  config.model.layers, config.model.heads, config.model.width = 2, 2, 64
  config.model.context = 128
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  config.schedule.name = "cosine"
  config.schedule.warmup = "50it"
  config.train.duration = f"{STEPS}it"
  config.train.eval_every = "200it"
  config.train.checkpoint_every = "200it"
  return config


def get_config(argument: str = "train"):
  what, *options = argument.split(",")
  config = gpt_config()
  if what == "train":
    config.mode, config.seeds = "train", SEEDS
  elif what == "oneshot":
    method, setting, seed = options
    if method not in METHODS or setting not in SETTINGS:
      raise ValueError(f"unknown method or setting {method!r}, {setting!r}; valid: "
                       f"{', '.join(METHODS)}; {', '.join(SETTINGS)}")
    config.mode, config.seed = "oneshot", int(seed)
    config.oneshot.method = method
    config.oneshot.structure, config.oneshot.density = SETTINGS[setting]
    config.oneshot.calibration_seeds = DRAWS if method != "magnitude" else ()
  elif what == "imp":
    levels = int(options[0])
    config.mode = "imp"
    config.imp.levels = levels
    config.imp.fraction = 0.5 if levels == 1 else 1 - math.sqrt(0.2)
    config.imp.rewind = "100it"
    config.imp.scope = "global"
  elif what == "rigl":
    config.mode = "sparse_train"
    config.sparse.method = "rigl"
    config.sparse.density = float(options[0])
  else:
    raise ValueError(f"unknown argument {argument!r}; valid: train | oneshot,... | imp,... | "
                     "rigl,...")
  return config
