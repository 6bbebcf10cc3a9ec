"""RadiX-Nets vs random masks of the same per-layer counts (Alford et al. 2019), expanders.

Argument "<model>,<variant>" (model lenet300_5k | mnist1d_mlp), one `train` run per seed:
  dense              the unpruned network
  radix_R1_R2        a RadiX-Net with radices ((R1, R2),) on the two hidden layers (output
                     dense): LeNet-300-100 uses N = 100, blocks (8, 3, 1), 800 input rows
                     cropped to 784 (10_10: 90 % sparse, the published net; 5_20, 4_25, 2_50:
                     other shapes at 90-94 %); the MNIST-1D MLP 40-500-500 uses N = 100,
                     blocks (1, 5, 5), 100 input rows cropped to 40
  expander           random expander layers at the RadiX-Net's degrees (LeNet (78, 30),
                     MNIST-1D (4, 50): about the same density)
  wide_expander      LeNet 10x wider (784-3000-1000-10) at about the same number of
                     connections as radix_10_10 (degrees (6, 8))
  wide_radix         LeNet 10x wider with the RadiX-Net fitted to it (N = 1000, radices
                     ((25, 40),)): the sparsest two-layer RadiX-Net of that width
  ..._control        any of the above with topology.control = random: the same per-layer
                     counts at random positions
  lotto --config=experiments/radixnet/config.py:lenet300_5k,radix_10_10 --workdir=runs/r/a
All variants and the table/plot: python experiments/sparse_training/run.py --study radixnet
"""
import os

from lotto.jobs.config_files import load_config_file

# The settings every sparse-training study shares (a config file taking the model's name).
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sparse_training",
                      "models.py")

BLOCKS = {"lenet300_5k": (8, 3, 1), "mnist1d_mlp": (1, 5, 5)}
DEGREES = {"lenet300_5k": (78, 30), "mnist1d_mlp": (4, 50)}


def get_config(argument: str = "lenet300_5k,radix_10_10"):
  model, variant = argument.split(",")
  config = load_config_file(SHARED, model)
  config.mode = "train"
  base = variant[:-len("_control")] if variant.endswith("_control") else variant
  if base.startswith("wide_"):
    if model != "lenet300_5k":
      raise ValueError("the wide variants are LeNet-300-100's")
    config.model.name, config.model.widths = "mlp", (3000, 1000)
  if base.startswith("radix_"):
    radices = tuple(int(r) for r in base.split("_")[1:])
    config.topology.name, config.topology.radices = "radixnet", (radices,)
    config.topology.blocks = BLOCKS[model]
  elif base == "expander":
    config.topology.name, config.topology.degrees = "expander", DEGREES[model]
  elif base == "wide_expander":
    config.topology.name, config.topology.degrees = "expander", (6, 8)
  elif base == "wide_radix":
    config.topology.name = "radixnet"  # fitted: N = gcd(3000, 1000)
  elif base != "dense":
    raise ValueError(f"unknown variant {variant!r}")
  if variant.endswith("_control"):
    config.topology.control = "random"
  return config
