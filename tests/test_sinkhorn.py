"""The debiased Sinkhorn divergence (Feydy et al. 2019) on both backends: ott-jax on NumPyro's
side, POT on Pyro's. Its invariants (0 for identical samples, symmetric, >= 0), its value
against POT's plain Sinkhorn composed here into ``S_eps``, the two backends' agreement in
value and gradient, and the one-line errors.

The samples are small-scale 2-D Gaussians: POT's plain alternating Sinkhorn converges slowly
on the symmetric terms ``OT_eps(a, a)`` when ``epsilon`` is small against the squared spread
of the points (ott uses averaged symmetric updates there), and the JAX calls are compiled
once per test (each compilation of ott's solver takes about a second).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
import torch

from ppgen.errors import ConfigError, ConvergenceWarning, DataError
from ppgen.inference.numpyro import sinkhorn as sinkhorn_jax
from ppgen.inference.pyro import sinkhorn as sinkhorn_torch

# Converged far below the parity bar: the marginal violation under 1e-8 puts the values
# ~1e-8 (relative) from the fixed point.
TIGHT = {"threshold": 1e-8, "max_iterations": 100_000}
EPSILONS = (0.1, 1.0, 10.0)


def samples(n: int = 60, m: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x ~ N(0, 0.3^2 I)`` ``(n, 2)`` and ``y ~ N((0.5, -0.3), 0.4^2 I)`` ``(m, 2)``."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.normal(size=(n, 2))
    y = 0.4 * rng.normal(size=(m, 2)) + np.array([0.5, -0.3])
    return x, y


def divergences(backend: str, calls: list[tuple[np.ndarray, np.ndarray, dict]]) -> np.ndarray:
    """``S_eps(x, y)`` for each ``(x, y, options)`` of ``calls``, as float64 numbers; on
    NumPyro, all of them in one compiled function."""
    if backend == "numpyro":

        @jax.jit
        def run(arrays):
            return jnp.stack(
                [
                    sinkhorn_jax.sinkhorn_divergence(x, y, **options)
                    for (x, y), (_, _, options) in zip(arrays, calls, strict=True)
                ]
            )

        return np.asarray(run([(jnp.asarray(x), jnp.asarray(y)) for x, y, _ in calls]))
    return np.array(
        [
            sinkhorn_torch.sinkhorn_divergence(torch.as_tensor(x), torch.as_tensor(y), **o).item()
            for x, y, o in calls
        ]
    )


def test_same_public_api():
    assert sinkhorn_jax.__all__ == sinkhorn_torch.__all__
    assert sinkhorn_jax.SUPPORTED_P == sinkhorn_torch.SUPPORTED_P == (1, 2)
    for name in ("sinkhorn_divergence", "check_p"):
        jax_params = inspect.signature(getattr(sinkhorn_jax, name)).parameters
        torch_params = inspect.signature(getattr(sinkhorn_torch, name)).parameters
        assert [(p.name, p.kind, p.default) for p in jax_params.values()] == [
            (p.name, p.kind, p.default) for p in torch_params.values()
        ]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_invariants(backend, float64):
    """0 for identical samples, symmetric, >= 0 (also for two nearly identical sets)."""
    x, y = samples()
    z = x + 0.01 * np.random.default_rng(1).normal(size=x.shape)  # close to x: S is small
    pairs = ((x, x), (x, y), (y, x), (x, z))
    calls = [(u, v, {"epsilon": 0.5, "p": p, **TIGHT}) for p in (1, 2) for u, v in pairs]
    s = divergences(backend, calls).reshape(2, 4)  # p x (xx, xy, yx, xz)
    scale = np.mean(np.linalg.norm(x[:, None] - y[None], axis=-1))  # ~ the cost's scale
    # identical samples: the xy and xx problems are the same, solved to 1e-8
    np.testing.assert_allclose(s[:, 0], 0.0, atol=1e-6 * scale)
    np.testing.assert_allclose(s[:, 1], s[:, 2], rtol=1e-7)  # symmetric
    assert np.all(s[:, 1:] > 0)
    assert np.all(s[:, 3] < 0.1 * s[:, 1])  # nearly identical sets are nearly 0 apart


def entropic_ot_numpy(c: np.ndarray, epsilon: float) -> float:
    """``OT_eps`` between uniform marginals from POT's plain log-domain Sinkhorn (numpy
    backend): ``<P, C> + epsilon KL(P || a b^T)`` of its plan."""
    n, m = c.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    plan = ot.sinkhorn(a, b, c, epsilon, method="sinkhorn_log", stopThr=1e-13, numItermax=10**6)
    log_ratio = np.log(np.where(plan > 0, plan / np.outer(a, b), 1.0))  # 0 log 0 = 0
    return float(np.sum(plan * c) + epsilon * np.sum(plan * log_ratio))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_matches_pots_plain_sinkhorn(backend, float64):
    """On a small problem, ``S_eps`` is POT's plain Sinkhorn composed into the definition,
    with the cost matrix built by POT (``ot.dist``)."""
    x, y = samples(n=7, m=9, seed=2)
    options = [(p, eps) for p in (1, 2) for eps in (0.3, 3.0)]
    calls = [(x, y, {"epsilon": eps, "p": p, **TIGHT}) for p, eps in options]
    s = divergences(backend, calls)
    for value, (p, eps) in zip(s, options, strict=True):

        def ot_eps(u, v, p=p, eps=eps):
            return entropic_ot_numpy(ot.dist(u, v, metric="euclidean") ** p, eps)

        expected = ot_eps(x, y) - 0.5 * (ot_eps(x, x) + ot_eps(y, y))
        # both converged to ~1e-8 in the marginals; the entropic term is included
        np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_backends_agree_in_value_and_gradient(float64):
    """Same samples, float64: values agree to 1e-7 (the bar is 1e-5) and gradients with
    respect to ``x`` to 1e-6 of their largest entry, for p = 1, 2 and epsilon = 0.1, 1, 10.
    JAX's side is compiled and differentiated with ``jax.value_and_grad``."""
    x, y = samples()
    options = [(p, eps) for p in (1, 2) for eps in EPSILONS]

    @jax.jit
    def jax_values_and_grads(x, y):
        return [
            jax.value_and_grad(sinkhorn_jax.sinkhorn_divergence)(x, y, epsilon=eps, p=p, **TIGHT)
            for p, eps in options
        ]

    jax_out = jax_values_and_grads(jnp.asarray(x), jnp.asarray(y))
    for (value_jax, grad_jax), (p, eps) in zip(jax_out, options, strict=True):
        xt = torch.tensor(x, requires_grad=True)
        value = sinkhorn_torch.sinkhorn_divergence(xt, torch.tensor(y), epsilon=eps, p=p, **TIGHT)
        value.backward()
        assert value.dtype == torch.float64 and value_jax.dtype == jnp.float64
        np.testing.assert_allclose(float(value_jax), value.item(), rtol=1e-7)
        grad = xt.grad.numpy()
        np.testing.assert_allclose(np.asarray(grad_jax), grad, atol=1e-6 * np.abs(grad).max())


def test_default_options_in_float32():
    """The training-loss setting: float32, default threshold; the backends agree loosely
    (each stops at its own iterate) and keep the dtype; a float64 ``y`` is promoted on both."""
    x, y = (v.astype(np.float32) for v in samples(n=64, m=64))
    s_jax = jax.jit(lambda x, y: sinkhorn_jax.sinkhorn_divergence(x, y, epsilon=0.5))(x, y)
    s_torch = sinkhorn_torch.sinkhorn_divergence(torch.tensor(x), torch.tensor(y), epsilon=0.5)
    assert s_jax.dtype == jnp.float32 and s_torch.dtype == torch.float32
    np.testing.assert_allclose(float(s_jax), s_torch.item(), rtol=1e-3)
    mixed = sinkhorn_torch.sinkhorn_divergence(
        torch.tensor(x), torch.tensor(y, dtype=torch.float64), epsilon=0.5
    )
    assert mixed.dtype == torch.float64


@pytest.mark.parametrize(("backend", "epsilon"), [("pyro", 1e-3), ("numpyro", 2e-3)])
def test_an_unconverged_solve_warns_and_a_converged_one_does_not(backend, epsilon):
    """Stopped by ``max_iterations`` above its threshold, the divergence is approximate: a
    ConvergenceWarning says so, from compiled code too, never a silent wrong value. A
    converged solve warns nothing (the suite turns warnings into errors). Each call warns
    anew: how often it is shown is the caller's filters' choice."""
    x, y = (v.astype(np.float32) for v in samples(n=64, m=64))
    if backend == "numpyro":
        f = jax.jit(sinkhorn_jax.sinkhorn_divergence, static_argnames=("epsilon", "max_iterations"))
        x, y = jnp.asarray(x), jnp.asarray(y)
    else:
        f, x, y = sinkhorn_torch.sinkhorn_divergence, torch.tensor(x), torch.tensor(y)
    with pytest.warns(ConvergenceWarning, match=f"within 3 iterations at epsilon {epsilon:g}: "):
        float(f(x, y, epsilon=epsilon, max_iterations=3))  # float(): waits for the callback
    with pytest.warns(ConvergenceWarning):  # every call, under the caller's filters
        float(f(x, y, epsilon=epsilon, max_iterations=3))
    assert float(f(x, y, epsilon=0.5, max_iterations=1000)) > 0


BAD_OPTIONS = [
    ({"epsilon": 0.0}, "epsilon must be a finite number > 0"),
    ({"epsilon": -1.0}, "epsilon must be a finite number > 0"),
    ({"epsilon": float("nan")}, "epsilon must be a finite number > 0"),
    ({"epsilon": float("inf")}, "epsilon must be a finite number > 0"),
    ({"epsilon": "1"}, "epsilon must be a finite number > 0"),
    ({"epsilon": 1.0, "p": 3}, "p must be 1 or 2"),
    ({"epsilon": 1.0, "p": 2.0}, "p must be 1 or 2"),
    ({"epsilon": 1.0, "p": True}, "p must be 1 or 2"),
    ({"epsilon": 1.0, "threshold": -1e-3}, "threshold must be >= 0"),
    ({"epsilon": 1.0, "max_iterations": 0}, "max_iterations must be a positive integer"),
    ({"epsilon": 1.0, "max_iterations": 2**31}, "max_iterations must be at most 2147483647"),
    ({"epsilon": 1.0, "rho": 0.0}, "rho must be a number > 0"),
    ({"epsilon": 1.0, "rho": -1.0}, "rho must be a number > 0"),
    ({"epsilon": 1.0, "rho": float("nan")}, "rho must be a number > 0"),
    ({"epsilon": 1.0, "rho": "1"}, "rho must be a number > 0"),
]

BAD_SHAPES = [
    ((5,), (5, 2), "x must be a non-empty (points, features) array"),
    ((5, 2, 1), (5, 2), "x must be a non-empty (points, features) array"),
    ((0, 2), (5, 2), "x must be a non-empty (points, features) array"),
    ((5, 2), (0, 2), "y must be a non-empty (points, features) array"),
    ((5, 0), (5, 0), "x must be a non-empty (points, features) array"),
    ((5, 2), (4, 3), "x and y must have the same number of features, got 2 and 3"),
]


@pytest.mark.parametrize("module", [sinkhorn_torch, sinkhorn_jax], ids=["pyro", "numpyro"])
@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options(module, options, message):
    x = np.zeros((4, 2), np.float32)
    array = torch.as_tensor if module is sinkhorn_torch else jnp.asarray
    with pytest.raises(ConfigError, match=message) as error:
        module.sinkhorn_divergence(array(x), array(x), **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("module", [sinkhorn_torch, sinkhorn_jax], ids=["pyro", "numpyro"])
@pytest.mark.parametrize(("x_shape", "y_shape", "message"), BAD_SHAPES)
def test_bad_points(module, x_shape, y_shape, message):
    array = torch.zeros if module is sinkhorn_torch else jnp.zeros
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        module.sinkhorn_divergence(array(x_shape), array(y_shape), epsilon=1.0)
    assert "\n" not in str(error.value)


# -- unbalanced transport (Sejourne et al. 2019) -------------------------------------------


def unbalanced_ot_numpy(c: np.ndarray, epsilon: float, rho: float) -> float:
    """Unbalanced ``OT_eps`` between uniform measures of mass 1 from POT's plain scaling solver
    (``ot.unbalanced.sinkhorn_unbalanced``, numpy backend; well-conditioned problems only):
    ``<P, C> + epsilon KL(P || a b^T) + rho KL(P 1 || a) + rho KL(P^T 1 || b)`` of its plan,
    generalised KL."""
    n, m = c.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    plan = ot.unbalanced.sinkhorn_unbalanced(
        a, b, c, epsilon, rho, method="sinkhorn", stopThr=1e-14, numItermax=10**6
    )

    def kl(p, q):
        return float(np.sum(p * np.log(p / q) - p + q))

    return (
        float(np.sum(plan * c))
        + epsilon * kl(plan, np.outer(a, b))
        + rho * (kl(plan.sum(1), a) + kl(plan.sum(0), b))
    )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_unbalanced_matches_pots_plain_scaling_solver(backend, float64):
    """Unbalanced ``S_eps`` is POT's unbalanced Sinkhorn composed into Sejourne et al.'s
    definition (the entropy relative to ``a (x) b``, generalised KL on the marginals), on a
    problem where POT's scaling solver does not underflow. NumPyro's ott takes its entropy
    relative to the counting measure: without ppgen's shift of the cost it would solve
    another problem."""
    x, y = samples(n=7, m=9, seed=2)
    options = [(p, eps, rho) for p in (1, 2) for eps in (0.3, 3.0) for rho in (0.1, 1.0)]
    calls = [(x, y, {"epsilon": eps, "p": p, "rho": rho, **TIGHT}) for p, eps, rho in options]
    s = divergences(backend, calls)
    for value, (p, eps, rho) in zip(s, options, strict=True):

        def ot_eps(u, v, p=p, eps=eps, rho=rho):
            return unbalanced_ot_numpy(ot.dist(u, v, metric="euclidean") ** p, eps, rho)

        expected = ot_eps(x, y) - 0.5 * (ot_eps(x, x) + ot_eps(y, y))
        np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_unbalanced_backends_agree_in_value_and_gradient(float64):
    """Parity of the unbalanced divergence, float64: values to 1e-7, gradients to 1e-6 of
    their largest entry, p = 1, 2; the gradient also matches central finite differences."""
    x, y = samples()
    options = [(p, eps, rho) for p in (1, 2) for eps, rho in ((0.1, 1.0), (1.0, 0.5))]

    @jax.jit
    def jax_values_and_grads(x, y):
        return [
            jax.value_and_grad(sinkhorn_jax.sinkhorn_divergence)(
                x, y, epsilon=eps, p=p, rho=rho, **TIGHT
            )
            for p, eps, rho in options
        ]

    jax_out = jax_values_and_grads(jnp.asarray(x), jnp.asarray(y))
    for (value_jax, grad_jax), (p, eps, rho) in zip(jax_out, options, strict=True):
        xt = torch.tensor(x, requires_grad=True)
        kw = {"epsilon": eps, "p": p, "rho": rho, **TIGHT}
        value = sinkhorn_torch.sinkhorn_divergence(xt, torch.tensor(y), **kw)
        value.backward()
        np.testing.assert_allclose(float(value_jax), value.item(), rtol=1e-7)
        grad = xt.grad.numpy()
        np.testing.assert_allclose(np.asarray(grad_jax), grad, atol=1e-6 * np.abs(grad).max())
        i, h = 5, 1e-5  # one coordinate by central differences (the envelope gradient)
        shifted = [x.copy(), x.copy()]
        shifted[0][i, 0] += h
        shifted[1][i, 0] -= h
        plus, minus = (
            sinkhorn_torch.sinkhorn_divergence(torch.tensor(u), torch.tensor(y), **kw).item()
            for u in shifted
        )
        np.testing.assert_allclose(grad[i, 0], (plus - minus) / (2 * h), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_unbalanced_invariants_and_balanced_limit(backend, float64):
    """0 for identical samples, symmetric, > 0; as rho grows the value tends to the
    balanced one (the penalty becomes the constraint), and rho=inf is balanced exactly."""
    x, y = samples(n=20, m=25)
    base = {"epsilon": 0.5, **TIGHT}
    calls = [
        (x, x, {**base, "rho": 1.0}),
        (x, y, {**base, "rho": 1.0}),
        (y, x, {**base, "rho": 1.0}),
        (x, y, {**base, "rho": 100.0}),
        (x, y, {**base, "rho": float("inf")}),
        (x, y, base),
    ]
    s = divergences(backend, calls)
    np.testing.assert_allclose(s[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(s[1], s[2], rtol=1e-7)
    assert s[1] > 0
    assert s[1] < s[5]  # relaxing the marginals can only lower the cost of the xy transport
    assert abs(s[3] - s[5]) < 0.02 * s[5] and abs(s[3] - s[5]) < 0.1 * abs(s[1] - s[5])
    assert s[4] == s[5]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_unbalanced_transport_keeps_mass_on_its_modes(backend, float64):
    """Why rho exists: samples that sit exactly on the data's two modes, but with the counts
    split 60/40 against the data's 40/60. Balanced transport must carry a fifth of the mass
    across, so its gradient pulls the surplus mode's points towards the other mode (a
    distance of 4); with rho 1 (a reach of about 1) it barely moves them."""
    modes = np.array([[-2.0, 0.0], [2.0, 0.0]])
    x = np.repeat(modes, [60, 40], axis=0)  # the model's samples: too many on the left
    y = np.repeat(modes, [40, 60], axis=0)  # the data
    pulls = []
    for rho in (None, 1.0):
        kw = {"epsilon": 0.1, "rho": rho, **TIGHT}
        if backend == "numpyro":
            grad = np.asarray(jax.grad(sinkhorn_jax.sinkhorn_divergence)(x, y, **kw))
        else:
            xt = torch.tensor(x, requires_grad=True)
            sinkhorn_torch.sinkhorn_divergence(xt, torch.tensor(y), **kw).backward()
            grad = xt.grad.numpy()
        # gradient descent moves the left points by -grad: their mean pull to the right
        pulls.append(-grad[:60, 0].mean() * len(x))
    balanced, unbalanced = pulls
    assert balanced > 0.5  # every left point is pulled right (the surplus shared out)
    assert unbalanced < 0.2 * balanced


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_an_unconverged_unbalanced_solve_warns(backend):
    x, y = (v.astype(np.float32) for v in samples(n=64, m=64))
    if backend == "numpyro":
        f = jax.jit(
            sinkhorn_jax.sinkhorn_divergence,
            static_argnames=("epsilon", "rho", "max_iterations"),
        )
        x, y = jnp.asarray(x), jnp.asarray(y)
    else:
        f, x, y = sinkhorn_torch.sinkhorn_divergence, torch.tensor(x), torch.tensor(y)
    with pytest.warns(ConvergenceWarning, match="within 3 iterations at epsilon 0.001"):
        float(f(x, y, epsilon=1e-3, rho=10.0, max_iterations=3))
    assert float(f(x, y, epsilon=0.5, rho=1.0, max_iterations=1000)) > 0
