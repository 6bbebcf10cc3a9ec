"""The GraphChallenge sparse-DNN benchmark (Kepner et al., HPEC 2019) on lotto's RadiX-Net
layers: edges/s = inputs x connections / seconds.

For each N in --neurons: the network from lotto's RadiX-Net generator
(`graph_challenge.challenge_radices`: radix-2 lists widened by ones(16, 16), 32
connections per neuron; --radices/--block override it), every weight 1/16, the published
bias (-0.3 for N = 1024, -0.35 for 4096), L = --layers; --inputs synthetic MNIST-like
binary inputs with the challenge's density (6,374,505 nonzeros per 60,000 x 1024). The fast
forward (`graph_challenge.categories`, band matmuls under one scan, chunks of --chunk rows
spread over one XLA device per core) is checked against the dense reference
(`dense_forward`) on --check inputs, then timed over all inputs (median of --repeats, after
a warm-up), twice: 'all' computes every input through every layer; 'drop' drops the inputs
left all zero after the periods in --drop-after (they stay zero: the bias touches nonzeros
only), so its work scales with the live inputs as sparse (GraphBLAS) solutions' does; both
rates count every input's connections. The published anchors (SuiteSparse:GraphBLAS,
Davis et al., HPEC 2019, as issue 14 quotes them) are printed beside the rates.

  python experiments/benchmarks/graph_challenge.py [--neurons 1024,4096] [--layers 120]
      [--inputs 60000] [--repeats 3] [--chunk 256] [--check 128] [--devices 2]
      [--drop-after 1,2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def parse() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--neurons", default="1024,4096")
  parser.add_argument("--layers", type=int, default=120)
  parser.add_argument("--inputs", type=int, default=60_000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--chunk", type=int, default=256)
  parser.add_argument("--check", type=int, default=128,
                      help="inputs checked against the dense reference (N = 1024; fewer above)")
  parser.add_argument("--devices", type=int, default=os.cpu_count(),
                      help="XLA CPU devices to force (one single-threaded program per core)")
  parser.add_argument("--radices", default=None, help="one radix list, e.g. 32,32 (N fixed)")
  parser.add_argument("--block", type=int, default=1, help="Kronecker block with --radices")
  parser.add_argument("--drop-after", default="1,2",
                      help="periods after which all-zero inputs are dropped (the 'drop' rate)")
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args()


ARGS = parse()
if ARGS.devices and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={ARGS.devices}")

import jax  # noqa: E402  (after the device count is set)
import numpy as np  # noqa: E402

from lotto.sparse import graph_challenge as gc  # noqa: E402
from lotto.topologies import radixnet  # noqa: E402

ANCHORS = ("published: SuiteSparse:GraphBLAS, 20-core Xeon: 65-230 G edges/s; single thread: "
           "3.7-15.5 G edges/s. Target here: >= 15 G edges/s for N = 1024, L = 120 on 2 cores.")


def network(neurons: int) -> tuple[list[np.ndarray], str]:
  if ARGS.radices:
    radices, block = [int(r) for r in ARGS.radices.split(",")], ARGS.block
  else:
    radices, block = gc.challenge_radices(neurons)
  masks = radixnet([radices], [block] * (len(radices) + 1))
  if masks[0].shape[0] != neurons:
    raise SystemExit(f"radices {radices} x block {block} give N = {masks[0].shape[0]}, "
                     f"not {neurons}")
  return masks, f"[{','.join(map(str, radices))}]x{block}"


def measure(neurons: int) -> dict:
  masks, topology = network(neurons)
  bias = gc.BIASES.get(neurons, -0.3)
  net = gc.compress_dnn(masks, gc.WEIGHT, bias, ARGS.layers)
  inputs = gc.synthetic_inputs(ARGS.inputs, neurons, ARGS.seed)
  check = max(8, ARGS.check * 1024 // neurons)  # the dense reference costs N^2 per input
  fast = np.asarray(gc.forward(net, inputs[:check]))
  dense = gc.dense_forward(inputs[:check], masks, gc.WEIGHT, bias, ARGS.layers)
  error = float(np.abs(fast - dense).max())
  same = bool(((fast != 0).any(1) == (dense != 0).any(1)).all())
  drop = tuple(int(p) for p in ARGS.drop_after.split(",") if p)
  rates, answers = {}, {}
  for mode, drop_after in (("all", ()), ("drop", drop)):
    # Compile on every device and stage: enough rows that the survivors fill a chunk each.
    gc.categories(net, inputs[:ARGS.chunk * jax.device_count() * 16], ARGS.chunk, drop_after)
    times = []
    for _ in range(ARGS.repeats):
      start = time.perf_counter()
      answers[mode] = gc.categories(net, inputs, ARGS.chunk, drop_after)
      times.append(time.perf_counter() - start)
    rates[mode] = (statistics.median(times), ARGS.inputs * net.connections /
                   statistics.median(times) / 1e9)
  same = same and bool((answers["all"] == answers["drop"]).all())
  return {"N": neurons, "topology": topology, "check": check, "error": error, "same": same,
          "rates": rates, "alive": int(answers["all"].sum()), "connections": net.connections}


def main() -> None:
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s) "
        f"({os.cpu_count()} cores); L = {ARGS.layers}, {ARGS.inputs} inputs in chunks of "
        f"{ARGS.chunk}; median of {ARGS.repeats}. 'all': every input computed through every "
        f"layer; 'drop': inputs left all zero dropped after periods {ARGS.drop_after}")
  print(f"{'N':>6} {'topology':>18} {'edges/input':>12} {'check: max|d| on n, cats':>26} "
        f"{'categories':>11} {'s (all)':>8} {'G edges/s':>10} {'s (drop)':>9} {'G edges/s':>10}")
  for neurons in [int(n) for n in ARGS.neurons.split(",")]:
    r = measure(neurons)
    check = f"{r['error']:.1e} on {r['check']}, {'same' if r['same'] else 'DIFFER'}"
    (t_all, rate_all), (t_drop, rate_drop) = r["rates"]["all"], r["rates"]["drop"]
    print(f"{r['N']:>6} {r['topology']:>18} {r['connections']:>12,} "
          f"{check:>26} {r['alive']:>11} {t_all:>8.2f} {rate_all:>10.1f} {t_drop:>9.2f} "
          f"{rate_drop:>10.1f}", flush=True)
  print(ANCHORS)

if __name__ == "__main__":
  main()
