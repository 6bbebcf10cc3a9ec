"""Populations (`config.seeds`): K replicas in one program equal K separate runs, per replica.

The vmapped step's batched matmuls reduce in another order than a single
run's, so the equality is within float rounding (measured: final params
differ by <= 1.2e-7 after 40 Adam steps on configs/test.py); masks, chosen
by ranks, are identical, and so are accuracies on the 1,000 test sequences.
"""
import json
import os

import jax
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.jobs.imp import run_imp
from lotto.jobs.replicas import check_memory, replica_bytes, seed_dir
from lotto.jobs.prune import run_prune
from lotto.jobs.sparse_sweep import run_sparse_sweep
from lotto.jobs.sparse_train import run_sparse_train
from lotto.jobs.prune_sweep import run_prune_sweep
from lotto.jobs.masked_train import run_train
from lotto.reports import write_report
from lotto.runtime.checkpoints import Checkpointer, ReplicaCheckpoints
from lotto.train.hooks import AtStepsHook
from tests.conftest import load_config

SEEDS = (0, 1, 2)
PARAM_ATOL = 1e-5  # float rounding of batched vs single matmuls over 40 steps (measured 1.2e-7)


def _config(mode, **sections):
  config = load_config("test")
  config.mode = mode
  config.train.tensorboard = False
  for dotted, value in sections.items():
    section, field = dotted.split("__")
    config[section][field] = value
  return config


def _final_params(directory, config):
  exp = create_experiment(config)
  checkpointer = Checkpointer(os.path.join(directory, "checkpoints"))
  state, _ = checkpointer.restore(exp.total_steps, exp.init_state())
  checkpointer.close()
  return jax.tree.leaves(state.params)


def _masks(path):
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def _population_and_singles(tmp_path, runner, config, seeds=SEEDS):
  config.seeds = seeds
  pooled = runner(config, str(tmp_path / "population"))
  singles = {}
  for seed in seeds:
    single = config.copy_and_resolve_references()
    single.seeds, single.seed = (), seed
    singles[seed] = runner(single, str(tmp_path / f"single_{seed}"))
  return pooled, singles


def _assert_history_close(population_history, single_history):
  assert [h["step"] for h in population_history] == [h["step"] for h in single_history]
  for mine, theirs in zip(population_history, single_history):
    assert mine["test_accuracy"] == pytest.approx(theirs["test_accuracy"], abs=1e-3)
    assert mine["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4)


def test_train_population_equals_separate_runs(tmp_path):
  config = _config("train")
  pooled, singles = _population_and_singles(tmp_path, run_train, config)
  assert pooled["mode"] == "population" and pooled["seeds"] == list(SEEDS)
  for seed, single in singles.items():
    directory = seed_dir(str(tmp_path / "population"), seed)
    replica = json.loads(open(os.path.join(directory, "results.json")).read())
    assert replica["config_hash"] == single["config_hash"]  # the single run's own config
    assert replica["final_test_accuracy"] == single["final_test_accuracy"]
    _assert_history_close(replica["history"], single["history"])
    single_config = config.copy_and_resolve_references()
    single_config.seeds, single_config.seed = (), seed
    for mine, theirs in zip(_final_params(directory, single_config),
                            _final_params(str(tmp_path / f"single_{seed}"), single_config)):
      np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=PARAM_ATOL, rtol=0)
  accuracies = [singles[s]["final_test_accuracy"] for s in SEEDS]
  assert pooled["pooled"]["final_test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  assert pooled["pooled"]["final_test_accuracy"]["std"] == pytest.approx(np.std(accuracies))
  table = write_report(str(tmp_path / "population")).splitlines()
  assert f"       1 {100 * singles[1]['final_test_accuracy']:>17.2f}" in table[3]
  assert table[5].startswith("mean+-sd") and \
      f"{100 * np.mean(accuracies):.2f}+-{100 * np.std(accuracies):.2f}" in table[5]
  # A replica's directory is a finished single run: the single job reads it back as such.
  again = config.copy_and_resolve_references()
  again.seeds, again.seed = (), 1
  reread = run_train(again, seed_dir(str(tmp_path / "population"), 1))
  assert reread["final_test_accuracy"] == pooled["pooled"]["final_test_accuracy"]["values"]["1"]


def test_prune_population_equals_separate_runs(tmp_path):
  config = _config("prune", prune__method="snip", prune__density=0.1, prune__at_step="10it")
  _, singles = _population_and_singles(tmp_path, run_prune, config, seeds=(0, 1))
  for seed, single in singles.items():
    directory = seed_dir(str(tmp_path / "population"), seed)
    replica = json.loads(open(os.path.join(directory, "results.json")).read())
    mine, theirs = _masks(os.path.join(directory, "masks.npz")), _masks(
        str(tmp_path / f"single_{seed}" / "masks.npz"))
    assert all(np.array_equal(mine[k], theirs[k]) for k in theirs)  # each seed's own mask
    assert replica["achieved_density"] == single["achieved_density"]
    assert replica["final_test_accuracy"] == single["final_test_accuracy"]
    _assert_history_close(replica["history"], single["history"])
  masks = [_masks(os.path.join(seed_dir(str(tmp_path / "population"), s), "masks.npz"))
           for s in (0, 1)]
  assert not all(np.array_equal(masks[0][k], masks[1][k]) for k in masks[0])


def test_imp_population_with_branches_equals_separate_runs(tmp_path):
  config = _config("imp", imp__levels=2, imp__rewind="10it", imp__branches=("random",),
                   imp__branch_levels=(2,))
  _, singles = _population_and_singles(tmp_path, run_imp, config, seeds=(0, 1))
  for seed, single in singles.items():
    directory = seed_dir(str(tmp_path / "population"), seed)
    replica = json.loads(open(os.path.join(directory, "results.json")).read())
    assert replica["complete"] and len(replica["levels"]) == 3
    for level in range(3):
      mine = _masks(os.path.join(directory, f"level_{level}", "masks.npz"))
      theirs = _masks(str(tmp_path / f"single_{seed}" / f"level_{level}" / "masks.npz"))
      assert all(np.array_equal(mine[k], theirs[k]) for k in theirs)
    assert [l["final_test_accuracy"] for l in replica["levels"]] == \
        [l["final_test_accuracy"] for l in single["levels"]]
    # The branch trained with the other seed's in one program, on its own seed's random mask.
    assert [(b["branch"], b["level"]) for b in replica["branches"]] == [("random", 2)]
    assert replica["branches"][0]["final_test_accuracy"] == \
        single["branches"][0]["final_test_accuracy"]
    assert replica["branches"][0]["layer_densities"] == single["branches"][0]["layer_densities"]


def test_rigl_population_equals_separate_runs(tmp_path):
  # 20 steps, an update every 5 until the stop at 75 % (15): two RigL updates, vmapped.
  config = _config("sparse_train", sparse__method="rigl")
  config.train.duration = "20it"
  _, singles = _population_and_singles(tmp_path, run_sparse_train, config, seeds=(0, 1))
  for seed, single in singles.items():
    directory = seed_dir(str(tmp_path / "population"), seed)
    replica = json.loads(open(os.path.join(directory, "results.json")).read())
    assert [u["step"] for u in single["mask_updates"]] == [5, 10]
    assert all(u["changed"] > 0 for u in single["mask_updates"])  # each update moved weights
    assert replica["mask_updates"] == single["mask_updates"]  # each update's positions, per seed
    assert replica["final_test_accuracy"] == single["final_test_accuracy"]


class _Killed(Exception):
  pass


def test_population_kill_and_resume_equals_uninterrupted(tmp_path):
  config = _config("train")
  config.seeds = SEEDS
  straight = run_train(config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):
    run_train(config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [30])])
  assert not os.path.exists(tmp_path / "resumed" / "results.json")
  resumed = run_train(config, str(tmp_path / "resumed"))
  assert resumed["pooled"] == straight["pooled"]
  for seed in SEEDS:
    mine, theirs = (json.loads(open(os.path.join(seed_dir(str(tmp_path / name), seed),
                                                 "results.json")).read())
                    for name in ("resumed", "straight"))
    assert mine["history"] == theirs["history"]  # bit-identical
    assert mine["final_test_accuracy"] == theirs["final_test_accuracy"]


def test_a_kill_between_two_replicas_saves_resumes_from_the_step_all_hold(tmp_path):
  directories = [str(tmp_path / "a"), str(tmp_path / "b")]
  exp = create_experiment(_config("train"))
  states = [exp.init_state(), exp.init_state()]
  checkpoints = ReplicaCheckpoints(directories, keep=set())
  checkpoints.save(10, states, [{"history": [{"step": 10}]}] * 2)
  # Killed after replica a saved step 20, before replica b did: a keeps 10 too.
  checkpoints.checkpointers[0].save(20, states[0], {}, drop_stale=False)
  assert checkpoints.checkpointers[0].steps() == [10, 20]
  step, _, payloads = checkpoints.restore_latest(states, min_step=0)
  checkpoints.close()
  assert step == 10 and payloads[1]["history"] == [{"step": 10}]


@pytest.mark.parametrize("seeds, message", [
    ((0, 1, 0), "seeds lists 0 more than once: (0, 1, 0)"),
    ((0, -1), "each of seeds must be an integer in [0, 2**32); got -1"),
    ((0, 1.5), "each of seeds must be an integer in [0, 2**32); got 1.5"),
])
def test_bad_seeds_are_one_line_errors(seeds, message):
  config = _config("train")
  config.seeds = seeds
  with pytest.raises(ConfigError) as info:
    create_experiment(config)
  assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("mode, message", [
    ("stability", "seeds (a population) works with mode train, prune, imp, sparse_train; got mode "
                  "'stability'"),
    ("prune_sweep", "(a sweep has its own sweep.seeds)"),
])
def test_modes_without_populations_refuse_seeds(tmp_path, mode, message):
  config = _config(mode)
  config.seeds = (0, 1)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    if mode == "prune_sweep":
      from lotto.jobs.prune_sweep import run_prune_sweep  # pylint: disable=import-outside-toplevel
      run_prune_sweep(config, str(tmp_path / "run"))
    else:
      create_experiment(config)
  assert not os.path.exists(tmp_path / "run")


def test_a_population_too_big_for_memory_names_the_estimate_and_the_k_that_fits():
  exp = create_experiment(_config("train"))
  each = replica_bytes(exp)
  # MLP 40-32-32-10 (2,698 params): 6 float32 buffers + 1-byte masks per param, and the
  # activations of a 50-example batch (forward and gradient, float32).
  assert each >= 2_698 * (4 * 6 + 1)
  check_memory(exp, 4, available=4 * each)  # fits exactly
  with pytest.raises(ConfigError) as info:
    check_memory(exp, 8, available=int(5.5 * each))
  text = str(info.value)
  assert "a population of 8 replicas needs about" in text and "use at most 5 seeds" in text


def _sweep_cells(tmp_path, name, config, cells_per_program):
  config = config.copy_and_resolve_references()
  config.sweep.cells_per_program = cells_per_program
  runner = run_prune_sweep if config.mode == "prune_sweep" else run_sparse_sweep
  summary = runner(config, str(tmp_path / name))
  return {c["cell"]: c for c in summary["cells"]}


@pytest.mark.parametrize("mode", ["prune_sweep", "sparse_sweep"])
def test_a_sweep_trains_equal_shape_cells_in_one_program_as_alone(tmp_path, capsys, mode):
  config = _config(mode)
  config.sweep.seeds = (0, 1)
  config.train.duration = "20it"
  if mode == "prune_sweep":  # densities x seeds of one method: four cells, one program
    config.sweep.methods, config.sweep.densities = ("snip",), (0.5, 0.2)
    expected = ["snip_d0.5_none_s0", "snip_d0.5_none_s1", "snip_d0.2_none_s0",
                "snip_d0.2_none_s1"]
  else:  # seeds of one method and density: RigL's mask updates run batched
    config.sweep.methods, config.sweep.densities = ("rigl",), (0.2,)
    expected = ["rigl_d0.2_s0", "rigl_d0.2_s1"]
  together = _sweep_cells(tmp_path, "together", config, cells_per_program=4)
  assert f"{len(expected)} cells in one program: {', '.join(expected)}" in capsys.readouterr().out
  alone = _sweep_cells(tmp_path, "alone", config, cells_per_program=1)
  assert "cells in one program" not in capsys.readouterr().out
  assert list(together) == list(alone) == expected
  for name in expected:
    mine, theirs = together[name], alone[name]
    assert mine["final_test_accuracy"] == theirs["final_test_accuracy"]
    assert mine["density"] == theirs["density"]
    if mode == "prune_sweep":
      assert _masks(tmp_path / "together" / "cells" / name / "masks.npz").keys() == \
          _masks(tmp_path / "alone" / "cells" / name / "masks.npz").keys()
      for key, mask in _masks(tmp_path / "together" / "cells" / name / "masks.npz").items():
        np.testing.assert_array_equal(mask, _masks(tmp_path / "alone" / "cells" / name /
                                                   "masks.npz")[key])
    else:
      assert mine["mask_updates"] == theirs["mask_updates"]
    if mode == "prune_sweep":  # (a sparse_train state's shape depends on the method)
      for a, b in zip(_final_params(tmp_path / "together" / "cells" / name / "train", config),
                      _final_params(tmp_path / "alone" / "cells" / name / "train", config)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=PARAM_ATOL, rtol=0)


def test_cells_per_program_must_be_a_positive_integer(tmp_path):
  config = _config("prune_sweep")
  config.sweep.cells_per_program = 0
  with pytest.raises(ConfigError, match="sweep.cells_per_program must be a positive integer"):
    run_prune_sweep(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
