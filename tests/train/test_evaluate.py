"""Evaluation over padded batches: sums over the real examples only, for class labels [n]
and sequence labels [n, t] (each example's mean over its positions), on a last partial batch."""
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.data.inputs import InputSpec
from lotto.train.evaluate import EvalSet, make_eval_fn

IDENTITY = InputSpec(scale=1.0, mean=(0.0,), std=(1.0,), augment=False)


def _logits_are_the_inputs(variables, x, train):
  del variables, train
  return x


def _numpy_cross_entropy(logits, labels):
  shifted = logits - logits.max(-1, keepdims=True)
  log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]


@pytest.mark.parametrize("label_shape", [(5,), (5, 3)])
def test_evaluation_sums_real_examples_of_a_last_partial_batch(label_shape):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(*label_shape, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=label_shape).astype(np.int32)
  data = EvalSet.create(logits, labels, batch_size=2)  # 3 batches, the last holds 1 example
  assert data.x.shape[:2] == (3, 2) and data.y.shape == (3, 2, *label_shape[1:])
  loss, correct = make_eval_fn(_logits_are_the_inputs, IDENTITY)(
      {}, {}, {}, data.x, data.y, data.weights)
  per_position = _numpy_cross_entropy(logits.astype(np.float64), labels)
  hits = (logits.argmax(-1) == labels).astype(np.float64)
  if len(label_shape) > 1:  # each example counts once: the mean over its positions
    per_position, hits = per_position.mean(-1), hits.mean(-1)
  assert float(loss) == pytest.approx(per_position.sum(), rel=1e-5)
  assert float(correct) == pytest.approx(hits.sum(), rel=1e-6)
