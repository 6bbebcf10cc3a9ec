"""Why Wanda gains little over magnitude here: per prunable layer of a trained seed, the
spread of the input-feature norms ||X_j||_2 on a calibration draw (max / median), and the
fraction of weights where Wanda's 50 % mask (|W| ||X_j|| per output unit) agrees with
magnitude pruning's per output unit (|W| alone).

  python experiments/oneshot_gpt/features.py --workdir runs [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

import lotto
from lotto.jobs.experiment import create_experiment
from lotto.jobs.oneshot import calibration_examples
from lotto.jobs.oneshot_settings import load_source, oneshot_settings_from_config
from lotto.jobs.oneshot_walk import EvalForward
from lotto.models.layer_inputs import call_order, layer_inputs

HERE = os.path.dirname(os.path.abspath(__file__))


def keep_half_per_output(scores: np.ndarray) -> np.ndarray:
  """Kernel [in, out]: True for the half of each output unit's inputs with the top scores."""
  order = np.argsort(-scores, axis=0, kind="stable")
  mask = np.zeros_like(scores, bool)
  np.put_along_axis(mask, order[: scores.shape[0] // 2], True, axis=0)
  return mask


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  config = lotto.load_config(os.path.join(HERE, "config.py"), f"oneshot,wanda,u50,{args.seed}")
  config.oneshot.from_workdir = os.path.join(args.workdir, "oneshot_gpt", "train",
                                             f"seed_{args.seed}")
  exp = create_experiment(config)
  source = load_source(oneshot_settings_from_config(config, exp), exp)
  x = calibration_examples(exp, 128, 0)
  forward = EvalForward(exp.model)
  variables = {"params": source.params}
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(source.params)[0]}
  rows = []
  for name in call_order(forward, variables, x[:1]):
    if name not in flat or not ("attention" in name or "mlp" in name):
      continue
    inputs = np.asarray(jax.jit(layer_inputs, static_argnums=(0, 3))(forward, variables, x,
                                                                     name), np.float64)
    norms = np.linalg.norm(inputs, axis=0)
    kernel = np.abs(np.asarray(flat[name], np.float64))
    agree = (keep_half_per_output(kernel) == keep_half_per_output(kernel * norms[:, None]))
    rows.append({"layer": name, "norm_max_over_median": float(norms.max() / np.median(norms)),
                 "wanda_magnitude_agreement": float(agree.mean())})
    print(f"{name:<32} max/median ||X_j|| {rows[-1]['norm_max_over_median']:6.2f}   "
          f"masks agree on {100 * rows[-1]['wanda_magnitude_agreement']:.1f} %", flush=True)
  with open(os.path.join(HERE, "features.json"), "w", encoding="utf-8") as handle:
    json.dump(rows, handle, indent=1)


if __name__ == "__main__":
  main()
