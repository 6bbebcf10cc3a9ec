"""Dynamic sparse training on LeNet-300-100 (mnist_5k): dense vs static vs SET vs RigL vs GMP
vs the IMP ticket at 10 / 5 / 2 / 1 % density, seeds 0, 1, 2.

Argument: static | set | rigl | gmp (a sparse_sweep over the four densities, lotto's
defaults: ERK start for static/set/rigl, updates every 100 steps, drop fraction 0.3
cosine, stop at 75 %; GMP uniform from 25 % to 75 % of training), dense (a static
mask of density 1), or imp (lottery tickets: layerwise IMP, 20 % per level for 20
levels, 80 % ... 1.15 %, rewinding to initialization; run per seed):
  lotto --config=experiments/dst_lenet300/config.py:rigl --workdir=runs/dst_lenet300/rigl
All and the table/plot: python experiments/sparse_training/run.py --study dst_lenet300

The ViT row: vit_static | vit_rigl (a sparse_sweep at 10 % density) and vit_dense (a
static mask of density 1), the same data, optimizer, batch, length and seeds with a small
ViT in place of LeNet-300-100 (VIT_SIZE: 7x7 patches, so 16 patches and a class token;
width 64, 2 blocks, 4 heads; its attention and MLP kernels are the pruned weights):
  python experiments/sparse_training/run.py --study dst_vit
"""
import os

from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")

DENSITIES = (0.1, 0.05, 0.02, 0.01)
VARIANTS = ("static", "set", "rigl", "gmp", "dense", "imp")
VIT_VARIANTS = ("vit_static", "vit_rigl", "vit_dense")
VIT_SIZE = {"patch": 7, "width": 64, "layers": 2, "heads": 4}
VIT_DENSITIES = (0.1,)


def get_config(argument: str = "rigl"):
  if argument not in VARIANTS + VIT_VARIANTS:
    raise ValueError(f"unknown variant {argument!r}; valid choices: "
                     f"{', '.join(VARIANTS + VIT_VARIANTS)}")
  config = load_config_file(SHARED, "lenet300_5k")
  config.sweep.seeds = (0, 1, 2)
  if argument in VIT_VARIANTS:
    config.model.name = "vit"
    for size, value in VIT_SIZE.items():
      config.model[size] = value
    config.mode = "sparse_sweep"
    config.sweep.methods = ("static",) if argument == "vit_dense" else (argument[4:],)
    config.sweep.densities = (1.0,) if argument == "vit_dense" else VIT_DENSITIES
    return config
  if argument == "imp":
    config.mode = "imp"
    config.imp.levels, config.imp.fraction, config.imp.scope = 20, 0.2, "layerwise"
    config.imp.rewind = "0it"
    return config
  config.mode = "sparse_sweep"
  config.sweep.methods = ("static",) if argument == "dense" else (argument,)
  config.sweep.densities = (1.0,) if argument == "dense" else DENSITIES
  return config
