"""A tiny config for tests and CI: MNIST-1D, a small MLP, a few steps.

Run:
  lotto --config=configs/test.py --workdir=/tmp/lotto_test
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.model.widths = (32, 32)
  config.data.batch_size = 50
  config.data.validation_size = 200
  config.train.duration = "40it"
  config.train.eval_every = "10it"
  config.train.checkpoint_every = "20it"
  config.train.verbose = 0
  config.sparse.update_every = "5it"  # sparse_train: 5 mask updates before the default stop (30it)
  return config
