"""ResNet-20 on CIFAR-10 (open_lth recipe): SGD momentum 0.9, lr 0.1, batch 128,
160 epochs, LR x0.1 at 80 and 120 epochs, weight decay 1e-4, crop+flip.

Needs CIFAR-10 prepared as array_record in a tfds data_dir; use an accelerator:
  lotto --config=configs/cifar10_resnet20.py --workdir=runs/cifar10_resnet20 \\
      --config.data.data_dir=$HOME/tensorflow_datasets
"""
from lotto import defaults


def get_config():
  config = defaults.get_base_config()
  config.data.name = "cifar10"
  config.data.batch_size = 128
  config.data.validation_size = 5000
  config.data.augment = True
  config.model.name = "resnet20"
  config.optimizer.name = "momentum"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "step"
  config.schedule.drops = ("80ep", "120ep")
  config.train.duration = "160ep"
  config.train.eval_every = "1ep"
  config.train.checkpoint_every = "1ep"
  return config
