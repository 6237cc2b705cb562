"""Invariants of the sample-quality metrics: mode coverage on the toy sets, FID, KID, the class
histogram and the inception score."""

import math

import numpy as np
import pytest
import scipy.linalg

from ppgen.data import load_dataset, sample_toy
from ppgen.data.toy import toy_modes
from ppgen.errors import ConfigError, DataError, PPGenError
from ppgen.sample_quality import (
    PACGAN_MIN_COUNT,
    class_histogram_stats,
    frechet_distance,
    high_quality_share,
    inception_score,
    kernel_inception_distance,
    mode_metrics,
    modes_covered,
)

TOYS = ["ring8", "grid25"]
# P(||e|| <= 3 std) for an isotropic 2-D Gaussian: the chi(2) CDF at 3, 1 - exp(-9 / 2).
HQ_2D = 1 - math.exp(-4.5)


def assert_one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value) and str(err.value)


def mixture(centers: np.ndarray, std: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return centers[rng.integers(len(centers), size=n)] + std * rng.standard_normal((n, 2))


# toy sets ------------------------------------------------------------------------------------


def test_toy_modes_are_the_papers():
    ring, ring_std = toy_modes("ring8")
    assert ring.shape == (8, 2) and ring_std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0)
    angles = np.sort(np.mod(np.arctan2(ring[:, 1], ring[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(angles), np.pi / 4)
    grid, grid_std = toy_modes("grid25")
    assert grid.shape == (25, 2) and grid_std == 0.05
    expected = {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert {tuple(row) for row in grid.astype(int)} == expected
    np.testing.assert_array_equal(grid, np.round(grid))


@pytest.mark.parametrize("name", ["moons", "8gaussians", "nope"])
def test_toy_modes_refuses_other_sets(name):
    with pytest.raises(ConfigError, match="ring8, grid25") as err:
        toy_modes(name)
    assert_one_line(err)


@pytest.mark.parametrize("name", TOYS)
def test_toy_sets_are_registered_datasets(name):
    test = load_dataset(name, "test")
    assert test.x.shape == (10_000, 2) and test.x.dtype == np.float32
    centers, std = toy_modes(name)
    counts = np.bincount(
        np.linalg.norm(test.x[:, None] - centers[None], axis=-1).argmin(1), minlength=len(centers)
    )
    # Equal mixture: each count is Binomial(10,000, 1/K); 6 binomial sds is a loose bound.
    p = 1 / len(centers)
    assert np.abs(counts - 10_000 * p).max() < 6 * math.sqrt(10_000 * p * (1 - p))


# mode coverage -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOYS)
def test_true_samples_cover_every_mode_with_chi2_quality(name):
    n = 20_000
    x = sample_toy(name, n, seed=1)
    centers, std = toy_modes(name)
    assert modes_covered(x, centers, std) == len(centers)
    # The share is a binomial mean around 1 - exp(-4.5); 5 standard errors.
    share = high_quality_share(x, centers, std)
    assert abs(share - HQ_2D) < 5 * math.sqrt(HQ_2D * (1 - HQ_2D) / n)
    metrics = mode_metrics(x, name)
    assert metrics == {"modes": len(centers), "num_modes": len(centers), "hq_share": share}


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("keep", [1, 3])
def test_samples_on_some_modes_cover_only_those(name, keep):
    centers, std = toy_modes(name)
    x = mixture(centers[:keep], std, 2_500, seed=0)
    assert modes_covered(x, centers, std) == keep
    assert mode_metrics(x, name)["modes"] == keep


def test_min_count_is_the_coverage_threshold():
    centers, std = toy_modes("ring8")
    # 19 and 20 points exactly on two modes, 1,000 on a third.
    x = np.concatenate(
        [
            np.repeat(centers[:1], 19, 0),
            np.repeat(centers[1:2], 20, 0),
            np.repeat(centers[2:3], 1000, 0),
        ]
    )
    assert PACGAN_MIN_COUNT == 20
    assert modes_covered(x, centers, std) == 2
    assert modes_covered(x, centers, std, min_count=19) == 3
    assert modes_covered(x, centers, std, min_count=1001) == 0


def test_samples_between_modes_are_low_quality():
    centers, std = toy_modes("grid25")
    # Just outside and just inside the 3-std disc around a mode, in random directions.
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 1_000)
    unit = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    outside = centers[rng.integers(25, size=1_000)] + 3.01 * std * unit
    inside = centers[rng.integers(25, size=1_000)] + 2.99 * std * unit
    assert high_quality_share(outside, centers, std) == 0.0
    assert modes_covered(outside, centers, std, min_count=1) == 0
    assert high_quality_share(inside, centers, std) == 1.0


@pytest.mark.parametrize(
    ("samples", "std", "error"),
    [
        (np.zeros((5, 3)), 0.02, DataError),  # 3-D points against 2-D centres
        (np.zeros(5), 0.02, DataError),
        (np.full((5, 2), np.nan), 0.02, DataError),
        (np.zeros((0, 2)), 0.02, DataError),
        (np.zeros((5, 2)), 0.0, ConfigError),
        (np.zeros((5, 2)), -1.0, ConfigError),
    ],
)
def test_mode_coverage_errors_are_one_line(samples, std, error):
    centers, _ = toy_modes("ring8")
    with pytest.raises(error) as err:
        modes_covered(samples, centers, std)
    assert_one_line(err)


def test_mode_metrics_rejects_bad_min_count():
    with pytest.raises(ConfigError) as err:
        mode_metrics(np.zeros((5, 2)), "ring8", min_count=0)
    assert_one_line(err)


# Fréchet distance ----------------------------------------------------------------------------


def exact_moments(n: int, mean: np.ndarray, cov_sqrt: np.ndarray, seed: int) -> np.ndarray:
    """n points whose sample mean is ``mean`` and unbiased sample covariance is exactly
    ``cov_sqrt @ cov_sqrt.T``: standard normals whitened to their own sample moments."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T
    return z @ cov_sqrt.T + mean


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    a = exact_moments(400, mu1, np.diag(np.sqrt(s1)), seed=1)
    b = exact_moments(700, mu2, np.diag(np.sqrt(s2)), seed=2)
    exact = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    # float64 round-off of the whitening and the eigen-decompositions only.
    np.testing.assert_allclose(frechet_distance(a, b), exact, rtol=1e-9, atol=1e-9)


def test_frechet_distance_matches_the_sqrtm_formula_for_full_covariances():
    rng = np.random.default_rng(0)
    d = 10
    a = rng.normal(size=(500, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    b = rng.normal(size=(300, d)) @ rng.normal(size=(d, d))
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real  # pytorch-fid's formula
    reference = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean)
    np.testing.assert_allclose(frechet_distance(a, b), reference, rtol=1e-8)
    np.testing.assert_allclose(frechet_distance(b, a), reference, rtol=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 64)) ** 3  # heavy tails, ill-conditioned
    assert abs(frechet_distance(x, x)) < 1e-8 * np.trace(np.cov(x, rowvar=False))
    assert frechet_distance(x, x + 1.0) == pytest.approx(64.0, rel=1e-8)  # shift only


@pytest.mark.parametrize(("n_a", "n_b"), [(8, 100), (100, 5)])
def test_frechet_distance_refuses_singular_covariances(n_a, n_b):
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="at least 9 samples") as err:
        frechet_distance(rng.normal(size=(n_a, 8)), rng.normal(size=(n_b, 8)))
    assert_one_line(err)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros((50, 3)), np.zeros((50, 4))),
        (np.zeros(50), np.zeros(50)),
        (np.full((50, 2), np.inf), np.zeros((50, 2))),
    ],
)
def test_frechet_distance_errors_are_one_line(a, b):
    with pytest.raises(DataError) as err:
        frechet_distance(a, b)
    assert_one_line(err)


# kernel inception distance -------------------------------------------------------------------


def test_kid_of_a_full_subset_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 4)), rng.normal(0.3, 1, size=(30, 4))

    def k(x, y):
        return (x @ y / 4 + 1) ** 3

    m = 30
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / m**2
    mean, std = kernel_inception_distance(a, b, subsets=3, subset_size=30, seed=5)
    np.testing.assert_allclose(mean, xx + yy - 2 * xy, rtol=1e-10)  # subsets are permutations
    assert std < 1e-12


def test_kid_is_unbiased_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(0)
    same = np.array(
        [
            kernel_inception_distance(
                rng.normal(size=(40, 5)), rng.normal(size=(40, 5)), subsets=1, subset_size=40
            )[0]
            for _ in range(300)
        ]
    )
    # Independent draws: the mean is within 4 standard errors of its expectation, 0.
    assert abs(same.mean()) < 4 * same.std() / math.sqrt(len(same))
    shifted, _ = kernel_inception_distance(
        rng.normal(size=(400, 5)), rng.normal(0.5, 1, size=(400, 5)), subsets=10, subset_size=200
    )
    assert shifted > 20 * same.std() / math.sqrt(len(same))


def test_kid_subsets_are_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(120, 3))
    first = kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=1)
    assert first == kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=1)
    assert first != kernel_inception_distance(a, b, subsets=5, subset_size=50, seed=2)
    assert first[1] > 0


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"subset_size": 101}, DataError),
        ({"subset_size": 1}, ConfigError),
        ({"subsets": 0}, ConfigError),
        ({"seed": -1}, ConfigError),
    ],
)
def test_kid_errors_are_one_line(kw, error):
    rng = np.random.default_rng(0)
    with pytest.raises(error) as err:
        kernel_inception_distance(rng.normal(size=(100, 3)), rng.normal(size=(200, 3)), **kw)
    assert_one_line(err)


# class histogram and inception score ---------------------------------------------------------


def test_class_histogram_of_uniform_and_collapsed_labels():
    uniform = np.repeat(np.arange(10), 7)
    assert class_histogram_stats(uniform, 10) == {
        "classes": 10,
        "num_classes": 10,
        "kl_to_uniform": 0.0,
    }
    collapsed = class_histogram_stats(np.full(50, 3), 10)
    assert collapsed["classes"] == 1
    assert collapsed["kl_to_uniform"] == pytest.approx(math.log(10))
    half = class_histogram_stats(np.array([0, 1] * 5), 4)  # two of four classes, evenly
    assert half["classes"] == 2 and half["kl_to_uniform"] == pytest.approx(math.log(2))


def test_class_histogram_takes_probabilities_as_their_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=500)
    assert class_histogram_stats(probs, 10) == class_histogram_stats(probs.argmax(1), 10)
    assert class_histogram_stats(probs, 10, min_count=10**6)["classes"] == 0


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (np.array([0, 10]), DataError),
        (np.array([-1, 2]), DataError),
        (np.array([0.5, 1.0]), DataError),
        (np.ones((3, 9)) / 9, DataError),  # 9 columns for 10 classes
        (np.ones((3, 10)), DataError),  # rows do not sum to 1
        (np.zeros(0, int), DataError),
    ],
)
def test_class_histogram_errors_are_one_line(x, error):
    with pytest.raises(error) as err:
        class_histogram_stats(x, 10)
    assert_one_line(err)


def test_inception_score_bounds_and_closed_forms():
    eye = np.eye(10)
    assert inception_score(np.tile(eye, (3, 1))) == pytest.approx(10.0)  # confident, balanced
    assert inception_score(np.tile(eye[:1], (30, 1))) == pytest.approx(1.0)  # one class
    assert inception_score(np.full((30, 10), 0.1)) == pytest.approx(1.0)  # no confidence
    # Two equally frequent classes predicted with confidence q: KL = log 2 - H(q).
    q = 0.8
    probs = np.array([[q, 1 - q], [1 - q, q]])
    entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert inception_score(probs) == pytest.approx(math.exp(math.log(2) - entropy))
    rng = np.random.default_rng(0)
    for alpha in (0.05, 1.0, 20.0):
        score = inception_score(rng.dirichlet(np.ones(10) * alpha, size=200))
        assert 1.0 <= score <= 10.0


def test_inception_score_refuses_non_probabilities():
    for bad in (np.ones((3, 4)), -np.eye(3), np.full((2, 2), np.nan), np.ones(4) / 4):
        with pytest.raises(PPGenError) as err:
            inception_score(bad)
        assert_one_line(err)
