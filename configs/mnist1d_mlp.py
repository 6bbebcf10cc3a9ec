"""The main job: lottery tickets with rewinding on the MNIST-1D MLP (40-500-500-10).

IMP, layerwise, 36% of each layer's survivors pruned per level (two of the
usual 20% steps at once) for 10 levels: density 100% -> 1.2%, rewinding to
iteration 100 of 1500 (Adam 5e-3, batch 100), with the reinit and random-mask
controls at every level. About 1 min 45 s on 2 CPU cores.

Run:
  lotto --config=configs/mnist1d_mlp.py --workdir=runs/mnist1d_mlp
Report (again, or over several seeds' workdirs under one directory):
  lotto report --workdir=runs/mnist1d_mlp
Dense training only:
  lotto --config=configs/mnist1d_mlp.py --workdir=runs/dense --config.mode=train
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.mode = "imp"
  config.imp.levels = 10
  config.imp.fraction = 0.36
  config.imp.scope = "layerwise"
  config.imp.rewind = "100it"
  config.imp.branches = ("reinit", "random")
  return config
