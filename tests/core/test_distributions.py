"""Layer distributions: uniform and ERK."""
import math

import pytest

from lotto.core import distributions
from lotto.core.errors import ConfigError


def test_erk_densities_of_a_written_out_conv_and_dense_case():
  # ERK: density_l = scale * sum(shape_l) / prod(shape_l), with the conv kernel's spatial dims
  # in both sums; layers above 1 are made dense and the scale is re-solved over the rest.
  shapes = {"conv": (3, 3, 4, 8), "hidden": (16, 8), "output": (8, 2)}
  # sizes 288, 128, 16 (432 in all); raw densities 18/288, 24/128, 10/16.
  # First solve, d = 0.25: scale = 0.25 * 432 / (18 + 24 + 10) = 108 / 52, and the output
  # layer's 108/52 * 10/16 = 1.298 > 1: it is made dense (16 weights). Re-solved over the
  # rest: scale = (108 - 16) / (18 + 24) = 46/21.
  dist = distributions.layer_distribution("erk", 0.25, shapes)
  expected = {"conv": 46 / 21 * 18 / 288, "hidden": 46 / 21 * 24 / 128, "output": 1.0}
  assert expected == pytest.approx({"conv": 23 / 168, "hidden": 23 / 56, "output": 1.0})
  assert dist == pytest.approx(expected, rel=1e-12)
  # Kept weights: 288 * 23/168 + 128 * 23/56 + 16 = 276/7 + 368/7 + 16 = 108 = 0.25 * 432.
  assert sum(dist[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(108, rel=1e-12)
  # Other rules that hit the target under the same cap give other densities (conv, hidden,
  # output): 1/prod 0.160, 0.359, 1 (46 weights each in conv and hidden); 1/sqrt(prod) 0.197,
  # 0.296, 0.836; max(shape)/prod 0.106, 0.479, 1.


def test_erk_distribution_hits_target_and_caps_at_one():
  shapes = {"a": (784, 300), "b": (300, 100), "c": (100, 10)}
  dist = distributions.layer_distribution("erk", 0.1, shapes)
  total = sum(math.prod(s) for s in shapes.values())
  assert sum(dist[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.1 * total)
  assert dist["c"] == 1.0 and dist["a"] < dist["b"] < 1.0
  assert distributions.layer_distribution("uniform", 0.3, shapes) == {n: 0.3 for n in shapes}
  with pytest.raises(ConfigError, match="none, uniform, erk"):
    distributions.layer_distribution("snake", 0.3, shapes)
