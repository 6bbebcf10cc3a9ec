"""Iterative SynFlow on VGG-16-BN in PyTorch, written here the way Synaptic-Flow runs it.

The same-sitting reference for `prune_loop.py`'s VGG-16 row (the issue's
33.0 s is Synaptic-Flow's own code, which is not on this machine): VGG-16
with BatchNorm, CIFAR-100 head (one Linear 512 -> 100, 14.76M prunable
weights), float64 (the reference casts the model to double), BatchNorm in
eval mode, |params| and an all-ones input, 100 rounds on the exponential
schedule to density 1e-2; each round scores |w * dR/dw| and keeps the global
top k through `torch.kthvalue` over the concatenated scores (as the
reference's global masker does). Eager mode, all of torch's CPU threads.
Optional: prints a note and returns None without torch.

  python experiments/benchmarks/torch_synflow.py [--rounds 100] [--dtype float64]
"""
from __future__ import annotations

import argparse
import time

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M")


def synflow_seconds(rounds: int = 100, density: float = 0.01, classes: int = 100,
                    dtype: str = "float64") -> tuple[float, float] | None:
  """(seconds for all rounds, final density); None when torch is not installed."""
  try:
    import torch
    from torch import nn
  except ImportError:
    return None
  torch.manual_seed(0)
  layers, channels = [], 3
  for width in VGG16:
    if width == "M":
      layers.append(nn.MaxPool2d(2))
    else:
      layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
      channels = width
  layers += [nn.Flatten(), nn.Linear(512, classes)]
  model = nn.Sequential(*layers).to(getattr(torch, dtype)).eval()
  weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
  masks = [torch.ones_like(w, dtype=torch.bool) for w in weights]
  total = sum(w.numel() for w in weights)
  x = torch.ones(1, 3, 32, 32, dtype=getattr(torch, dtype))

  start = time.perf_counter()
  with torch.no_grad():
    for p in model.parameters():
      p.abs_()
    originals = [w.clone() for w in weights]
  for r in range(1, rounds + 1):
    with torch.no_grad():
      for w, w0, m in zip(weights, originals, masks):
        w.copy_(w0 * m)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    scores = torch.cat([(w.grad * w).abs().flatten() for w in weights])
    keep = round(density ** (r / rounds) * total)
    threshold = torch.kthvalue(scores, total - keep).values if keep < total else -1.0
    offset = 0
    for i, w in enumerate(weights):
      masks[i] = (scores[offset:offset + w.numel()] > threshold).view_as(w)
      offset += w.numel()
  seconds = time.perf_counter() - start
  return seconds, sum(int(m.sum()) for m in masks) / total


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=100)
  parser.add_argument("--dtype", default="float64")
  args = parser.parse_args()
  result = synflow_seconds(args.rounds, dtype=args.dtype)
  if result is None:
    print("torch is not installed; nothing to time")
    return
  import torch
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: SynFlow VGG-16-BN "
        f"(CIFAR-100 head) {args.rounds} rounds in {args.dtype}: {result[0]:.1f} s, "
        f"final density {result[1]:.4g}")


if __name__ == "__main__":
  main()
