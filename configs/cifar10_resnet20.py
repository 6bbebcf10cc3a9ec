"""Lottery tickets with rewinding on ResNet-20 / CIFAR-10 (open_lth recipe).

SGD momentum 0.9, lr 0.1, batch 128, 160 epochs, LR x0.1 at 80 and 120 epochs, weight decay 1e-4, crop+flip.
Lottery-ticket rewinding (open_lth): IMP, global, 20% per level, 20 levels
(density 100% -> 1.2%), output layer pruned, rewinding to iteration 2000 (~5.7 epochs,
inside the 0.1-7% window where rewinding finds matching tickets), with the
random-mask control.

Needs CIFAR-10 prepared as array_record in a tfds data_dir; use an accelerator:
  lotto --config=configs/cifar10_resnet20.py --workdir=runs/cifar10_resnet20 \\
      --config.data.data_dir=$HOME/tensorflow_datasets
"""
from lotto.jobs import defaults


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
  config.mode = "imp"
  config.imp.levels = 20
  config.imp.scope = "global"
  config.imp.fraction = 0.2
  config.imp.rewind = "2000it"
  config.imp.branches = ("random",)
  return config
