"""Run files: atomic JSON, the config check (legacy fields and renamed values), the rule
that only process 0 writes or prints, and the train loops."""
import collections

import jax
import jax.numpy as jnp
import pytest

from lotto.core.errors import ConfigError
from lotto.jobs import defaults
from lotto.jobs.experiment import create_experiment
from lotto.runtime import devices, identity, runs


def test_workdir_of_another_config_is_refused_and_the_same_one_resumes(tmp_path):
  config = {"seed": 0, "train": {"duration": "40it", "verbose": True}}
  runs.prepare_workdir(config, str(tmp_path))
  assert runs.read_json(str(tmp_path / runs.CONFIG_FILE)) == config
  runs.prepare_workdir({**config, "train": {"duration": "40it", "verbose": False}},
                       str(tmp_path))  # cosmetic fields may differ
  with pytest.raises(ConfigError, match=r"different config \(seed: saved 0, now 1\)"):
    runs.prepare_workdir({**config, "seed": 1}, str(tmp_path))
  assert runs.config_hash(config) == runs.config_hash(
      {"seed": 0, "train": {"duration": "40it", "verbose": False}})
  assert runs.config_hash(config) != runs.config_hash({**config, "seed": 1})


class _Unreadable:
  """A mask that fails when read, as one spread over other processes would."""

  def __array__(self, *args, **kwargs):
    raise AssertionError("a non-main process read the masks")


def test_only_the_main_process_writes_or_prints(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert not devices.is_main_process()
  runs.prepare_workdir({"seed": 0}, str(tmp_path / "run"))
  runs.write_json(str(tmp_path / "a.json"), {"x": 1})
  runs.write_text(str(tmp_path / "b.txt"), "text")
  runs.write_masks(str(tmp_path / "masks.npz"), {"w": jnp.ones(3, bool)})
  runs.write_masks(str(tmp_path / "masks.npz"), {"w": _Unreadable()})  # not even read
  runs.write_layer_report(str(tmp_path), {"w": jnp.ones((2, 2), bool)}, {"w": True})
  devices.note("progress")
  assert list(tmp_path.iterdir()) == [] and capsys.readouterr().out == ""
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  runs.write_json(str(tmp_path / "a.json"), {"x": 1})
  devices.note("progress")
  assert runs.read_json(str(tmp_path / "a.json")) == {"x": 1}
  assert capsys.readouterr().out == "progress\n"


def test_train_loops_and_a_bad_loop_is_a_one_line_error():
  config = defaults.get_base_config()
  assert config.train.loop == "scan"
  config.train.loop = "auto"
  with pytest.raises(ConfigError, match=r"^unknown train.loop 'auto'; valid choices: scan, "
                                        r"step$"):
    create_experiment(config)


def test_a_renamed_value_changes_no_run_identity(tmp_path):
  # A run made when train.loop was "auto" (which chose "scan"): it resumes with "scan", under
  # the same hash, and is still refused to another loop (named in the new spelling).
  old = {"seed": 0, "train": {"duration": "40it", "loop": "auto"}}
  now = {"seed": 0, "train": {"duration": "40it", "loop": "scan"}}
  step = {"seed": 0, "train": {"duration": "40it", "loop": "step"}}
  runs.prepare_workdir(old, str(tmp_path / "run"))
  runs.check_workdir(now, str(tmp_path / "run"))
  assert runs.config_hash(now) == runs.config_hash(old) != runs.config_hash(step)
  with pytest.raises(ConfigError, match=r"train.loop: saved 'scan', now 'step'"):
    runs.check_workdir(step, str(tmp_path / "run"))
  (tmp_path / "run" / runs.CONFIG_FILE).unlink()  # the identity left in run_id.json
  runs.check_workdir(now, str(tmp_path / "run"))
  with pytest.raises(ConfigError, match="holds a run of another config"):
    runs.check_workdir(step, str(tmp_path / "run"))


def test_fields_added_since_a_run_was_made_take_their_old_meaning():
  saved = {"seed": 0, "prune": {"method": "grasp", "count_rule": "floor"}}
  filled = identity.with_legacy(saved, defaults.get_base_config().to_dict())
  assert filled["prune"]["grasp_params"] == "all"  # GraSP differentiated every param then
  assert filled["prune"]["count_rule"] == "floor"  # a field the run has is kept
  assert filled["seeds"] == [] and filled["topology"]["name"] == "none"
  assert filled["sparse"]["method"] == "rigl" and filled["dsd"]["phases"] == []
  assert saved == {"seed": 0, "prune": {"method": "grasp", "count_rule": "floor"}}  # a copy
  assert identity.with_legacy(saved, {"seed": 1}) == saved  # only fields compared with
  # Cosmetic fields never enter the identity; a renamed value is hashed in its old spelling.
  base = {"seed": 0, "train": {"loop": "scan", "verbose": 2, "on_nan": "continue"}}
  assert identity.config_hash(base) == identity.config_hash(
      {"seed": 0, "train": {"loop": "auto", "verbose": 0, "on_nan": "stop"}})
  assert identity.config_hash(base) != identity.config_hash({**base, "seed": 1})


def test_free_space_reads_in_megabytes_below_one_gigabyte(tmp_path, monkeypatch):
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: usage(10**10, 0, 420_000))
  assert runs.free_space(str(tmp_path / "not" / "yet")) == f"0.4 MB free on {tmp_path}"
  monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: usage(10**10, 0, 2_345_000_000))
  assert runs.free_space(str(tmp_path)) == f"2.3 GB free on {tmp_path}"
