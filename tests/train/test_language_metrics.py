"""Language-model metrics: bits per character and perplexity from the mean cross-entropy,
in results.json, the history, TensorBoard and the reports of a GPT run on a tiny corpus."""
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lotto.data import shakespeare_char
from lotto.jobs.masked_train import run_train
from lotto.reports.oneshot import oneshot_table
from lotto.reports.population import population_table
from lotto.train.evaluate import EvalSet, language_metrics, make_eval_fn, split_metrics

# Logits of 2 windows x 3 positions over a vocabulary of 4, and the next characters.
LOGITS = np.array([[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
                   [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 5.0, 0.0], [-1.0, 0.0, 1.0, 0.0]]],
                  np.float32)
LABELS = np.array([[0, 2, 3], [3, 2, 0]], np.int32)


def _mean_cross_entropy(logits, labels):
  """Nats per character, written out: -log softmax at the label, averaged over positions."""
  total, count = 0.0, 0
  for row, row_labels in zip(logits.astype(np.float64), labels):
    for position, label in zip(row, row_labels):
      total += math.log(sum(math.exp(v) for v in position)) - position[label]
      count += 1
  return total / count


def test_uniform_predictions_have_two_bits_and_perplexity_four():
  # A uniform guess among 4 characters: ln 4 nats = exactly 2 bits, perplexity 4.
  assert language_metrics(math.log(4.0)) == pytest.approx({"bpc": 2.0, "perplexity": 4.0})
  assert language_metrics(0.0) == {"bpc": 0.0, "perplexity": 1.0}
  assert language_metrics(1000.0)["perplexity"] == math.inf  # exp overflows: inf, not an error
  assert split_metrics(1.0, 0.5, False) == {"loss": 1.0, "accuracy": 0.5}  # image data: as before


def test_evaluation_reports_bpc_and_perplexity_of_the_mean_cross_entropy():
  # The evaluation of fixed logits over [n, t] labels (padded into batches of 1) against the
  # cross-entropy computed here by hand.
  def apply_fn(variables, x, train=False):
    del variables, train
    return jnp.asarray(LOGITS)[x[:, 0]]  # each example's input is its own index

  evaluate = make_eval_fn(apply_fn, lambda raw, key: raw)
  data = EvalSet.create(np.array([[0], [1]], np.int32), LABELS, batch_size=1)
  loss_sum, correct = evaluate({"w": jnp.ones(1)}, {"w": jnp.ones(1, bool)}, {}, data.x, data.y,
                               data.weights)
  metrics = split_metrics(float(loss_sum) / data.size, float(correct) / data.size, True)
  expected = _mean_cross_entropy(LOGITS, LABELS)
  assert metrics["loss"] == pytest.approx(expected, rel=1e-6)
  assert metrics["bpc"] == pytest.approx(expected / math.log(2), rel=1e-6)
  assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-6)
  # argmax hits: window 0 at position 0 only; window 1 at positions 0 and 1.
  assert metrics["accuracy"] == pytest.approx((1 / 3 + 2 / 3) / 2)


VERSE = "to be, or not to be, that is the question:\n" * 4


@pytest.fixture
def gpt_run(tiny_config, tmp_path, monkeypatch):
  # 20 works of a repeated verse (no package needed): 16 train, 2 validation, 2 test works.
  works = {f"work_{i:02d}": VERSE for i in range(20)}
  monkeypatch.setattr(shakespeare_char, "read_works", lambda directory=None: works)
  config = tiny_config
  config.data.name = "shakespeare_char"
  config.data.validation_size = 4
  config.data.batch_size = 8
  config.model.name = "gpt"
  config.model.layers, config.model.heads, config.model.width = 1, 2, 16
  config.train.duration, config.train.eval_every = "4it", "2it"
  config.train.checkpoint_every = "4it"
  workdir = tmp_path / "gpt"
  run_train(config, str(workdir))
  return workdir


@pytest.mark.slow  # a 4-step GPT run (10-30 s on 2 cores)
def test_a_gpt_run_reports_bpc_and_perplexity_in_results_and_tensorboard(gpt_run):
  results = json.loads((gpt_run / "results.json").read_text())
  loss = results["final_test_loss"]
  assert results["final_test_bpc"] == pytest.approx(loss / math.log(2), rel=1e-12)
  assert results["final_test_perplexity"] == pytest.approx(math.exp(loss), rel=1e-12)
  assert "final_test_accuracy" in results  # character accuracy stays
  best = next(h for h in results["history"] if h["step"] == results["early_stop_step"])
  assert results["early_stop_test_perplexity"] == best["test_perplexity"]
  for record in results["history"]:
    for split in ("train", "val", "test"):
      assert record[f"{split}_bpc"] == pytest.approx(record[f"{split}_loss"] / math.log(2))
      assert record[f"{split}_perplexity"] == pytest.approx(math.exp(record[f"{split}_loss"]))
  events = EventAccumulator(str(gpt_run))
  events.Reload()
  scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
             for tag in events.Tags()["scalars"]}
  for tag in ("train/bpc", "train/perplexity", "val/bpc", "val/perplexity", "test/bpc",
              "test/perplexity", "test/accuracy"):
    assert [step for step, _ in scalars[tag]] == [2, 4], tag
  assert scalars["test/perplexity"][-1][1] == pytest.approx(math.exp(loss), rel=1e-6)


def test_reports_show_perplexity_only_for_language_models():
  image = {"method": "wanda", "structure": "2:4", "target_density": 0.5, "finetune_steps": 0,
           "dense_test_accuracy": 0.9, "pruned_test_accuracy": 0.8, "pruned_test_loss": 0.5}
  assert "ppl" not in oneshot_table([image])
  text = {**image, "dense_test_perplexity": 4.0, "pruned_test_perplexity": 5.5,
          "pruned_test_bpc": 2.4594}
  lines = oneshot_table([text]).splitlines()
  assert "dense ppl" in lines[1] and "pruned bpc" in lines[1]
  assert lines[2].split()[-4:] == ["4.00+-0.00", "5.50+-0.00", "2.46+-0.00", "-"]
  pooled = {"final_test_accuracy": {"mean": 0.5, "std": 0.1, "values": {"0": 0.4, "1": 0.6}},
            "final_test_perplexity": {"mean": 5.0, "std": 1.0, "values": {"0": 4.0, "1": 6.0}}}
  table = population_table({"seeds": [0, 1], "base_mode": "train", "pooled": pooled})
  assert "final ppl" in table.splitlines()[1]
  assert table.splitlines()[-1].split() == ["mean+-sd", "50.00+-10.00", "5.00+-1.00"]
