"""Sparse-training methods are registered objects: a new method is one entry.

The entry below is the whole of a new method (RigL's drop and grow on a
uniform start, updating only from step 10); nothing else in lotto names it,
yet the parser, the job, `--help` and the report all take it.
"""
import lotto
from lotto.dynamic.methods import SPARSE_METHODS, SparseMethod, drop_and_grow_builder
from lotto.jobs import help_text
from lotto.reports.sparse_train import accuracy_table, density_schedule


def test_a_new_method_is_one_registry_entry(tiny_config, tmp_path, monkeypatch):
  entry = SparseMethod(name="late_rigl", summary="RigL from step 10 on a uniform start",
                       starts_dense=False, default_distribution="uniform",
                       build=drop_and_grow_builder("gradient"), periodic=True,
                       check_schedule=SPARSE_METHODS.get("rigl").check_schedule)
  monkeypatch.setitem(SPARSE_METHODS._entries, "late_rigl", entry)  # pylint: disable=protected-access
  tiny_config.mode, tiny_config.sparse.method = "sparse_train", "late_rigl"
  tiny_config.sparse.update_every, tiny_config.sparse.begin = "5it", "10it"
  tiny_config.sparse.density = 0.25
  results = lotto.run_sparse_train(tiny_config, str(tmp_path))
  assert results["method"] == "late_rigl"
  # Updates every 5 steps from step 10 until the stop at 75 % of 40 steps.
  assert [u["step"] for u in results["mask_updates"]] == [10, 15, 20, 25]
  # Its default distribution (uniform): every layer at 25 % (round(0.25 * n) weights).
  assert results["layer_densities"] == {"hidden_0/kernel": 320 / 1280,
                                        "hidden_1/kernel": 256 / 1024, "output/kernel": 80 / 320}
  assert ("sparse_train sparsity during training: static, gmp, dsd, set, rigl, srigl, "
          "late_rigl") in help_text()
  assert "\nlate_rigl " in accuracy_table([{**results, "seed": 0}])
  assert density_schedule(results)[1][0] == 0.25  # the report knows it does not start dense
