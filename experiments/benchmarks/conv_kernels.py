"""ResNet-20's convolutions kernel by kernel: XLA:CPU (lotto's `conv_grad`) against PyTorch.

For each 3x3 layer shape of ResNet-20 at batch 128: the forward convolution, the input
gradient and the kernel gradient as `lotto.models.conv_grad` computes them (the kernel
gradient over chunks of `KERNEL_GRAD_CHUNK` examples), the kernel gradient as one
correlation over the whole batch (what it was before the chunks), and, when torch is
installed, PyTorch's forward and `aten.convolution_backward` (NCHW). Then ResNet-20's
eval-mode forward in images/s, lotto against `torch_resnet20.py`'s model. Milliseconds,
median of --repeats jitted calls after a compiling one.

  python experiments/benchmarks/conv_kernels.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
from jax import lax

from lotto.models import conv_grad, create_model, init_variables

SHAPES = ((32, 16, 1), (16, 32, 1), (8, 64, 1), (32, 16, 2))  # H = W, C (O = C x stride), stride
BATCH = 128
PADS = ((1, 1), (1, 1))


def _ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def xla_row(size: int, channels: int, stride: int, repeats: int) -> list[float]:
  """ms: forward, input gradient, kernel gradient (chunked), kernel gradient (whole batch)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, size, size, channels))
  kernel = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, channels, channels * stride))
  strides = (stride, stride)
  y = lax.conv_general_dilated(x, kernel, strides, PADS, dimension_numbers=conv_grad.NHWC)
  grad = jax.random.normal(jax.random.PRNGKey(2), y.shape)
  forward = jax.jit(lambda x, k: lax.conv_general_dilated(x, k, strides, PADS,
                                                          dimension_numbers=conv_grad.NHWC))
  backward = lambda x, k, g: conv_grad._backward(strides, PADS, (x, k), g)  # noqa: E731
  grad_x = jax.jit(lambda x, k, g: backward(x, k, g)[0])
  grad_k = jax.jit(lambda x, k, g: backward(x, k, g)[1])
  whole = jax.jit(lambda x, g: conv_grad._kernel_gradient(x, g, strides, PADS, (3, 3)))
  return [_ms(lambda: forward(x, kernel), repeats), _ms(lambda: grad_x(x, kernel, grad), repeats),
          _ms(lambda: grad_k(x, kernel, grad), repeats), _ms(lambda: whole(x, grad), repeats)]


def torch_row(size: int, channels: int, stride: int, repeats: int) -> list[float] | None:
  """ms: PyTorch's forward, input gradient, kernel gradient; None without torch."""
  try:
    import torch
  except ImportError:
    return None
  x = torch.randn(BATCH, channels, size, size)
  w = 0.1 * torch.randn(channels * stride, channels, 3, 3)
  g = torch.randn_like(torch.nn.functional.conv2d(x, w, stride=stride, padding=1))

  def backward(which):
    return lambda: torch.ops.aten.convolution_backward(
        g, x, w, None, [stride, stride], [1, 1], [1, 1], False, [0, 0], 1, which)

  with torch.no_grad():
    return [_ms(lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=1), repeats),
            _ms(backward([True, False, False]), repeats),
            _ms(backward([False, True, False]), repeats)]


def forward_images_per_second(repeats: int) -> tuple[float, float | None]:
  """ResNet-20 eval-mode forward at batch 128: (lotto, PyTorch or None), images/s."""
  model = create_model("resnet20", 10)
  params, stats = init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
  x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, 32, 32, 3))
  apply = jax.jit(lambda p, s, x: model.apply({"params": p, "batch_stats": s}, x, train=False))
  lotto_rate = BATCH / (_ms(lambda: apply(params, stats, x), repeats) / 1e3)
  try:
    import torch
    import torch_resnet20
  except ImportError:
    return lotto_rate, None
  net = torch_resnet20.resnet20().eval()
  inputs = torch.randn(BATCH, 3, 32, 32)
  with torch.no_grad():
    torch_rate = BATCH / (_ms(lambda: net(inputs), repeats) / 1e3)
  return lotto_rate, torch_rate


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {BATCH}, 3x3 kernels; "
        f"ms, median of {args.repeats}; kernel gradient in chunks of "
        f"{conv_grad.KERNEL_GRAD_CHUNK}")
  print(f"{'layer':<18} {'fwd':>6} {'x grad':>7} {'k grad':>7} {'k grad 1 chunk':>15} "
        f"{'torch fwd':>10} {'torch x grad':>13} {'torch k grad':>13}")
  for size, channels, stride in SHAPES:
    xla = xla_row(size, channels, stride, args.repeats)
    reference = torch_row(size, channels, stride, args.repeats)
    theirs = ("-", "-", "-") if reference is None else tuple(f"{t:.1f}" for t in reference)
    name = f"{size}x{size} {channels}->{channels * stride} s{stride}"
    print(f"{name:<18} {xla[0]:>6.1f} {xla[1]:>7.1f} {xla[2]:>7.1f} {xla[3]:>15.1f} "
          f"{theirs[0]:>10} {theirs[1]:>13} {theirs[2]:>13}", flush=True)
  mine, theirs = forward_images_per_second(args.repeats)
  print(f"ResNet-20 eval forward, batch {BATCH}: lotto {mine:.0f} images/s"
        + ("" if theirs is None else f", PyTorch {theirs:.0f} ({mine / theirs:.2f}x)"))


if __name__ == "__main__":
  main()
