"""Lottery tickets with rewinding on ResNet-50 / ImageNet (Frankle et al. 2020, "Linear Mode
Connectivity and the Lottery Ticket Hypothesis", the recipe rewinding was introduced on).

SGD momentum 0.9, batch 1024, LR 0.4 after 5 warm-up epochs, x0.1 at epochs 30, 60 and
80, weight decay 1e-4, 90 epochs; random-resized crop and flip for training, resize and
centre crop for evaluation. IMP, global, 20 % per level, rewinding to iteration 6,000
(~4.8 epochs: rewinding to 0 finds no matching ticket at this scale, the paper's
finding), with the random-mask control. Streamed from disk (ImageNet does not fit in
device memory), bfloat16 compute, the global batch split over every device.

Needs ImageNet 2012 prepared by tfds as array_record (manual download: see README.md,
"Running at scale"); use a TPU or several GPUs:
  lotto --config=configs/imagenet_resnet50.py --workdir=runs/imagenet_resnet50 \\
      --config.data.data_dir=$HOME/tensorflow_datasets
"""
from lotto.jobs import defaults


def get_config():
  config = defaults.get_base_config()
  config.data.name = "imagenet2012"
  config.data.batch_size = 1024
  config.data.eval_batch_size = 1024
  config.data.validation_size = 10000
  config.data.augment = True          # random-resized crop + flip (ImageNet recipe)
  config.model.name = "resnet50"
  config.optimizer.name = "momentum"
  config.optimizer.learning_rate = 0.4
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "step"
  config.schedule.warmup = "5ep"
  config.schedule.drops = ("30ep", "60ep", "80ep")
  config.train.duration = "90ep"
  config.train.eval_every = "1ep"
  config.train.checkpoint_every = "1ep"
  config.train.precision = "bfloat16"
  config.mode = "imp"
  config.imp.levels = 10
  config.imp.scope = "global"
  config.imp.fraction = 0.2
  config.imp.rewind = "6000it"
  config.imp.branches = ("random",)
  return config
