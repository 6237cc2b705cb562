"""Backend-free metrics."""

import numpy as np
import pytest

from ppgen.metrics import active_units


def test_active_units_follow_the_variance_of_the_posterior_means():
    rng = np.random.default_rng(0)
    n = 5000
    means = np.stack(
        [
            rng.normal(0, 1.0, n),  # varies with x: active
            rng.normal(0, 0.05, n),  # variance 0.0025 < 0.01: inactive
            np.full(n, 3.0),  # constant, whatever its value: inactive
            rng.normal(0, 0.2, n),  # variance 0.04 > 0.01: active
        ],
        axis=1,
    )
    np.testing.assert_array_equal(active_units(means), [True, False, False, True])
    # A shift of every mean changes nothing; the threshold is a variance.
    np.testing.assert_array_equal(active_units(means + 7.0), active_units(means))
    np.testing.assert_array_equal(active_units(means, threshold=0.001), [True, True, False, True])
    np.testing.assert_array_equal(active_units(means, threshold=0.1), [True, False, False, False])


@pytest.mark.parametrize(
    "means, message",
    [(np.zeros(5), "shape"), (np.zeros((1, 3)), "N >= 2"), (np.full((4, 2), np.nan), "NaN")],
)
def test_active_units_refuses_bad_input(means, message):
    with pytest.raises(ValueError, match=message):
        active_units(means)
