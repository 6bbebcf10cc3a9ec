"""A PyTorch ResNet-20 training step, timed the way open_lth's loop runs it.

The same-sitting reference for `train_step.py`'s ResNet-20 row: CIFAR
ResNet-20 (16/32/64 widths, 3 BasicBlocks per stage, 1x1 projection shortcuts
with BatchNorm, as lotto's `lotto.models.resnet`), SGD with momentum 0.9 and
weight decay 1e-4, cross-entropy, batch 128 on random 32x32x3 inputs, eager
mode (no torch.compile), all of torch's CPU threads. Optional: returns None
when torch is not installed.

  python experiments/benchmarks/torch_resnet20.py [--repeats 5] [--steps 6]
"""
from __future__ import annotations

import argparse
import statistics
import time


def resnet20():
  """The PyTorch ResNet-20 (CIFAR, 10 classes, seed 0), in train mode; needs torch."""
  import torch
  from torch import nn

  class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
      super().__init__()
      self.conv_0 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn_0 = nn.BatchNorm2d(cout)
      self.conv_1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn_1 = nn.BatchNorm2d(cout)
      self.shortcut = nn.Sequential()
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn_0(self.conv_0(x)))
      return torch.relu(self.bn_1(self.conv_1(y)) + self.shortcut(x))

  layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
  cin = 16
  for stage, width in enumerate((16, 32, 64)):
    for block in range(3):
      layers.append(Block(cin, width, 2 if stage > 0 and block == 0 else 1))
      cin = width
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
  torch.manual_seed(0)
  return nn.Sequential(*layers).train()


def images_per_second(repeats: int = 5, steps: int = 6, batch: int = 128) -> float | None:
  """Median images/s of `steps` training steps over `repeats` timings; None without torch."""
  try:
    import torch
    from torch import nn
  except ImportError:
    return None
  model = resnet20()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  loss_fn = nn.CrossEntropyLoss()
  x = torch.randn(batch * 4, 3, 32, 32)
  y = torch.randint(0, 10, (batch * 4,))

  def run() -> float:
    start = time.perf_counter()
    for i in range(steps):
      rows = slice((i % 4) * batch, (i % 4 + 1) * batch)
      optimizer.zero_grad(set_to_none=True)
      loss_fn(model(x[rows]), y[rows]).backward()
      optimizer.step()
    return steps * batch / (time.perf_counter() - start)

  run()  # warm up the allocator and kernels
  return statistics.median(run() for _ in range(repeats))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=6)
  args = parser.parse_args()
  rate = images_per_second(args.repeats, args.steps)
  if rate is None:
    print("torch is not installed; nothing to time")
    return
  import torch
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: "
        f"ResNet-20 batch 128 train step {rate:.1f} images/s (median of {args.repeats})")


if __name__ == "__main__":
  main()
