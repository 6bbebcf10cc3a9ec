"""`prune.structure`, `imp.structure` and `sparse.structure` through the jobs: N:M groups and
whole tiles in the masks the runs train, and one-line errors for what cannot hold."""
import numpy as np
import pytest

import lotto
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.jobs.sparse_train import build_sparse_run, initial_state
from lotto.train.loop import load_state


def _built(config):
  """(experiment, settings, mask update, the seed's initial state) of a sparse_train config."""
  exp, settings, update = build_sparse_run(config)
  return exp, settings, update, initial_state(exp, settings, update)


def _groups(kernel, m):  # (in, out) -> survivors of every group of m consecutive inputs
  return kernel.reshape(kernel.shape[0] // m, m, kernel.shape[1]).sum(axis=1)


def test_imp_with_two_of_four_is_exact_and_monotone_across_levels(tiny_config, tmp_path):
  tiny_config.mode, tiny_config.imp.levels, tiny_config.imp.fraction = "imp", 2, 0.5
  tiny_config.imp.structure, tiny_config.imp.scope = "2:4", "layerwise"
  tiny_config.masks.exclude = "^output/"
  lotto.run_job(tiny_config, str(tmp_path))
  like = masks_lib.ones_like(create_experiment(tiny_config).init_state().params)
  level = {l: masks_lib.load(str(tmp_path / f"level_{l}" / "masks.npz"), like) for l in (1, 2)}
  for name, size in (("hidden_0", 40 * 32), ("hidden_1", 32 * 32)):
    one, two = np.asarray(level[1][name]["kernel"]), np.asarray(level[2][name]["kernel"])
    assert (_groups(one, 4) == 2).all()  # level 1: exactly 2 of every 4, density 0.5
    assert two.sum() == round(0.25 * size)  # level 2: exact count, unstructured on top
    assert _groups(two, 4).max() <= 2 and not (two & ~one).any()  # still 2:4, and monotone
  assert np.asarray(level[2]["output"]["kernel"]).all()


def test_prune_with_blocks_keeps_whole_tiles(tiny_config, tmp_path):
  tiny_config.mode, tiny_config.prune.method, tiny_config.prune.density = "prune", "snip", 0.25
  tiny_config.prune.structure, tiny_config.masks.exclude = "block:8x8", "^output/"
  results = lotto.run_job(tiny_config, str(tmp_path))
  exp = create_experiment(tiny_config)
  masks = masks_lib.load(str(tmp_path / "masks.npz"), masks_lib.ones_like(
      exp.init_state().params))
  tiles = 0
  for name, (rows, cols) in (("hidden_0", (40, 32)), ("hidden_1", (32, 32))):
    view = np.asarray(masks[name]["kernel"]).reshape(rows // 8, 8, cols // 8, 8)
    per_tile = view.sum(axis=(1, 3))
    assert set(np.unique(per_tile)) <= {0, 64}
    tiles += int((per_tile == 64).sum())
  assert tiles == round(0.25 * (40 * 32 + 32 * 32) / 64)
  assert results["density"] == pytest.approx(tiles * 64 / (40 * 32 + 32 * 32))


def test_gmp_two_of_four_then_unstructured(tiny_config, tmp_path):
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", "gmp"
  tiny_config.sparse.structure, tiny_config.sparse.density = "2:4", 0.25
  tiny_config.masks.exclude = "^output/"
  results = lotto.run_job(tiny_config, str(tmp_path))
  assert results["mask_updates"][0]["density"] == 0.5  # N:M from the first update on
  assert results["density"] == pytest.approx(0.25, abs=1 / 2304)
  _, _, _, like = _built(tiny_config)
  final = load_state(str(tmp_path), 40, like)
  for name in ("hidden_0", "hidden_1"):
    assert _groups(np.asarray(final.masks[name]["kernel"]), 4).max() <= 2


@pytest.mark.parametrize("section, fields, message", [
    ("prune", {"structure": "2:4", "density": 0.6}, "prune.structure 2:4 keeps at most 0.5"),
    ("prune", {"structure": "block:3x3"}, "does not split into 3x3 tiles"),
    ("imp", {"structure": "1:4"}, "level 1 asks for density 0.8: use imp.fraction >= 0.75"),
    ("sparse", {"structure": "2:4", "method": "rigl"}, "sparse.structure 2:4 is for gmp"),
    ("sparse", {"structure": "two:four"}, "unknown sparse.structure 'two:four'"),
])
def test_structures_that_cannot_hold_are_one_line_errors(tiny_config, tmp_path, section, fields,
                                                         message):
  tiny_config.mode = {"prune": "prune", "imp": "imp", "sparse": "sparse_train"}[section]
  for key, value in fields.items():
    tiny_config[section][key] = value
  with pytest.raises(ConfigError) as error:
    lotto.run_job(tiny_config, str(tmp_path / "run"))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()
