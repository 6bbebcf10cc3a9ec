"""Step schedules: Zhu & Gupta's cubic density, written out at chosen steps."""
import jax.numpy as jnp
import numpy as np

from lotto.core.schedules import cubic_density


def test_cubic_density_at_given_steps():
  steps = jnp.asarray([0, 3000, 4000, 6500, 9999, 10000, 12000])
  got = np.asarray(cubic_density(steps, 3000, 10000, 1.0, 0.04))
  # s_t = 0.96 + (0 - 0.96) (1 - (t - 3000) / 7000)^3; density = 1 - s_t.
  want = [1.0, 1.0, 0.04 + 0.96 * (6 / 7) ** 3, 0.04 + 0.96 * 0.5 ** 3,
          0.04 + 0.96 * (1 / 7000) ** 3, 0.04, 0.04]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_one_shot_is_a_step_at_begin():
  got = np.asarray(cubic_density(jnp.asarray([0, 499, 500, 900]), 500, 500, 0.8, 0.1))
  np.testing.assert_allclose(got, [0.8, 0.8, 0.1, 0.1], rtol=1e-6)
