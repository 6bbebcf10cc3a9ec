"""Lottery tickets with rewinding on ResNet-18 / downsampled ImageNet at 64x64 (tfds
`imagenet_resized/64x64`, Chrabaszcz et al. 2017): ImageNet's 1000 classes at a cost a
single accelerator affords.

The ResNet-50 rewinding recipe scaled to batch 512 (LR 0.2: the linear scaling rule),
40 epochs with drops at 15, 30 and 35, 2 warm-up epochs; crop (pad 4) and flip as for
CIFAR. IMP, global, 20 % per level, rewinding to iteration 2% of training, random-mask
control.

Needs imagenet_resized/64x64 prepared by tfds as array_record (see README.md, "Running
at scale"):
  lotto --config=configs/imagenet64_resnet18.py --workdir=runs/imagenet64_resnet18 \\
      --config.data.data_dir=$HOME/tensorflow_datasets
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.data.name = "imagenet_resized/64x64"
  config.data.batch_size = 512
  config.data.eval_batch_size = 1024
  config.data.validation_size = 10000
  config.data.augment = True
  config.model.name = "resnet18_imagenet"
  config.optimizer.name = "momentum"
  config.optimizer.learning_rate = 0.2
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "step"
  config.schedule.warmup = "2ep"
  config.schedule.drops = ("15ep", "30ep", "35ep")
  config.train.duration = "40ep"
  config.train.eval_every = "1ep"
  config.train.checkpoint_every = "1ep"
  config.train.precision = "bfloat16"
  config.mode = "imp"
  config.imp.levels = 10
  config.imp.scope = "global"
  config.imp.fraction = 0.2
  config.imp.rewind = "2000it"
  config.imp.branches = ("random",)
  return config
