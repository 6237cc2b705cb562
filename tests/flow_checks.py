"""Invariants every flow transform must satisfy, checked the same way on both backends.

Each helper takes a transform of either backend (a ``torch.distributions.Transform`` or a
``numpyro.distributions.transforms.Transform``) and numpy inputs, and returns or compares
numpy arrays, so one test body covers Pyro and NumPyro:

- :func:`check_round_trip`: ``inverse(forward(x)) = x``;
- :func:`check_ladj`: ``log_abs_det_jacobian`` = ``log|det|`` of the autodiff Jacobian;
- :func:`check_change_of_variables`: the backend's ``TransformedDistribution.log_prob(y)``
  equals ``base.log_prob(inverse(y)) - log|det J|`` with the autodiff Jacobian;
- :func:`check_parity`: the same weights give the same forward, inverse and ladj;
- :func:`fuzz`: many extreme inputs, no NaN/Inf, round trip within a relative tolerance.

Weights: :func:`random_weights` draws replacements for a transform's ``get_weights()``
(the last layers start at zero, so a fresh flow is the identity and proves little).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as ndist
import pyro.distributions as pdist
import torch


def is_pyro(t) -> bool:
    """Whether ``t`` is a Pyro (torch) transform."""
    return isinstance(t, torch.distributions.Transform)


def event_ndim(t) -> int:
    """The number of event dimensions of ``t``'s domain (1 for vectors, 3 for images)."""
    return t.domain.event_dim


def as_backend(t, a):
    """``a`` (numpy, or None) as the backend's array in its default float dtype."""
    if a is None:
        return None
    if is_pyro(t):
        return torch.as_tensor(np.asarray(a), dtype=torch.get_default_dtype())
    return jnp.asarray(np.asarray(a), dtype=jnp.result_type(float))


def to_numpy(a) -> np.ndarray:
    """A tensor or array as numpy (detached)."""
    if torch.is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def random_weights(weights: Mapping[str, np.ndarray], seed: int, scale: float = 0.3) -> dict:
    """Normal draws of standard deviation ``scale`` with ``weights``' keys and shapes."""
    rng = np.random.default_rng(seed)
    return {k: scale * rng.standard_normal(np.shape(v)) for k, v in weights.items()}


def randomize(t, seed: int = 0, scale: float = 0.3):
    """``t`` holding :func:`random_weights` (Pyro in place; NumPyro a new transform)."""
    return t.set_weights(random_weights(t.get_weights(), seed, scale))


# NumPyro transforms are pytrees: jitted once per structure and shape, they run far faster
# than op by op (every primitive of an eager call compiles for its shape on first use).


@jax.jit
def _jax_forward(t, x):
    y = t(x)
    return y, t.log_abs_det_jacobian(x, y)


@jax.jit
def _jax_inverse(t, y):
    return t.inv(y)


def forward(t, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, ladj)`` for numpy ``x``: ``y = t(x)``, ``ladj = t.log_abs_det_jacobian(x, y)``."""
    xb = as_backend(t, x)
    if not is_pyro(t):
        return tuple(to_numpy(a) for a in _jax_forward(t, xb))
    y = t(xb)
    return to_numpy(y), to_numpy(t.log_abs_det_jacobian(xb, y))


def inverse(t, y: np.ndarray) -> np.ndarray:
    """``t.inv(y)`` as numpy."""
    if not is_pyro(t):
        return to_numpy(_jax_inverse(t, as_backend(t, y)))
    return to_numpy(t.inv(as_backend(t, y)))


def autodiff_ladj(t, x: np.ndarray) -> np.ndarray:
    """``log|det dy/dx|`` per example from the autodiff Jacobian of ``t``'s forward map.

    Returns:
        Shape ``x.shape[:-event_ndim]``.
    """
    k = event_ndim(t)
    batch, event = x.shape[: x.ndim - k], x.shape[x.ndim - k :]
    n = int(np.prod(event))
    flat = x.reshape(-1, *event)
    if is_pyro(t):
        xb = as_backend(t, flat).requires_grad_(True)
        y = t(xb).reshape(len(flat), n)
        # Examples are independent: the gradient of output i summed over the batch is
        # row i of every example's Jacobian.
        rows = [
            torch.autograd.grad(y[:, i].sum(), xb, retain_graph=True)[0].reshape(len(flat), n)
            for i in range(n)
        ]
        jac = torch.stack(rows, dim=1)  # (N, n_out, n_in)
        logdet = torch.linalg.slogdet(jac)[1]
    else:
        logdet = _jax_autodiff_ladj(t, as_backend(t, flat))
    return to_numpy(logdet).reshape(batch)


@jax.jit
def _jax_autodiff_ladj(t, flat):
    event = flat.shape[1:]
    n = int(np.prod(event))

    def single(v):
        return t(v.reshape(event)).reshape(n)

    jac = jax.vmap(jax.jacfwd(single))(flat.reshape(len(flat), n))
    return jnp.linalg.slogdet(jac)[1]


def standard_normal(t, event_shape: tuple[int, ...]):
    """A standard normal base distribution over ``event_shape`` on ``t``'s backend."""
    if is_pyro(t):
        zero = torch.zeros(event_shape)
        return pdist.Normal(zero, torch.ones_like(zero)).to_event(len(event_shape))
    zero = jnp.zeros(event_shape)
    return ndist.Normal(zero, jnp.ones_like(zero)).to_event(len(event_shape))


def transformed_log_prob(t, y: np.ndarray) -> np.ndarray:
    """``TransformedDistribution(N(0, I), [t]).log_prob(y)`` on ``t``'s backend."""
    if not is_pyro(t):
        return to_numpy(_jax_transformed_log_prob(t, as_backend(t, y)))
    event = y.shape[y.ndim - event_ndim(t) :]
    td = pdist.TransformedDistribution(standard_normal(t, event), [t])
    return to_numpy(td.log_prob(as_backend(t, y)))


@jax.jit
def _jax_transformed_log_prob(t, y):
    event = y.shape[y.ndim - event_ndim(t) :]
    return ndist.TransformedDistribution(standard_normal(t, event), [t]).log_prob(y)


def check_round_trip(t, x: np.ndarray, atol: float = 1e-5) -> None:
    """``inverse(forward(x)) = x`` within ``atol``, and ``forward(inverse(y)) = y``."""
    y, _ = forward(t, x)
    np.testing.assert_allclose(inverse(t, y), x, atol=atol, rtol=0)
    np.testing.assert_allclose(forward(t, inverse(t, y))[0], y, atol=atol, rtol=0)


def check_ladj(t, x: np.ndarray, atol: float = 1e-4) -> None:
    """``log_abs_det_jacobian(x, t(x))`` has the batch shape and equals the autodiff one."""
    _, ladj = forward(t, x)
    want = autodiff_ladj(t, x)
    assert ladj.shape == want.shape, (ladj.shape, want.shape)
    np.testing.assert_allclose(ladj, want, atol=atol, rtol=0)


def check_change_of_variables(t, x: np.ndarray, atol: float = 1e-4) -> None:
    """The backend's ``TransformedDistribution.log_prob`` at ``y = t(x)`` equals
    ``log N(x; 0, I) - log|det J(x)|`` with ``x`` known and ``J`` by autodiff."""
    k = event_ndim(t)
    y, _ = forward(t, x)
    base_log_prob = -0.5 * (x**2).reshape(*x.shape[: x.ndim - k], -1).sum(-1)
    base_log_prob -= 0.5 * np.log(2 * np.pi) * np.prod(x.shape[x.ndim - k :])
    want = base_log_prob - autodiff_ladj(t, x)
    np.testing.assert_allclose(transformed_log_prob(t, y), want, atol=atol, rtol=0)


def evaluate(t, x: np.ndarray) -> dict[str, np.ndarray]:
    """Everything the invariants compare, at once (NumPyro: one compiled call):
    ``y = t(x)``, ``ladj``, ``x_back = t.inv(y)``, ``y_back = t(x_back)``, the autodiff
    ``autodiff_ladj`` and ``log_prob``, the ``TransformedDistribution``'s at ``y``."""
    if is_pyro(t):
        y, ladj = forward(t, x)
        x_back = inverse(t, y)
        return {
            "y": y,
            "ladj": ladj,
            "x_back": x_back,
            "y_back": forward(t, x_back)[0],
            "autodiff_ladj": autodiff_ladj(t, x),
            "log_prob": transformed_log_prob(t, y),
        }
    out = _jax_evaluate(t, as_backend(t, x))
    return {k: to_numpy(v) for k, v in out.items()}


@jax.jit
def _jax_evaluate(t, x):
    k = event_ndim(t)
    batch, event = x.shape[: x.ndim - k], x.shape[x.ndim - k :]
    y, ladj = _jax_forward(t, x)
    x_back = _jax_inverse(t, y)
    return {
        "y": y,
        "ladj": ladj,
        "x_back": x_back,
        "y_back": t(x_back),
        "autodiff_ladj": _jax_autodiff_ladj(t, x.reshape(-1, *event)).reshape(batch),
        "log_prob": _jax_transformed_log_prob(t, y),
    }


def check_invariants(t, x: np.ndarray) -> dict[str, np.ndarray]:
    """Round trip both ways (1e-5), ``log_abs_det_jacobian`` = autodiff log|det| with the
    batch shape (1e-4), and the ``TransformedDistribution``'s ``log_prob(y)`` = ``log N(x;
    0, I) - log|det J(x)|`` (1e-4); returns :func:`evaluate`'s values."""
    k = event_ndim(t)
    v = evaluate(t, x)
    np.testing.assert_allclose(v["x_back"], x, atol=1e-5, rtol=0)
    np.testing.assert_allclose(v["y_back"], v["y"], atol=1e-5, rtol=0)
    assert v["ladj"].shape == x.shape[: x.ndim - k], v["ladj"].shape
    np.testing.assert_allclose(v["ladj"], v["autodiff_ladj"], atol=1e-4, rtol=0)
    base = -0.5 * (x**2).reshape(*x.shape[: x.ndim - k], -1).sum(-1)
    base -= 0.5 * np.log(2 * np.pi) * np.prod(x.shape[x.ndim - k :])
    np.testing.assert_allclose(v["log_prob"], base - v["autodiff_ladj"], atol=1e-4, rtol=0)
    return v


def copy_weights(source, target):
    """``target`` holding ``source``'s weights (same keys and shapes on both backends)."""
    source_weights = source.get_weights()
    assert sorted(source_weights) == sorted(target.get_weights())
    return target.set_weights(source_weights)


def check_parity(pyro_t, numpyro_t, x: np.ndarray, atol: float = 1e-5) -> None:
    """The two backends' transforms (same weights) agree on forward, inverse and ladj."""
    y_p, ladj_p = forward(pyro_t, x)
    y_n, ladj_n = forward(numpyro_t, x)
    np.testing.assert_allclose(y_p, y_n, atol=atol, rtol=0)
    np.testing.assert_allclose(ladj_p, ladj_n, atol=atol, rtol=0)
    np.testing.assert_allclose(inverse(pyro_t, y_p), inverse(numpyro_t, y_p), atol=atol, rtol=0)


def fuzz_inputs(event_shape: tuple[int, ...], n: int = 10_000, seed: int = 0) -> np.ndarray:
    """``n`` inputs of ``event_shape`` spanning magnitudes ``1e-3 .. 1e4`` in both signs,
    with exact zeros and the extremes ``+-1e4`` included."""
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-3, 4, (n, *event_shape))
    x = np.where(rng.random((n, *event_shape)) < 0.5, -1.0, 1.0) * magnitude
    x[0], x[1], x[2] = 0.0, 1e4, -1e4
    return x


def fuzz(
    t,
    x: np.ndarray,
    rtol: float = 1e-4,
    backward_rtol: float = 1e-9,
    ill_conditioned: float = 0.01,
) -> np.ndarray:
    """Forward, inverse and ladj of ``x`` are finite; the round trip holds within ``rtol``
    relative to ``1 + |x|`` wherever the inverse is well conditioned, and everywhere the
    inverse is backward stable: ``t(t.inv(y)) = y`` within ``backward_rtol`` of ``1 + |y|``.

    Where a spline sits at its floors (bins ``1e-3`` of the interval, slopes ``1e-3``) a
    whole interval of ``x`` maps into one rounding error of ``y``, so no inverse recovers
    ``x`` there; in an autoregressive inverse those errors feed the next coordinates'
    parameters. At most a fraction ``ill_conditioned`` of the inputs may fall short of
    ``rtol`` that way, and only while the backward error stays at ``backward_rtol``.
    Returns the per-example relative round-trip error.
    """
    y, ladj = forward(t, x)
    assert np.isfinite(y).all() and np.isfinite(ladj).all()
    back = inverse(t, y)
    assert np.isfinite(back).all()
    err = np.abs(back - x) / (1 + np.abs(x))
    err = err.reshape(len(x), -1).max(-1)
    y_back = forward(t, back)[0]
    backward = (np.abs(y_back - y) / (1 + np.abs(y))).reshape(len(x), -1).max(-1)
    assert backward.max() <= backward_rtol, f"backward error {backward.max():.3g}"
    above = (err > rtol).mean()
    assert above <= ill_conditioned, f"{above:.2%} above {rtol}"
    return err
