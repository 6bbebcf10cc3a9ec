"""Evaluation: loss and accuracy over padded on-device batches (with bits per character
and perplexity for language models), and early stopping."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.types import ApplyFn
from lotto.data.inputs import InputSpec
from lotto.train import precision as precision_lib
from lotto.train.step import cross_entropy, model_variables


def make_eval_fn(apply_fn: ApplyFn, inputs: InputSpec, batched: bool = False,
                 precision: str = "float32"):
  """Jitted evaluation over padded batches: returns summed loss and correct count.

  With `batched`, params, masks and batch_stats carry a leading axis of K
  replicas (`vmap`ped) and the sums are [K] arrays. The forward pass runs in
  `precision`'s compute dtype, as training does; the sums are float32.
  """
  dtype = precision_lib.compute_dtype(precision)
  compute = None if dtype == jnp.float32 else dtype

  def evaluate(params, masks, batch_stats, x_batches, y_batches, weights):
    weights_now = masks_lib.apply(params, masks)
    if compute is not None:
      weights_now = precision_lib.cast_floats(weights_now, compute)
    variables = model_variables(weights_now, batch_stats)

    def body(totals, batch):
      raw, labels, w = batch
      x = inputs(raw, None)
      logits = apply_fn(variables, x if compute is None else x.astype(compute), train=False)
      if compute is not None:
        logits = logits.astype(jnp.float32)
      loss, hit = cross_entropy(logits, labels), logits.argmax(-1) == labels
      if labels.ndim > 1:  # sequence labels [b, t]: each example's mean over its positions
        loss = loss.reshape(labels.shape[0], -1).mean(-1)
        hit = hit.reshape(labels.shape[0], -1).mean(-1)
      loss = (loss * w).sum()
      correct = (hit * w).sum()
      return (totals[0] + loss, totals[1] + correct), None

    (loss, correct), _ = jax.lax.scan(body, (0.0, 0.0), (x_batches, y_batches, weights))
    return loss, correct

  if batched:
    return jax.jit(jax.vmap(evaluate, in_axes=(0, 0, 0, None, None, None)))
  return jax.jit(evaluate)


# What a language model's evaluation reports beyond loss and accuracy (`language_metrics`).
LANGUAGE_METRICS = ("bpc", "perplexity")


def language_metrics(loss: float) -> dict[str, float]:
  """Bits per character and perplexity of a mean loss in nats per character (token).

  Returns:
    {"bpc": loss / ln 2, "perplexity": exp(loss)} (perplexity inf when exp overflows).
  """
  loss = float(loss)
  perplexity = math.inf if loss > 709.0 else math.exp(loss)  # exp overflows float64 at ~709.8
  return {"bpc": loss / math.log(2.0), "perplexity": perplexity}


def split_metrics(loss: float, accuracy: float, language_model: bool) -> dict[str, float]:
  """A split's (or the train steps') mean metrics: loss and accuracy, and for a language
  model also its bits per character and perplexity (`language_metrics`)."""
  metrics = {"loss": float(loss), "accuracy": float(accuracy)}
  if language_model:
    metrics.update(language_metrics(loss))
  return metrics


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
  """{f"{prefix}_{name}": value}: a split's metrics as results or history keys
  ("test" -> test_loss, test_accuracy[, test_bpc, test_perplexity])."""
  return {f"{prefix}_{name}": value for name, value in metrics.items()}


@dataclasses.dataclass
class EvalSet:
  """An evaluation split on the device, padded into equal batches."""
  x: jax.Array
  y: jax.Array
  weights: jax.Array
  size: int

  @classmethod
  def create(cls, x: np.ndarray, y: np.ndarray, batch_size: int) -> "EvalSet":
    n = len(x)
    batch_size = max(1, min(batch_size, n)) if n else 1
    num_batches = max(1, math.ceil(n / batch_size))
    pad = num_batches * batch_size - n
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if n else np.zeros(
        (batch_size, *x.shape[1:]), x.dtype)
    yp = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)]) if n else np.zeros(
        (batch_size, *y.shape[1:]), np.int32)
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]) if n else np.zeros(
        batch_size, np.float32)
    shape = (num_batches, batch_size)
    return cls(jnp.asarray(xp.reshape(*shape, *x.shape[1:])),
               jnp.asarray(yp.reshape(*shape, *y.shape[1:])),
               jnp.asarray(w.reshape(shape)), n)


def early_stopping(history: list[dict]) -> dict:
  """The evaluation with minimum finite validation loss (None fields if there is none).

  A language model's history (test_bpc and test_perplexity in its records) also gives
  the early-stopping test loss, bits per character and perplexity.
  """
  language = any("test_perplexity" in h for h in history)
  extra = ("test_loss",) + tuple(f"test_{k}" for k in LANGUAGE_METRICS) if language else ()
  # A diverged evaluation (NaN or inf loss) is never the best one.
  with_val = [h for h in history if "val_loss" in h and math.isfinite(h["val_loss"])]
  if not with_val:
    return {"early_stop_step": None, "early_stop_test_accuracy": None, "early_stop_val_loss": None,
            **{f"early_stop_{k}": None for k in extra}}
  best = min(with_val, key=lambda h: (h["val_loss"], h["step"]))
  return {"early_stop_step": best["step"], "early_stop_test_accuracy": best["test_accuracy"],
          "early_stop_val_loss": best["val_loss"],
          **{f"early_stop_{k}": best.get(k) for k in extra}}
