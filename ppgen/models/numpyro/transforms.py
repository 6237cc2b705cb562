"""Simple flow transforms for NumPyro: planar, radial, permutations, LU-linear, diagonal scaling.

The twin of ``ppgen.models.pyro.transforms``: the same public names, constructors and
parameter names, and the maths of Pyro's classes written in JAX, so the same weights give the
same numbers. Each transform subclasses :class:`numpyro.distributions.transforms.Transform`
(so ``TransformedDistribution(base, [t, ...])`` samples and scores through it) and is a
pytree: its parameters are the children, sizes and permutations static aux data, so a list
of transforms inside an ``eqx.Module`` can be registered with
``numpyro.contrib.module.eqx_module`` and jitted. Conditional ones are ``eqx.Module``s
holding an ``MLP`` hypernetwork; ``.condition(context)`` returns a new transform.

Every transform has ``get_weights() -> dict[str, np.ndarray]`` (the Pyro twin's
``named_parameters()`` names, torch layout) and ``set_weights(weights)``, which returns a new
transform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from ppgen.models.conventions import check_weights, spawn_seeds
from ppgen.models.numpyro.nets import MLP
from ppgen.models.transforms import (
    PLANAR_PARAMS,
    RADIAL_PARAMS,
    check_dim,
    check_hidden,
    check_permutation,
    hypernet_init,
    inverse_permutation,
    lu_init,
    param_sizes,
    planar_init,
    radial_init,
    random_permutation,
    reverse_permutation,
)

__all__ = [
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionedPlanar",
    "ConditionedRadial",
    "DiagonalScaling",
    "LULinear",
    "Permutation",
    "Planar",
    "Radial",
    "TransformWeights",
    "random_permutation",
    "reverse_permutation",
]

# Safeguarded Newton iterations of the planar inverse (Numerical Recipes' rtsafe): a step
# that leaves the bracket or fails to halve the previous step is a bisection, so 100
# iterations reach float64 resolution from any bracket; near the root Newton is quadratic.
PLANAR_INVERSE_ITERATIONS = 100


class TransformWeights:
    """Mixin for a pytree transform whose children are its parameters, named in its aux data."""

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters as numpy arrays, by the Pyro twin's ``named_parameters()`` name."""
        children, (names, _) = self.tree_flatten()
        return {k: np.asarray(v) for k, v in zip(names, children, strict=True)}

    def set_weights(self, weights: Mapping[str, Any]) -> TransformWeights:
        """A copy of this transform holding ``weights`` (keys and shapes of :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        children, aux = self.tree_flatten()
        check_weights(self.get_weights(), weights)
        new = [
            jnp.asarray(weights[k], dtype=v.dtype) for k, v in zip(aux[0], children, strict=True)
        ]
        return self.tree_unflatten(aux, new)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """``sum(a * b, -1, keepdims=True)``, the leading dims broadcast."""
    return jnp.sum(a * b, axis=-1, keepdims=True)


def _init_arrays(values: Mapping[str, np.ndarray], names: Sequence[str]) -> list[jax.Array]:
    """Initial numpy values as arrays of JAX's default float dtype."""
    dtype = jnp.zeros(()).dtype
    return [jnp.asarray(values[k], dtype=dtype) for k in names]


def _planar_root_step(_: int, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """One rtsafe iteration of :func:`_planar_root` (module level, so that eager calls reuse
    the compiled loop)."""
    lo, hi, a, step, s, c, b = carry
    t = jnp.tanh(a + b)
    f = a + c * t - s
    lo = jnp.where(f < 0, a, lo)
    hi = jnp.where(f > 0, a, hi)
    newton_step = f / (1 + c * (1 - t * t))
    newton = a - newton_step
    # Newton only where it stays in the bracket and at least halves the last step.
    keep = (newton > lo) & (newton < hi) & (jnp.abs(newton_step) <= 0.5 * jnp.abs(step))
    keep = keep | (f == 0)
    step = jnp.where(keep, newton_step, 0.5 * (hi - lo))
    return lo, hi, jnp.where(keep, newton, 0.5 * (lo + hi)), step, s, c, b


def _planar_root(s: jax.Array, c: jax.Array, b: jax.Array) -> jax.Array:
    """The ``a`` with ``a + c tanh(a + b) = s`` (``c > -1``, so the left side is increasing).

    Newton's method safeguarded by bisection (rtsafe, Press et al., Numerical Recipes 9.4)
    on the bracket ``[s - |c|, s + |c|]`` (valid since ``|tanh| <= 1``), run on stopped
    gradients; one last Newton step with gradients then gives the implicit-function
    derivatives ``da/dtheta = -(df/dtheta) / (df/da)``.
    """
    s0, c0, b0 = (jax.lax.stop_gradient(v) for v in (s, c, b))
    lo, hi = s0 - jnp.abs(c0), s0 + jnp.abs(c0)
    a = jnp.broadcast_to(s0, lo.shape)
    shape = lo.shape
    carry = (lo, hi, a, hi - lo, *(jnp.broadcast_to(v, shape) for v in (s0, c0, b0)))
    a = jax.lax.fori_loop(0, PLANAR_INVERSE_ITERATIONS, _planar_root_step, carry)[2]
    t = jnp.tanh(a + b)
    return a - (a + c * t - s) / (1 + c * (1 - t * t))


class ConditionedPlanar(Transform):
    """Planar flow ``y = x + u_hat tanh(w^T x + b)`` with given parameters (Rezende & Mohamed
    2015, eq. 10), what :meth:`ConditionalPlanar.condition` returns.

    Pyro's parametrisation: ``u_hat = u + (softplus(w.u) - 1 - w.u) w / |w|^2``, so ``w.u_hat
    > -1`` and the map is invertible (appendix A.1). The inverse solves ``w.y = a + w.u_hat
    tanh(a + b)`` for ``a = w.x`` (increasing in ``a``) by safeguarded Newton and returns
    ``x = y - u_hat tanh(a + b)``. ``log_abs_det_jacobian = log|1 + (1 - tanh^2(w.x + b))
    w.u_hat|`` nats, shape ``x.shape[:-1]``.

    Args:
        params: ``(bias (..., 1), u (..., D), w (..., D))``; their leading dims broadcast
            against the input's.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, params: tuple[jax.Array, jax.Array, jax.Array]) -> None:
        self.bias, self.u, self.w = params

    def tree_flatten(self):
        return (self.bias, self.u, self.w), (PLANAR_PARAMS, {})

    def u_hat(self) -> jax.Array:
        """``u + (softplus(w.u) - 1 - w.u) w / |w|^2``, shape ``(..., D)``."""
        alpha = _dot(self.u, self.w)
        return self.u + (jax.nn.softplus(alpha) - 1 - alpha) * self.w / _dot(self.w, self.w)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.u_hat() * jnp.tanh(_dot(self.w, x) + self.bias)

    def _inverse(self, y: jax.Array) -> jax.Array:
        u_hat = self.u_hat()
        a = _planar_root(_dot(self.w, y), _dot(self.w, u_hat), self.bias)  # (..., 1)
        return y - u_hat * jnp.tanh(a + self.bias)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        """``log|1 + (1 - tanh^2(w.x + b)) w.u_hat|``, shape ``x.shape[:-1]``."""
        act = jnp.tanh(_dot(self.w, x) + self.bias)
        return jnp.log1p((1 - act * act) * _dot(self.w, self.u_hat()))[..., 0]


class Planar(TransformWeights, ConditionedPlanar):
    """Planar flow ``y = x + u_hat tanh(w^T x + b)`` (Rezende & Mohamed 2015, eq. 10).

    The twin of Pyro's :class:`~pyro.distributions.transforms.Planar` (parameters ``bias
    (1,)``, ``u (D,)``, ``w (D,)``; see :class:`ConditionedPlanar` for the maths) with
    ppgen's seeded initialisation, the identity map
    (:func:`ppgen.models.transforms.planar_init`).

    Args:
        input_dim: ``D``, the event size.
        seed: Seed of the initial ``w``.

    Raises:
        ConfigError: ``input_dim`` is not a positive integer.
    """

    def __init__(self, input_dim: int, seed: int = 0) -> None:
        init = planar_init(check_dim(input_dim, "input_dim"), seed)
        super().__init__(tuple(_init_arrays(init, PLANAR_PARAMS)))


class ConditionedRadial(Transform):
    """Radial flow ``y = x + beta / (alpha + |x - x0|) (x - x0)`` with given parameters
    (Rezende & Mohamed 2015, eq. 14), what :meth:`ConditionalRadial.condition` returns.

    Pyro's parametrisation: ``alpha = softplus(alpha')``, ``beta = -alpha + softplus(beta')``,
    so ``beta > -alpha`` (appendix A.2). Inverse in closed form: ``r = |x - x0|`` is the
    positive root of ``r^2 + (alpha + beta - r') r - alpha r' = 0`` with ``r' = |y - x0|``,
    and ``x = x0 + (y - x0) (alpha + r) / (alpha + beta + r)``. ``log_abs_det_jacobian =
    (D - 1) log(1 + beta h) + log(1 + beta h - beta h^2 r)``, ``h = 1 / (alpha + r)``, nats,
    shape ``x.shape[:-1]``.

    Args:
        params: ``(x0 (..., D), alpha_prime (..., 1), beta_prime (..., 1))``; their leading
            dims broadcast against the input's.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, params: tuple[jax.Array, jax.Array, jax.Array]) -> None:
        self.x0, self.alpha_prime, self.beta_prime = params

    def tree_flatten(self):
        return (self.x0, self.alpha_prime, self.beta_prime), (RADIAL_PARAMS, {})

    def _alpha_beta(self) -> tuple[jax.Array, jax.Array]:
        alpha = jax.nn.softplus(self.alpha_prime)
        return alpha, -alpha + jax.nn.softplus(self.beta_prime)

    def __call__(self, x: jax.Array) -> jax.Array:
        alpha, beta = self._alpha_beta()
        diff = x - self.x0
        r = jnp.linalg.norm(diff, axis=-1, keepdims=True)
        return x + beta / (alpha + r) * diff

    def _inverse(self, y: jax.Array) -> jax.Array:
        alpha = jax.nn.softplus(self.alpha_prime)
        alpha_plus_beta = jax.nn.softplus(self.beta_prime)
        diff = y - self.x0
        r_out = jnp.linalg.norm(diff, axis=-1, keepdims=True)
        half_b = 0.5 * (alpha_plus_beta - r_out)
        root = jnp.sqrt(half_b * half_b + alpha * r_out)
        # r = -half_b + root, written as alpha r' / (half_b + root) when half_b > 0.
        r = jnp.where(half_b > 0, alpha * r_out / (half_b + root), root - half_b)
        return self.x0 + diff * (alpha + r) / (alpha_plus_beta + r)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        """``(D - 1) log(1 + beta h) + log(1 + beta h - beta h^2 r)``, shape ``x.shape[:-1]``."""
        alpha, beta = self._alpha_beta()
        r = jnp.linalg.norm(x - self.x0, axis=-1, keepdims=True)
        h = 1 / (alpha + r)
        beta_h = beta * h
        ladj = (self.x0.shape[-1] - 1) * jnp.log1p(beta_h) + jnp.log1p(beta_h - beta_h * h * r)
        return ladj[..., 0]


class Radial(TransformWeights, ConditionedRadial):
    """Radial flow ``y = x + beta / (alpha + |x - x0|) (x - x0)`` (Rezende & Mohamed 2015).

    The twin of Pyro's :class:`~pyro.distributions.transforms.Radial` (parameters ``x0
    (D,)``, ``alpha_prime (1,)``, ``beta_prime (1,)``; see :class:`ConditionedRadial` for the
    maths) with ppgen's seeded initialisation, the identity map
    (:func:`ppgen.models.transforms.radial_init`).

    Args:
        input_dim: ``D``, the event size.
        seed: Seed of the initial parameters.

    Raises:
        ConfigError: ``input_dim`` is not a positive integer.
    """

    def __init__(self, input_dim: int, seed: int = 0) -> None:
        init = radial_init(check_dim(input_dim, "input_dim"), seed)
        super().__init__(tuple(_init_arrays(init, RADIAL_PARAMS)))


class _HypernetworkFlow(eqx.Module):
    """Shared body of :class:`ConditionalPlanar` and :class:`ConditionalRadial`: an ``MLP``
    ``nn`` from the context to the parameters ``_names`` (sizes ``D`` or 1, concatenated), its
    last layer zero with the identity parameters ``_initial(D, seed)`` as bias, so a fresh
    transform is the identity whatever the context."""

    nn: MLP
    input_dim: int = eqx.field(static=True)
    _names: ClassVar[tuple[str, ...]]
    _initial: ClassVar[Callable[[int, int], dict[str, np.ndarray]]]
    _conditioned: ClassVar[type]

    def __init__(
        self,
        input_dim: int,
        context_dim: int,
        hidden: int | Sequence[int],
        seed: int = 0,
        activation: str = "relu",
    ) -> None:
        self.input_dim = check_dim(input_dim, "input_dim")
        net_seed, init_seed = spawn_seeds(seed, 2)
        init = type(self)._initial(self.input_dim, init_seed)
        sizes = [check_dim(context_dim, "context_dim"), *check_hidden(hidden)]
        sizes.append(sum(init[k].size for k in self._names))
        net = MLP(sizes, activation, seed=net_seed)
        bias = np.concatenate([init[k] for k in self._names])
        self.nn = net.load_state_dict(hypernet_init(sizes, bias, net_seed))

    def condition(self, context: jax.Array) -> Transform:
        """The flow for ``context (..., context_dim)``, its parameters ``nn(context)``."""
        sizes = np.cumsum(param_sizes(self._names, self.input_dim))[:-1]
        return self._conditioned(tuple(jnp.split(self.nn(context), sizes, axis=-1)))

    def get_weights(self) -> dict[str, np.ndarray]:
        """The hypernetwork's weights under the Pyro twin's names (``nn.layers.0.weight``)."""
        return {f"nn.{k}": v for k, v in self.nn.state_dict().items()}

    def set_weights(self, weights: Mapping[str, Any]) -> _HypernetworkFlow:
        """A copy holding ``weights`` (keys and shapes of :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        inner = {k.removeprefix("nn."): v for k, v in weights.items()}
        return eqx.tree_at(lambda m: m.nn, self, self.nn.load_state_dict(inner))


class ConditionalPlanar(_HypernetworkFlow):
    """Planar flow whose ``(b, u, w)`` are an MLP of a context (Rezende & Mohamed 2015).

    ``nn(context)`` is split into ``bias (..., 1)``, ``u (..., D)``, ``w (..., D)`` (Pyro's
    order); ``.condition(context)`` returns a :class:`ConditionedPlanar`. The MLP's last
    layer has zero weights and the bias :class:`Planar` starts from, so a fresh transform is
    the identity whatever the context.

    Args:
        input_dim: ``D``, the event size.
        context_dim: Size of the context vector.
        hidden: Hidden widths of the hypernetwork (an int for one layer).
        seed: Seed of the hypernetwork and of the initial parameters.
        activation: The hypernetwork's activation (see ``nets.MLP``).

    Raises:
        ConfigError: A size that is not a positive integer, or an unknown activation.
    """

    _names = PLANAR_PARAMS
    _initial = staticmethod(planar_init)
    _conditioned = ConditionedPlanar


class ConditionalRadial(_HypernetworkFlow):
    """Radial flow whose ``(x0, alpha', beta')`` are an MLP of a context.

    ``nn(context)`` is split into ``x0 (..., D)``, ``alpha_prime (..., 1)``, ``beta_prime
    (..., 1)`` (Pyro's order); ``.condition(context)`` returns a :class:`ConditionedRadial`.
    A fresh transform is the identity, as :class:`ConditionalPlanar`, whose arguments and
    errors it shares.
    """

    _names = RADIAL_PARAMS
    _initial = staticmethod(radial_init)
    _conditioned = ConditionedRadial


class Permutation(TransformWeights, Transform):
    """``y = x[..., permutation]``, log-det 0 (the twin of Pyro's ``Permute``).

    The permutation is static aux data (a tuple of ints), not a parameter.

    Args:
        permutation: A numpy index array, e.g. :func:`reverse_permutation` (NICE, RealNVP)
            or :func:`random_permutation` (MAF).

    Raises:
        ConfigError: Not a rearrangement of ``0, ..., D-1``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, permutation: Sequence[int] | np.ndarray) -> None:
        self.permutation = tuple(int(i) for i in check_permutation(permutation))

    def tree_flatten(self):
        return (), ((), {"permutation": self.permutation})

    def __call__(self, x: jax.Array) -> jax.Array:
        return x[..., np.asarray(self.permutation)]

    def _inverse(self, y: jax.Array) -> jax.Array:
        return y[..., inverse_permutation(np.asarray(self.permutation))]

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        """Zeros of shape ``x.shape[:-1]``."""
        return jnp.zeros(x.shape[:-1], dtype=x.dtype)


class LULinear(TransformWeights, Transform):
    """Learned invertible linear map ``y = W x``, ``W = P L (U + diag(sign exp(log_diag)))``.

    The vector form of Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018, sec. 3.2):
    ``P`` a fixed permutation, ``L`` unit lower triangular (parameter ``lower (D, D)``, its
    strictly lower part), ``U`` strictly upper (``upper (D, D)``) plus a diagonal of fixed
    sign and learned log-magnitude ``log_diag (D,)``. ``log|det W| = sum(log_diag)`` nats;
    the inverse is two triangular solves. Starts from a seeded random rotation
    (:func:`ppgen.models.transforms.lu_init`); ``P`` and the signs are static aux data.

    Args:
        dim: ``D``, the event size.
        seed: Seed of the initial rotation (and so of ``P`` and the signs).

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    _NAMES = ("lower", "upper", "log_diag")

    def __init__(self, dim: int, seed: int = 0) -> None:
        rows, sign, init = lu_init(dim, seed)
        self.lower, self.upper, self.log_diag = _init_arrays(init, self._NAMES)
        self.rows = tuple(int(i) for i in rows)
        self.diag_sign = tuple(float(s) for s in sign)

    def tree_flatten(self):
        aux = {"rows": self.rows, "diag_sign": self.diag_sign}
        return (self.lower, self.upper, self.log_diag), (self._NAMES, aux)

    def factors(self) -> tuple[jax.Array, jax.Array]:
        """``(L, U)``: unit lower and upper triangular, ``W = P L U``."""
        sign = jnp.asarray(self.diag_sign, dtype=self.log_diag.dtype)
        lower = jnp.tril(self.lower, -1) + jnp.eye(len(self.rows), dtype=self.lower.dtype)
        upper = jnp.triu(self.upper, 1) + jnp.diag(sign * jnp.exp(self.log_diag))
        return lower, upper

    def weight(self) -> jax.Array:
        """``W = P L U``, shape ``(D, D)``."""
        lower, upper = self.factors()
        return (lower @ upper)[np.asarray(self.rows)]

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight().T

    def _inverse(self, y: jax.Array) -> jax.Array:
        lower, upper = self.factors()
        z = y[..., inverse_permutation(np.asarray(self.rows))]  # P^T y
        columns = z.reshape(-1, z.shape[-1]).T  # (D, batch)
        a = solve_triangular(lower, columns, lower=True, unit_diagonal=True)
        return solve_triangular(upper, a, lower=False).T.reshape(y.shape)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        """``sum(log_diag)`` nats, broadcast to ``x.shape[:-1]``."""
        return jnp.broadcast_to(jnp.sum(self.log_diag), x.shape[:-1])


class DiagonalScaling(TransformWeights, Transform):
    """NICE's final scaling ``y = x * exp(log_scale)`` (Dinh et al. 2014, sec. 3.3).

    ``log_abs_det_jacobian = sum(log_scale)`` nats, broadcast to ``x.shape[:-1]``. Starts at
    ``log_scale = 0``, the identity.

    Args:
        dim: ``D``, the event size.

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int) -> None:
        (self.log_scale,) = _init_arrays({"log_scale": np.zeros(check_dim(dim))}, ["log_scale"])

    def tree_flatten(self):
        return (self.log_scale,), (("log_scale",), {})

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * jnp.exp(self.log_scale)

    def _inverse(self, y: jax.Array) -> jax.Array:
        return y * jnp.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        """``sum(log_scale)`` nats, broadcast to ``x.shape[:-1]``."""
        return jnp.broadcast_to(jnp.sum(self.log_scale), x.shape[:-1])
