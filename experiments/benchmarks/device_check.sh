#!/usr/bin/env bash
# One prepared run of issue 14's benchmarks on an accelerator (or any machine), a few
# minutes in all: the train step (LeNet-300-100, ResNet-20), the 100-round SynFlow loop on
# VGG-16-BN, the sparse-execution crossover table and the GraphChallenge benchmark, plus
# the population benchmark of issue 13; issue 22's ResNet-50 step in float32 and bfloat16
# (images/s), the streaming benchmark and the notebook's smoke run on every device of the
# machine. Every table starts with the device it ran on;
# record them in BUILD_NOTES.md with the card's name.
#
#   bash experiments/benchmarks/device_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-/tmp/lotto_device_check}}"
mkdir -p "$out"
python -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
run() {  # name, command...: each benchmark's table in its own file; a failure does not stop the rest
  local name="$1"; shift
  echo "== $name: $*" | tee "$out/$name.txt"
  timeout 300 "$@" 2>&1 | tee -a "$out/$name.txt" || echo "($name exited $?)" | tee -a "$out/$name.txt"
}
run train_step python experiments/benchmarks/train_step.py --repeats 3
run prune_loop python experiments/benchmarks/prune_loop.py --model vgg16_bn --classes 100 \
  --rounds 100 --dtypes float32_rescaled,float64 --repeats 1
run sparse_execution python experiments/benchmarks/sparse_execution.py --repeats 3
run graph_challenge python experiments/benchmarks/graph_challenge.py --neurons 1024,4096 \
  --layers 120 --inputs 60000 --repeats 1
run population python experiments/benchmarks/population.py --repeats 3 --steps 500
run precision_step python experiments/benchmarks/precision_step.py --model resnet50 --batch 128 \
  --size 224 --steps 5 --repeats 3
run input_pipeline python experiments/benchmarks/input_pipeline.py --quick
run notebook_smoke env LOTTO_NOTEBOOK_SMOKE=1 LOTTO_NOTEBOOK_WORKDIR="$out/notebook_runs" \
  python -c "import nbclient, nbformat
nb = nbformat.read('experiments/notebooks/lotto_colab.ipynb', as_version=4)
nb.cells = [c for c in nb.cells if 'colab-only' not in c.metadata.get('tags', [])]
nbclient.NotebookClient(nb, timeout=600, kernel_name='python3').execute()
print(''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs))"
