"""A run's identity: which config fields make two runs the same run, and where it is kept.

Every rule that decides whether a workdir holds *this* run lives here:

- the files that hold the identity (`CONFIG_FILE`, `RUN_ID_FILE`: the config
  and its hash, so the identity survives the loss of either) and the files
  that mark a directory as holding a run's files at all (`RUN_FILES`);
- cosmetic fields (`COSMETIC`), which may differ on resume and do not enter
  the hash;
- renamed values (`RENAMED`), compared in their new spelling and hashed in
  the old one, so a rename changes no run's identity;
- neutral fields (`NEUTRAL_FIELDS`): fields added after hashes were published
  that, at their neutral value, leave a run's hash as it was;
- legacy fields (`LEGACY_FIELDS`): fields added after runs were made, with the
  value that reproduces what those runs did, so a workdir whose config.json
  lacks one resumes as if it held that value. These are history: they are
  written out, not read from today's defaults.

`runtime.runs` applies the rules (`check_workdir`, `prepare_workdir`, ...).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
RUN_ID_FILE = "run_id.json"  # the config hash again: the run's identity survives config.json
# What marks a directory as holding a lotto run's files.
RUN_FILES = (RESULTS_FILE, "checkpoints", "level_0", "cells", "dense", "train", "masks.npz")

# Fields that do not change what a run computes: they may differ on resume.
# on_nan only decides whether a diverging run stops: a stopped run may be resumed
# with on_nan=continue. distributed says how the processes were launched, not what
# they compute (the global batch is the same); (None, key) is a top-level field.
# data.pipeline and data.resident_limit_mb say how the examples reach the steps (on the
# device, or streamed from the host in the same order), not which: a run may be resumed
# with the other pipeline.
COSMETIC = (("train", "verbose"), ("train", "tensorboard"), ("train", "on_nan"),
            (None, "distributed"), ("data", "pipeline"), ("data", "resident_limit_mb"))

# Values renamed since runs were made: (section, key) -> {old spelling: new spelling}.
# train.loop "auto" chose "scan" on every backend before it was dropped.
RENAMED = {("train", "loop"): {"auto": "scan"}}

# The oneshot section (mode = "oneshot"), added whole after the hashes were published.
ONESHOT_DEFAULTS: dict[str, Any] = {
    "from_workdir": "", "method": "sparsegpt", "density": 0.5, "structure": "unstructured",
    "calibration_examples": 128, "calibration_seed": 0, "calibration_seeds": [], "damp": 0.01,
    "block": 128, "per_output": False, "finetune": ""}

# (section, key) -> the value a run made before the field existed behaved as;
# (None, key) is a top-level field.
LEGACY_FIELDS: dict[tuple[str | None, str], Any] = {
    (None, "seeds"): [],
    ("sweep", "cells_per_program"): 1,
    ("prune", "grasp_params"): "all",      # GraSP differentiated every param before
    ("prune", "count_rule"): "round",
    ("prune", "synflow_abs_batch_stats"): False,
    ("prune", "obd_probes"): 10,
    ("prune", "structure"): "unstructured",
    ("imp", "structure"): "unstructured",
    ("imp", "open_lth_compat"): False,
    ("topology", "name"): "none",          # the section did not exist: no topology
    ("topology", "radices"): [],
    ("topology", "blocks"): [],
    ("topology", "degree"): 0,
    ("topology", "degrees"): [],
    ("topology", "control"): "none",
    # The sparse and dsd sections, added whole with sparse_train, at their defaults then.
    ("sparse", "begin"): "",
    ("sparse", "compression"): 0.0,
    ("sparse", "criterion"): "magnitude",
    ("sparse", "density"): 0.1,
    ("sparse", "distribution"): "auto",
    ("sparse", "drop_fraction"): 0.3,
    ("sparse", "drop_schedule"): "cosine",
    ("sparse", "end"): "",
    ("sparse", "grow_init"): "zeros",
    ("sparse", "method"): "rigl",
    ("sparse", "obd_probes"): 10,
    ("sparse", "scope"): "layerwise",
    ("sparse", "stop"): "",
    ("sparse", "structure"): "unstructured",
    ("sparse", "threshold"): 0.0,
    ("sparse", "update_every"): "100it",
    ("dsd", "final_lr_scale"): 0.1,
    ("dsd", "phases"): [],
    ("train", "precision"): "float32",
    ("data", "per_device_batch_size"): 0,
    **{("oneshot", key): value for key, value in ONESHOT_DEFAULTS.items()},
    ("model", "layers"): 0,
    ("model", "heads"): 0,
    ("model", "width"): 0,
    ("model", "context"): 0,
    ("model", "patch"): 0,
    ("data", "image_size"): 0,
    ("sparse", "execution"): "masked",
    ("sparse", "ablation_threshold"): 0.0,
}


# Fields added after run hashes were first published (the main job's b5e43a2d2f7a), with
# their neutral value: at that value a field leaves the hash as it was, so the runs of
# every config that does not use it keep their names; any other value enters the hash.
NEUTRAL_FIELDS: dict[tuple[str | None, str], Any] = {
    ("train", "precision"): "float32",
    ("data", "per_device_batch_size"): 0,
    **{("oneshot", key): value for key, value in ONESHOT_DEFAULTS.items()},
    ("model", "layers"): 0,
    ("model", "heads"): 0,
    ("model", "width"): 0,
    ("model", "context"): 0,
    ("model", "patch"): 0,
    ("data", "image_size"): 0,
    ("sparse", "execution"): "masked",
    ("sparse", "ablation_threshold"): 0.0,
}


def comparable(config: dict, spelling: str = "new") -> dict:
  """`config` without its cosmetic fields, renamed values in the "new" or "old" spelling."""
  config = json.loads(json.dumps(config))
  for section, key in COSMETIC:
    (config if section is None else config.get(section, {})).pop(key, None)
  for (section, key), renamed in RENAMED.items():
    fields = config if section is None else config.get(section, {})
    if spelling == "old":
      renamed = {new: old for old, new in renamed.items()}
    value = fields.get(key) if isinstance(fields, dict) else None
    if isinstance(value, str) and value in renamed:
      fields[key] = renamed[value]
  return config


def with_legacy(saved: dict, current: dict) -> dict:
  """`saved` with the fields `current` has that did not exist when `saved` was written,
  set to their old meaning (`LEGACY_FIELDS`)."""
  saved = json.loads(json.dumps(saved))
  for (section, key), value in LEGACY_FIELDS.items():
    now = current if section is None else current.get(section)
    if not isinstance(now, dict) or key not in now:
      continue  # not a field of the config compared with
    if section is None:  # a top-level field
      saved.setdefault(key, value)
      continue
    fields = saved.setdefault(section, {})  # a whole section may be newer than the file
    if isinstance(fields, dict) and key not in fields:
      fields[key] = value
  return saved


def config_hash(run_config: dict) -> str:
  """A short hash of the run's config as JSON data (ignoring cosmetic fields; renamed
  values in the spelling runs were first hashed with)."""
  hashed = comparable(run_config, spelling="old")
  emptied = set()
  for (section, key), neutral in NEUTRAL_FIELDS.items():
    fields = hashed if section is None else hashed.get(section, {})
    if isinstance(fields, dict) and key in fields and fields[key] == neutral:
      del fields[key]
      if section is not None and not fields:
        emptied.add(section)
  for section in emptied:  # a section added whole, all at its neutral values
    del hashed[section]
  text = json.dumps(hashed, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]
