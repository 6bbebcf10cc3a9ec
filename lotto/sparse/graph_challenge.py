"""The GraphChallenge sparse-DNN inference (Kepner et al., HPEC 2019) on RadiX-Net layers.

L layers of N neurons: Y_{l+1} = min(YMAX, ReLU(Z + b_l * (Z != 0))), Z = Y_l W_l (the
reference `inferenceReLUvec` adds the bias only to the nonzeros of Y W, zeroes negatives,
caps at YMAX = 32); weights 1/16; bias -0.3, -0.35, -0.4, -0.45 for N = 1024, 4096, 16384,
65536; answer: the inputs with a nonzero after the last layer; rate: inputs x connections
/ seconds ("edges/s").

Networks (`challenge_radices`): a RadiX-Net neuron has radix x block inputs; 32 = 2 x 16
(radix-2 lists over N / 16 = 2^k neurons, widened by ones(16, 16)) fits every published N
(k = 6, 8, 10, 12 divide L = 120) and weight (1/16 = 1 / block): our reading, not the
challenge's files. Radices (32, 32) give 32 inputs at N = 1024 too, but every input dies
in three layers under the challenge's weight and bias; 4096 = 2^12 has no lists of 32s.

Fast path (`compress_dnn`, `forward`): a RadiX layer of radix r at place p over S = N / B
neurons sends i to (i + d p) mod S, d < r; with i = p h + l (h < S / p) it adds d to h
alone, wrapping: a band of width r along h for each l. Cut h into tiles: a layer is one
batched matmul over (tile, l) of (B x window) inputs to (B x tile) outputs, the window
gathered by rolls. A tile of all h is a dense block; tile r reads 2r inputs per r used;
tile 1 is the shifted-add form (no waste). Activations stay (S, B, batch); the layers,
stacked by place in the radix list (the period), run under one `lax.scan`.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.sparse.layer import sparse_layer, static
from lotto.sparse.radix import detect_radix

YMAX = 32.0
WEIGHT = 1 / 16
BLOCK = 16
BIASES = {1024: -0.3, 4096: -0.35, 16384: -0.4, 65536: -0.45}
INPUT_DENSITY = 6_374_505 / (60_000 * 1024)  # the challenge's inputs at N = 1024


def challenge_radices(neurons: int) -> tuple[list[int], int]:
  """One period of the challenge network, (radix list, Kronecker block): radix x block = 32
  inputs per neuron; `radixnet([radices], [block] * (len(radices) + 1))` builds it.

  Raises:
    ConfigError: `neurons` is not 16 times a power of two (>= 64).
  """
  k = int(round(math.log2(max(neurons, 1) / BLOCK)))
  if k < 2 or BLOCK * 2 ** k != neurons:
    raise ConfigError(f"GraphChallenge networks have N = 16 * 2^k neurons; got {neurons}")
  return [2] * k, BLOCK


def activate(z: jax.Array, bias: jax.Array) -> jax.Array:
  """The challenge's nonlinearity: the bias on the nonzeros of z, then ReLU, then cap YMAX."""
  return jnp.clip(jnp.where(z != 0, z + bias, 0), 0, YMAX)


def _layer_arrays(masks, weights, biases, layers: int | None):
  """(layers, weight of layer l (dense), bias of layer l) with the checks they need."""
  period = len(masks)
  layers = period if layers is None else layers
  if period == 0 or layers % period:
    raise ConfigError(f"{layers} layers are not a whole number of periods of {period} masks")
  n = np.shape(masks[0])[0]
  if any(np.shape(m) != (n, n) for m in masks):
    raise ConfigError(f"masks must be square, of one shape; got {[np.shape(m) for m in masks]}")
  if not np.isscalar(weights) and len(weights) != layers:
    raise ConfigError(f"give one weight or {layers} (N, N) weight arrays; got {len(weights)}")
  bias = np.broadcast_to(np.asarray(biases, np.float32), (layers, n))

  def weight(l: int) -> np.ndarray:  # layer l's dense (N, N) weights
    value = weights if np.isscalar(weights) else np.asarray(weights[l], np.float32)
    return np.where(masks[l % period], np.float32(value), np.float32(0))

  return layers, weight, bias


def dense_forward(y0, masks: Sequence[np.ndarray], weights, biases,
                  layers: int | None = None) -> np.ndarray:
  """The reference: the (batch, N) activations after `layers` dense layers from y0.

  Args:
    y0: (batch, N) inputs.
    masks: one period of (N, N) bool masks: W_l is `weights` on masks[l % period], else 0.
    weights: one weight for every connection, or `layers` (N, N) arrays.
    biases: a scalar, or an (N,) or (layers, N) array.
    layers: the number of layers (default: one period).
  """
  layers, weight, bias = _layer_arrays(masks, weights, biases, layers)
  step = jax.jit(lambda y, w, b: activate(jnp.dot(y, w, precision="highest"), b))
  y = jnp.asarray(y0, jnp.float32)
  # One weight for all: one dense matrix per place in the period; else one per layer.
  shared = [jnp.asarray(weight(p)) for p in range(len(masks))] if np.isscalar(weights) else []
  for l in range(layers):
    y = step(y, shared[l % len(masks)] if shared else jnp.asarray(weight(l)), bias[l])
  return np.asarray(y)


@sparse_layer
class RadixDnn:
  """A RadiX-Net sparse DNN as stacked band matrices, one entry per place in the period.

  Neuron c * S + i is kept at row i, block c; with i = p * (tile * k + u) + l, band[k, l,
  c, u, w, v, a] weighs input row (tile * (k - nwin + 1 + w) + v) mod (S / p) of block a
  into output row tile * k + u of block c (both at offset l).

  Attributes (per place): bands (repeats, K, p, B, tile, nwin, tile, B); biases (repeats,
    S, B), or (repeats, 1, 1) where each layer has one; geometry (S, B, K, tile, p, nwin).
    Static: layers, and connections (over all layers).
  """
  bands: tuple[jax.Array, ...]
  biases: tuple[jax.Array, ...]
  geometry: tuple[tuple[int, ...], ...] = static()
  layers: int = static()
  connections: int = static()


def _geometry(mask: np.ndarray, layout, size: int, tile: int | None) -> tuple[int, ...]:
  """(S, B, K, tile, p, nwin) of a RadiX layer (`detect_radix` layout) over `size` rows."""
  n = mask.shape[0]
  blocks = n // size
  if layout is None or layout.crop or size % layout.size or n % size:
    raise ConfigError(f"a {mask.shape} mask is not a RadiX layer over blocks of {size} neurons")
  # The same layer over blocks of `size`: C' tiled (size / size') times is circulant.
  shifts = sorted(s + layout.size * q for s in layout.shifts for q in range(size // layout.size))
  radix, place = len(shifts), size if len(shifts) == 1 else shifts[1]
  if shifts != list(range(0, radix * place, place)) or size % place:
    raise ConfigError(f"shifts {shifts} over {size} neurons are not a RadiX layer (d * p for "
                      "d < r, p dividing the block)")
  height = size // place
  if tile is None:  # matmuls of >= 16 rows: shifted adds once the blocks give them
    tile = height if height <= 2 * radix else (1 if blocks >= 16 else radix)
  tile = min(tile, height)
  while height % tile:
    tile -= 1
  # Window tiles: enough to reach d = r - 1 rows back (all of h when one tile holds h).
  nwin = 1 if tile == height else 1 + -(-(radix - 1) // tile)
  if nwin > height // tile:
    tile, nwin = height, 1
  return size, blocks, height // tile, tile, place, nwin


def _band(weights: np.ndarray, geo: tuple[int, ...]) -> np.ndarray:
  """The (K, p, B, tile, nwin, tile, B) band of one layer's dense (N, N) weights."""
  size, blocks, count, tile, place, nwin = geo
  k, l, w, v, a, c, u = np.ix_(*(np.arange(m) for m in (count, place, nwin, tile, blocks,
                                                         blocks, tile)))
  rows = a * size + place * ((tile * (k - nwin + 1 + w) + v) % (size // place)) + l
  band = weights[rows, c * size + place * (tile * k + u) + l]  # (k, l, w, v, a, c, u)
  return band.transpose(0, 1, 5, 6, 2, 3, 4)  # outputs before inputs: the matmul's order


def compress_dnn(masks: Sequence[np.ndarray], weights=WEIGHT, biases=BIASES[1024],
                 layers: int | None = None, tile: int | None = None) -> RadixDnn:
  """The fast layout of a RadiX-Net DNN (arguments as `dense_forward`).

  Args:
    masks, weights, biases, layers: as `dense_forward`; every mask must be a square RadiX
      layer (block-circulant with shifts d * p, `lotto.sparse.radix.detect_radix`).
    tile: rows of h per output tile, at most (None: all of h where it has at most 2r
      rows, else 1 with B >= 16 blocks and r with fewer: the fastest on XLA:CPU here).

  Raises:
    ConfigError: masks that are not RadiX layers, or layers not a multiple of the period.
  """
  layers, weight, bias = _layer_arrays(masks, weights, biases, layers)
  period = len(masks)
  masks = [np.asarray(m, bool) for m in masks]
  layouts = [detect_radix(m) for m in masks]
  size = max((layout.size for layout in layouts if layout is not None), default=1)
  geometry = tuple(_geometry(m, layout, size, tile) for m, layout in zip(masks, layouts))
  repeats, bands = layers // period, []
  for place, (mask, geo) in enumerate(zip(masks, geometry)):
    if np.count_nonzero(_band(mask, geo)) != np.count_nonzero(mask):
      raise ConfigError(f"layer {place}: the band layout misses connections of its mask")
    stack = [_band(weight(l), geo) for l in
             (range(place, layers, period) if not np.isscalar(weights) else [place])]
    bands.append(jnp.asarray(np.broadcast_to(stack, (repeats, *stack[0].shape)), jnp.float32))
  if (bias == bias[:, :1]).all():  # one bias per layer (the challenge's): a scalar each
    bias = bias[:, :1, None]
  else:  # (layers, S, B): neuron c * S + i at [i, c]
    bias = bias.reshape(layers, -1, size).transpose(0, 2, 1)
  biases = tuple(jnp.asarray(bias[p::period]) for p in range(period))
  connections = layers * sum(np.count_nonzero(m) for m in masks) // period
  return RadixDnn(tuple(bands), biases, geometry, layers, connections)


def _radix_layer(x: jax.Array, band: jax.Array, bias: jax.Array, geo) -> jax.Array:
  """One layer on (S, B, batch) activations: rolled window tiles, one batched matmul."""
  size, blocks, count, tile, place, nwin = geo
  x6 = x.reshape(count, tile, place, 1, blocks, -1)
  win = jnp.concatenate([jnp.roll(x6, nwin - 1 - i, axis=0) for i in range(nwin)], axis=3)
  # (k l) batches of (c u) x (w v a) weights: the transposes move unit axes unless tile, p > 1.
  win = win.transpose(0, 2, 3, 1, 4, 5).reshape(count * place, nwin * tile * blocks, -1)
  z = jnp.einsum("gmk,gkn->gmn", band.reshape(count * place, blocks * tile, -1), win)
  z = z.reshape(count, place, blocks, tile, -1).transpose(0, 3, 1, 2, 4)
  return activate(z.reshape(x.shape), bias[..., None])


@jax.jit
def forward(net: RadixDnn, y0: jax.Array) -> jax.Array:
  """The (batch, N) activations after the network's last layer (`y0`: bool or float)."""
  (size, blocks), batch = net.geometry[0][:2], y0.shape[0]

  def period(carry, bands):
    # The biases ride in the carry, rotated, so a layer reads a static slice: a scanned
    # input's dynamic slice is fused into the activation, per element (2x slower here).
    x, biases = carry
    for band, bias, geo in zip(bands, biases, net.geometry):
      x = _radix_layer(x, band, bias[0], geo)
    return (x, tuple(jnp.roll(b, -1, axis=0) for b in biases)), None

  x = jnp.asarray(y0, jnp.float32).reshape(batch, blocks, size).transpose(2, 1, 0)
  (x, _), _ = jax.lax.scan(period, (x, net.biases), net.bands)
  return x.transpose(2, 1, 0).reshape(batch, size * blocks)


_alive = jax.jit(lambda net, y0: (forward(net, y0) != 0).any(axis=1))  # live rows of y0


def periods(net: RadixDnn, start: int, stop: int) -> RadixDnn:
  """The network's periods start..stop-1 (a period: one pass over the radix list)."""
  count = stop - start
  return RadixDnn(tuple(b[start:stop] for b in net.bands),
                  tuple(b[start:stop] for b in net.biases), net.geometry,
                  count * len(net.geometry), net.connections * count // len(net.bands[0]))


def categories(net: RadixDnn, inputs: np.ndarray, chunk: int = 256,
               drop_after: Sequence[int] = (),
               devices: Sequence[jax.Device] | None = None) -> np.ndarray:
  """The challenge's answer: which inputs (rows) keep a nonzero after the last layer.

  Chunks of `chunk` rows (the last padded with zeros) are dispatched round-robin over
  `devices` (default: the local ones) without waiting; one XLA device per CPU core
  (`--xla_force_host_platform_device_count`) runs a single-threaded program per core.
  After each period count in `drop_after`, rows left all zero (they stay zero: the bias
  touches nonzeros only) are dropped and the survivors regrouped, so the work scales with
  the live inputs, as in sparse (GraphBLAS) solutions.
  """
  devices, total = list(devices or jax.local_devices()), len(net.bands[0])
  bounds = [0, *sorted(p for p in set(drop_after) if 0 < p < total), total]
  rows, live = np.asarray(inputs), np.arange(len(inputs))
  for start, stop in zip(bounds[:-1], bounds[1:]):
    if not len(rows):
      break
    last = stop == bounds[-1]  # the last stage returns only which rows are alive
    nets, outs = [jax.device_put(periods(net, start, stop), d) for d in devices], []
    for index, first in enumerate(range(0, len(rows), chunk)):
      block = rows[first:first + chunk]
      block, device = np.pad(block, ((0, chunk - len(block)), (0, 0))), index % len(devices)
      outs.append((_alive if last else forward)(nets[device],
                                                jax.device_put(block, devices[device])))
    result = np.concatenate([np.asarray(o) for o in outs])[:len(rows)]
    keep = result if last else (result != 0).any(axis=1)
    rows, live = result[keep], live[keep]
  alive = np.zeros(len(inputs), bool)
  alive[live] = True
  return alive


def synthetic_inputs(count: int, neurons: int, seed: int = 0,
                     nnz: int | None = None) -> np.ndarray:
  """(count, N) bool MNIST-like inputs: strokes on a sqrt(N)-square grid, fixed by `seed`.

  Image i is the k_i pixels nearest a random two-segment polyline; the k_i vary and sum
  to exactly `nnz` (default: the challenge's density, 6,374,505 / (60,000 x 1024)).

  Raises:
    ConfigError: N is not a square, or nnz does not fit.
  """
  side = math.isqrt(neurons)
  nnz = round(INPUT_DENSITY * count * neurons) if nnz is None else nnz
  if side * side != neurons or not 0 <= nnz <= count * neurons:
    raise ConfigError(f"need a square N, 0 <= nnz <= count * N; got N = {neurons}, nnz = {nnz}")
  rng = np.random.default_rng(seed)
  mean = nnz / max(count, 1)
  k = np.clip(np.round(rng.normal(mean, 0.3 * mean, count)), 1, neurons).astype(np.int64)
  while k.sum() != nnz:  # exact total: move single pixels between random images
    fix = rng.choice(count, min(abs(int(k.sum() - nnz)), count), replace=False)
    k[fix] = np.clip(k[fix] + np.sign(nnz - k.sum()), 0, neurons)
  py, px = (c.ravel().astype(np.float32) for c in np.indices((side, side)))
  out = np.empty((count, neurons), bool)
  for start in range(0, count, 4096):
    n = min(4096, count - start)
    p = rng.uniform(0.15, 0.85, (3, 2, n, 1)).astype(np.float32) * (side - 1)
    dist = np.full((n, neurons), np.inf, np.float32)
    for (ay, ax), (by, bx) in ((p[0], p[1]), (p[1], p[2])):
      dy, dx = by - ay, bx - ax  # distance to the segment a-b: clamp the projection
      t = np.clip(((py - ay) * dy + (px - ax) * dx) / np.maximum(dy * dy + dx * dx, 1e-6),
                  0, 1)
      dist = np.minimum(dist, (py - ay - t * dy) ** 2 + (px - ax - t * dx) ** 2)
    dist += rng.uniform(0, 1e-3, dist.shape).astype(np.float32)  # break ties at random
    kth = np.take_along_axis(np.sort(dist, axis=1), k[start:start + n, None] - 1, axis=1)
    out[start:start + n] = (dist <= kth) & (k[start:start + n, None] > 0)
  return out
