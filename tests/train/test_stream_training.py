"""Training on the stream pipeline equals training on the resident one, bit for bit: a
single run (scanned and stepwise, whole blocks and one-step chunks), a population, the
device mesh, RigL's mask updates, kill-and-resume in the middle of an epoch, and a data file
damaged midway (one line naming it; the rerun resumes to the same params)."""
import dataclasses
import os

import jax
import numpy as np
import pytest

from lotto.core.errors import DataError
from lotto.data.examples import write_examples
from lotto.jobs.experiment import create_experiment
from lotto.jobs.masked_train import run_train
from lotto.jobs.sparse_train import build_sparse_run, initial_state
from lotto.runtime import runs
from lotto.runtime.checkpoints import Checkpointer
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import train_run
from lotto.train.trainer import Trainer

# configs/test.py: 3,800 training examples, batch 50, so 76 steps per epoch; blocks of 20,
# 30 and 30 steps cover steps 0..79 and cross the first epoch's end at step 76.
BLOCKS = (20, 30, 30)


def _assert_same_state(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _train(trainer, state, blocks=BLOCKS, data_seeds=None):
  losses = []
  for count in blocks:
    state, metrics = trainer.run_block(state, count, data_seeds)
    losses.append(metrics["loss"])
  return state, np.concatenate(losses)


def _pair(config, stream_limit_mb=2048.0, **options):
  """(resident trainer, stream trainer, the experiment) of one config; the stream's
  chunks hold at most stream_limit_mb / 16."""
  trainers = []
  for pipeline, limit_mb in (("resident", 2048.0), ("stream", stream_limit_mb)):
    config.data.pipeline, config.data.resident_limit_mb = pipeline, limit_mb
    exp = create_experiment(config)
    trainers.append(Trainer(exp, **options))
    assert trainers[-1].pipeline == pipeline
  return trainers[0], trainers[1], exp


@pytest.mark.parametrize("loop, limit_mb", [("scan", 2048.0), ("scan", 0.05), ("step", 0.5)])
def test_stream_and_resident_train_to_identical_params(tiny_config, loop, limit_mb):
  # 0.05 MB / 16 holds less than one step (50 examples of 41 float32 = 8.2 KB): one-step
  # chunks; 0.5 MB / 16: 3-step chunks; 2048 MB: each block whole.
  tiny_config.train.loop = loop
  resident, streamed, exp = _pair(tiny_config, limit_mb)
  chunk = streamed._feed.chunk  # pylint: disable=protected-access
  assert chunk == {2048.0: 10, 0.05: 1, 0.5: 3}[limit_mb]
  a, loss_a = _train(resident, resident.place(exp.init_state()))
  b, loss_b = _train(streamed, streamed.place(exp.init_state()))
  np.testing.assert_array_equal(loss_a, loss_b)  # every step's loss: the same batches
  _assert_same_state(a, b)


def test_a_streamed_population_equals_the_resident_population(tiny_config):
  resident, streamed, exp = _pair(tiny_config, seeds=(0, 3))
  states = [exp.init_state(), exp.init_state(init_key=jax.random.PRNGKey(3))]
  a, loss_a = _train(resident, resident.place(resident.stack(states)), (12, 9))
  b, loss_b = _train(streamed, streamed.place(streamed.stack(states)), (12, 9))
  np.testing.assert_array_equal(loss_a, loss_b)
  _assert_same_state(a, b)
  # Other data orders (the instability analysis's copies) stream theirs.
  a, loss_a = _train(resident, a, (5,), data_seeds=(7, 8))
  b, loss_b = _train(streamed, b, (5,), data_seeds=(7, 8))
  np.testing.assert_array_equal(loss_a, loss_b)
  _assert_same_state(a, b)


def test_streamed_batches_sharded_over_the_mesh_equal_the_resident_ones(tiny_config):
  tiny_config.data_parallel = "on"  # a mesh of every device (1 here; 2 in test_sharding)
  resident, streamed, exp = _pair(tiny_config)
  assert exp.mesh is not None
  a, loss_a = _train(resident, resident.place(exp.init_state()), (10, 15))
  b, loss_b = _train(streamed, streamed.place(exp.init_state()), (10, 15))
  np.testing.assert_array_equal(loss_a, loss_b)
  _assert_same_state(a, b)


def test_rigl_mask_updates_stream_like_resident(tiny_config):
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", "rigl"
  tiny_config.sparse.update_every, tiny_config.sparse.stop = "5it", "20it"
  tiny_config.train.loop = "step"  # one compile for chunks and blocks of any length
  # Streamed in 3-step chunks: the updates at 5, 10 and 15 fall inside chunks.
  finals = []
  for pipeline in ("resident", "stream"):
    tiny_config.data.pipeline = pipeline
    tiny_config.data.resident_limit_mb = 2048.0 if pipeline == "resident" else 0.5
    exp, settings, update = build_sparse_run(tiny_config)
    trainer = Trainer(exp, mask_update=update)
    state, losses = _train(trainer, trainer.place(initial_state(exp, settings, update)),
                           (12, 13))
    finals.append((state, losses))
  np.testing.assert_array_equal(finals[0][1], finals[1][1])
  _assert_same_state(finals[0][0], finals[1][0])
  masks = jax.tree.leaves(finals[1][0].masks)
  assert not all(np.asarray(m).all() for m in masks)  # sparse: the updates ran


class _Killed(Exception):
  pass


def _final(workdir, exp):
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = checkpointer.restore(checkpointer.latest_step(), exp.init_state())
  checkpointer.close()
  return state


def test_kill_mid_epoch_and_resume_streaming_equals_uninterrupted_resident(tiny_config,
                                                                          tmp_path):
  tiny_config.train.duration = "60it"  # of 76 per epoch: killed at 30, resumed from 20
  tiny_config.data.pipeline = "resident"
  straight = run_train(tiny_config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):  # resident, killed at 30 (its last checkpoint: 20)
    run_train(tiny_config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [30])])
  tiny_config.data.pipeline = "stream"  # the same run (the pipeline is not its identity)
  with pytest.raises(_Killed):  # resumed streaming from 20, killed at 50 (checkpoint: 40)
    run_train(tiny_config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [50])])
  assert not os.path.exists(tmp_path / "resumed" / runs.RESULTS_FILE)
  resumed = run_train(tiny_config, str(tmp_path / "resumed"))  # streaming from 40 to 60
  assert resumed["history"] == straight["history"]
  exp = create_experiment(tiny_config)
  _assert_same_state(_final(str(tmp_path / "straight"), exp),
                     _final(str(tmp_path / "resumed"), exp))


def test_a_file_damaged_midway_stops_with_its_name_and_the_rerun_resumes(tiny_config,
                                                                        tmp_path):
  tiny_config.train.duration = "60it"
  exp = create_experiment(tiny_config)
  straight, _ = train_run(Trainer(exp), str(tmp_path / "straight"), exp.init_state())
  # The same training set as lotto's array_record files, streamed from disk.
  files = write_examples(str(tmp_path / "data"), exp.dataset.x_train, exp.dataset.y_train)
  on_disk = dataclasses.replace(exp, dataset=dataclasses.replace(
      exp.dataset, x_train=None, y_train=None, pipeline="stream", train_source=files))
  path, intact = files.files[0].path, open(files.files[0].path, "rb").read()

  def damage(step, state):
    with open(path, "r+b") as handle:  # cut short while the run reads it
      handle.truncate(len(intact) // 3)

  with pytest.raises(DataError, match=rf"^dataset file {path} is truncated .*; restore or "
                     r"rewrite it and rerun: the run resumes from its last checkpoint$"):
    train_run(Trainer(on_disk), str(tmp_path / "run"), on_disk.init_state(),
              hooks=[AtStepsHook.of(damage, [30])])
  assert Checkpointer(str(tmp_path / "run" / "checkpoints")).latest_step() in (20, 40)
  with open(path, "wb") as handle:  # restored
    handle.write(intact)
  resumed, _ = train_run(Trainer(on_disk), str(tmp_path / "run"), on_disk.init_state())
  _assert_same_state(straight, resumed)
