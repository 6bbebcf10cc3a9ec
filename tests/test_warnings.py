"""The suite's warning filters (pytest.ini): a DeprecationWarning or FutureWarning from jax,
flax, optax or orbax fails the suite, wherever the library attributes it: to its caller
(lotto's code, a test) or to itself. Other packages' warnings stay warnings."""
import warnings

import pytest


def test_a_deprecated_jax_api_used_by_a_test_is_an_error():
  # jax 0.10 deprecates `jax.experimental.shard_map.shard_map` on attribute access,
  # attributing the warning to the module that reads it (stacklevel 2): this test.
  from jax.experimental import shard_map as deprecated  # pylint: disable=import-outside-toplevel
  with pytest.raises(DeprecationWarning, match="jax.experimental.shard_map is deprecated"):
    getattr(deprecated, "shard_map")


@pytest.mark.parametrize("module", ["lotto.core.masks", "tests.core.test_masks", "jax",
                                    "jax._src.numpy", "jaxlib.xla_client", "flax.linen",
                                    "optax._src.alias", "orbax.checkpoint"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_a_deprecation_attributed_to_lotto_the_tests_or_the_four_libraries_is_an_error(
    module, category):
  with pytest.raises(category, match="old api"):
    warnings.warn_explicit("old api", category, "probe.py", 1, module=module)


@pytest.mark.parametrize("module", ["jaxtyping", "flaxen", "tensorflow_datasets.core",
                                    "numpy"])
def test_other_packages_deprecations_stay_warnings(module):
  with warnings.catch_warnings(record=True) as caught:  # keeps the suite's filters
    warnings.warn_explicit("old api", DeprecationWarning, "probe.py", 1, module=module)
  assert [str(w.message) for w in caught] == ["old api"]
