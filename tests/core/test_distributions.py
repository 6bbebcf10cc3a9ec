"""Layer distributions: uniform and ERK."""
import math

import pytest

from lotto.core import distributions
from lotto.core.errors import ConfigError


def test_erk_distribution_hits_target_and_caps_at_one():
  shapes = {"a": (784, 300), "b": (300, 100), "c": (100, 10)}
  dist = distributions.layer_distribution("erk", 0.1, shapes)
  total = sum(math.prod(s) for s in shapes.values())
  assert sum(dist[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.1 * total)
  assert dist["c"] == 1.0 and dist["a"] < dist["b"] < 1.0
  assert distributions.layer_distribution("uniform", 0.3, shapes) == {n: 0.3 for n in shapes}
  with pytest.raises(ConfigError, match="none, uniform, erk"):
    distributions.layer_distribution("snake", 0.3, shapes)
