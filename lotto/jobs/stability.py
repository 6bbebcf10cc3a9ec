"""Rewinding studies: instability to SGD noise and ticket accuracy against k (`mode = "stability"`).

For each rewind step k in `stability.rewind_steps`: take theta_k from one dense
run, train two copies to the end under different SGD noise (data order and
augmentation stream), evaluate the test error at `stability.points` evenly
spaced points on the straight line between the two endpoints, and report

    instability = max error on the path - mean of the two endpoint errors

(Frankle et al. 2020, linear mode connectivity). With `stability.levels = L`
> 0 the same is done for the sparse network: IMP rewound to k runs for L
levels (giving the ticket accuracy at density (1 - f)**L), and the copies
train the level-L mask from theta_k. Copies start like a rewound ticket: the
weights of step k, a fresh optimizer state, the LR schedule at k. BatchNorm
statistics are interpolated along with the weights (not recomputed).

Workdir: `dense/` (the dense run, keeping every theta_k), `k_<k>/` per rewind
step (`dense_a/`, `dense_b/`, `imp/`, `sparse_b/`, results.json), and at the
root results.json and stability.png.
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from lotto import reports
from lotto.core import masks as masks_lib
from lotto.core.rng import purpose_key
from lotto.jobs import imp as imp_lib
from lotto.jobs.experiment import create_experiment, job
from lotto.jobs.stability_settings import stability_settings_from_config
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.train.loop import load_state, train_run
from lotto.train.state import TrainState, rewind
from lotto.train.trainer import Trainer


def interpolate(state_a: TrainState, state_b: TrainState, alpha: float) -> TrainState:
  """(1 - alpha) * a + alpha * b for params and BN statistics; a's mask (re-applied)."""
  mix = lambda a, b: (1.0 - alpha) * a + alpha * b  # noqa: E731
  params = masks_lib.apply(jax.tree.map(mix, state_a.params, state_b.params), state_a.masks)
  stats = jax.tree.map(mix, state_a.batch_stats, state_b.batch_stats)
  return state_a.replace(params=params, batch_stats=stats)


def interpolation_errors(trainer: Trainer, state_a: TrainState, state_b: TrainState,
                         points: int, split: str = "test") -> tuple[list[float], list[float]]:
  """Test error at `points` evenly spaced alphas in [0, 1] on the line from a to b.

  Returns:
    (alphas, errors), errors as fractions; alpha 0 is `state_a` itself.
  """
  alphas = [float(a) for a in np.linspace(0.0, 1.0, points)]
  errors = [1.0 - trainer.evaluate(interpolate(state_a, state_b, a), split)[0]["accuracy"]
            for a in alphas]
  return alphas, errors


def instability(errors: list[float]) -> float:
  """Max error on the path minus the mean of the two endpoint errors."""
  return float(max(errors) - 0.5 * (errors[0] + errors[-1]))


def second_copy(state: TrainState, seed: int) -> tuple[TrainState, int]:
  """The second copy's start and data seed: same weights, other SGD noise."""
  data_seed = int(jax.random.randint(purpose_key(seed, "stability_data_order"), (), 0,
                                     2**31 - 1))
  return state.replace(rng=purpose_key(seed, "stability_copy_b")), data_seed


def _pair(trainer: Trainer, directory: str, initial: TrainState, points: int, label: str,
          state_a: TrainState | None = None) -> dict:
  """Trains the two copies (a unless given) and measures the path between them."""
  exp = trainer.experiment
  if state_a is None:
    state_a, _ = train_run(trainer, directory + "_a", initial, label=f"{label} a")
  start_b, data_seed = second_copy(initial, exp.seed)
  state_b, _ = train_run(trainer, directory + "_b", start_b, label=f"{label} b",
                         data_seed=data_seed)
  alphas, errors = interpolation_errors(trainer, state_a, state_b, points)
  return {"alphas": alphas, "errors": errors, "instability": instability(errors),
          "endpoint_errors": [errors[0], errors[-1]],
          "density": masks_lib.density(initial.masks, exp.prunable)}


@job("stability")
def run_stability(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Instability (dense and, with levels > 0, sparse) and ticket accuracy per rewind step."""
  exp = create_experiment(config)
  settings = stability_settings_from_config(config, exp)
  if settings.levels:
    sub = _imp_config(config, settings.rewind_texts[0], settings.levels)
    imp_lib.imp_settings_from_config(sub, exp)  # validate the imp section up front
  runs.prepare_workdir(exp.run_config, workdir)
  trainer = Trainer(exp)
  theta_0 = exp.init_state()
  dense_dir = os.path.join(workdir, "dense")
  keep = tuple(k for k in settings.rewind_steps if k > 0)
  train_run(trainer, dense_dir, theta_0, keep=keep, label="dense")
  records = []
  for text, k in zip(settings.rewind_texts, settings.rewind_steps):
    kdir = os.path.join(workdir, f"k_{k}")
    path = os.path.join(kdir, runs.RESULTS_FILE)
    finished = runs.read_intact(path, ("rewind_step", "dense"))
    if finished is not None:  # the record as it was made (without the file's mode)
      records.append({k: v for k, v in finished.items() if k != "mode"})
      continue
    theta_k = theta_0 if k == 0 else load_state(dense_dir, k, theta_0)
    record = {"rewind_step": k, "rewind": text}
    record["dense"] = _pair(trainer, os.path.join(kdir, "dense"),
                            rewind(theta_k, masks_lib.ones_like(theta_k.params), exp.tx),
                            settings.points, f"k={k} dense")
    if settings.levels:
      imp_dir = os.path.join(kdir, "imp")
      imp_results = imp_lib.run_imp(_imp_config(config, text, settings.levels), imp_dir)
      ticket = imp_results["levels"][-1]
      level_path = imp_lib.level_dir(imp_dir, settings.levels)
      mask = runs.read_masks(os.path.join(level_path, masks_lib.MASK_FILE), theta_k.masks)
      state_a = load_state(level_path, exp.total_steps, theta_k)
      record["ticket_accuracy"] = ticket["final_test_accuracy"]
      if "final_test_perplexity" in ticket:  # a language model's
        record["ticket_perplexity"] = ticket["final_test_perplexity"]
      record["ticket_density"] = ticket["density"]
      record["sparse"] = _pair(trainer, os.path.join(kdir, "sparse"), rewind(theta_k, mask, exp.tx),
                               settings.points, f"k={k} sparse", state_a=state_a)
    runs.write_json(path, {"mode": "stability_point", **record})
    records.append(record)
    if exp.verbose:
      note(_line(record))
  results = {"mode": "stability", "config_hash": runs.config_hash(exp.run_config), "seed": exp.seed,
             "points": settings.points, "levels": settings.levels, "rewind": records}
  runs.write_results(workdir, results)
  text = reports.write_stability_report(workdir)
  if exp.verbose:
    note(text)
  return results


def _imp_config(config: ml_collections.ConfigDict, rewind_text: str,
                levels: int) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.mode = "imp"
  sub.imp.rewind, sub.imp.levels = rewind_text, levels
  sub.imp.branches, sub.imp.branch_levels = (), ()
  return sub


def _line(record: dict) -> str:
  text = f"k={record['rewind_step']}: dense instability {100 * record['dense']['instability']:.2f} pts"
  if "sparse" in record:
    text += (f"; sparse ({100 * record['ticket_density']:.1f}%) instability "
             f"{100 * record['sparse']['instability']:.2f} pts, ticket accuracy "
             f"{100 * record['ticket_accuracy']:.1f}%")
  return text

