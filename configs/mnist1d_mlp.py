"""MNIST-1D MLP (40-500-500-10): the default main job, trained densely.

Run:
  lotto --config=configs/mnist1d_mlp.py --workdir=runs/mnist1d_mlp
"""
from lotto import defaults


def get_config():
  config = defaults.get_base_config()
  return config
