"""The train loop's seams: hooks run at their steps (block boundaries include them, a
returned state replaces the running one), and the metric writer receives every evaluation."""
import jax
import numpy as np
import pytest

from lotto.jobs.experiment import create_experiment
from lotto.runtime.metrics import HistoryWriter, MultiWriter, ProgressWriter
from lotto.train.hooks import AtStepsHook, EveryHook
from lotto.train.loop import train_run
from lotto.train.trainer import Trainer


class RecordingWriter:
  """A metric writer that keeps every call."""

  def __init__(self):
    self.calls = []
    self.flushed = 0

  def write_scalars(self, step, scalars):
    self.calls.append((step, dict(scalars)))

  def flush(self):
    self.flushed += 1


def test_hooks_run_at_their_steps_and_the_writer_sees_every_evaluation(tiny_config, tmp_path):
  tiny_config.train.loop = "step"  # one compiled step for blocks of any length
  exp = create_experiment(tiny_config)  # 40 steps, eval every 10, checkpoint every 20
  seen = []

  def record(tag):
    def hook(step, state):
      seen.append((tag, step, int(state.step)))
    return hook

  def prune_output_layer(step, state):
    masks = jax.tree.map(lambda m: m, state.masks)
    masks["output"]["kernel"] = np.zeros_like(masks["output"]["kernel"])
    return state.replace(masks=masks)

  writer = RecordingWriter()
  hooks = [AtStepsHook.of(record("at"), [33, 7, 13]), EveryHook(record("every"), 15),
           AtStepsHook.of(prune_output_layer, [25])]
  state, summary = train_run(Trainer(exp), str(tmp_path), exp.init_state(), hooks=hooks,
                             writer=writer)
  # Each hook ran exactly at its steps, with the state at that step (blocks ended there).
  assert sorted(seen) == [("at", 7, 7), ("at", 13, 13), ("at", 33, 33),
                          ("every", 15, 15), ("every", 30, 30)]
  # The state the hook returned at step 25 replaced the running one for the rest of the run.
  assert not np.asarray(state.masks["output"]["kernel"]).any()
  assert not np.asarray(state.params["output"]["kernel"]).any()
  assert summary["layer_densities"]["output/kernel"] == 0.0
  # The writer received every evaluation: the records of the JSON history, plus the
  # learning rate and the global and per-layer density at that step.
  assert [step for step, _ in writer.calls] == [10, 20, 30, 40]
  for (step, scalars), record in zip(writer.calls, summary["history"]):
    assert {"step": step, **{k: scalars[k] for k in record if k != "step"}} == record
    assert scalars["learning_rate"] == pytest.approx(5e-3)
  densities = [scalars["density/output/kernel"] for _, scalars in writer.calls]
  assert densities == [1.0, 1.0, 0.0, 0.0]  # the hook pruned the output layer at step 25
  total = 40 * 32 + 32 * 32 + 32 * 10
  assert writer.calls[-1][1]["density"] == (total - 320) / total
  assert writer.flushed == 1


def test_history_and_progress_writers(capsys):
  history = HistoryWriter([{"step": 10, "train_loss": 2.0}])
  progress = ProgressWriter(end_step=40, label="level 1", mode="lines")
  progress.start(10)
  both = MultiWriter([history, progress])
  both.write_scalars(20, {"train_loss": 1.5, "train_accuracy": 0.25, "val_loss": 1.75,
                          "test_accuracy": 0.5})
  assert history.history == [{"step": 10, "train_loss": 2.0},
                              {"step": 20, "train_loss": 1.5, "train_accuracy": 0.25,
                               "val_loss": 1.75, "test_accuracy": 0.5}]
  line = capsys.readouterr().out.strip()
  assert line.startswith("level 1 | step 20/40 | ")
  assert line.endswith("steps/s | train loss 1.500 acc 25.0% | val loss 1.750 | test acc 50.0%")
