"""Invariants every autoregressive network must satisfy, checked the same way on both
backends (numpy in and out, so one test body covers Pyro and NumPyro):

- :func:`dependencies`: which flat input positions each flat output position depends on,
  from the autodiff Jacobian (exact zeros), for networks that read float inputs;
- :func:`perturbation_dependencies`: the same, measured by changing inputs (for networks
  that read integer codes, which have no gradient);
- :func:`assert_autoregressive`: output ``i`` depends on no input at or after ``i`` in the
  network's order;
- :func:`all_binary`: every binary vector of ``D`` dimensions (for sum-to-one checks);
- :func:`log_prob_of`, :func:`sample_with`: the efficient form's log-likelihood and a
  sampler's draws for given uniform noise, numpy in and out;
- :func:`plated_log_prob`: the plated-conditional form's log-likelihood (the trace's sum);
- toy networks :class:`ToyNetPyro` / :class:`ToyNetNumPyro` (a masked linear map, FVSBN
  with ``num_params`` outputs per dimension), the smallest implementation of the protocol,
  for the tests of ``ppgen.models.{pyro,numpyro}.ar``.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import torch
from numpyro import handlers as nh
from numpyro.infer.util import log_density
from pyro import poutine

import ppgen.models.numpyro.ar as nar
import ppgen.models.pyro.ar as par


def is_pyro(net) -> bool:
    """Whether ``net`` is a Pyro (torch) network."""
    return isinstance(net, torch.nn.Module)


def all_binary(d: int) -> np.ndarray:
    """All ``2**d`` binary vectors, ``(2**d, d)`` float."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def _flat_params(out, event_ndim: int):
    shape = out.shape
    lead = shape[: len(shape) - 1 - event_ndim]
    return out.reshape(*lead, -1, shape[-1])


def dependencies(net, x: np.ndarray, context=None) -> np.ndarray:
    """``(D, D)`` booleans: ``[i, j]`` is whether any parameter of output position ``i``
    has a nonzero derivative in input position ``j``, at the one event ``x`` (float, shape
    ``event``). The Jacobian is exact (autodiff), so a dependency cannot hide."""
    event_ndim = x.ndim
    d = x.size
    if is_pyro(net):
        xt = torch.tensor(x, dtype=next(net.parameters()).dtype)
        ctx = None if context is None else torch.as_tensor(context, dtype=xt.dtype)

        def f(v):
            return _flat_params(net(v.reshape(1, *x.shape), ctx)[0], event_ndim)

        jac = torch.autograd.functional.jacobian(f, xt.reshape(-1)).detach().numpy()
    else:
        ctx = None if context is None else jnp.asarray(context)

        def f(v):
            return _flat_params(net(v.reshape(1, *x.shape), ctx)[0], event_ndim)

        jac = np.asarray(jax.jacfwd(f)(jnp.asarray(x).reshape(-1)))
    return (np.abs(jac) > 0).any(axis=1).reshape(d, d)


def perturbation_dependencies(
    net, x: np.ndarray, values: int, trials: int = 3, seed: int = 0, context=None
) -> np.ndarray:
    """``(D, D)`` booleans as :func:`dependencies`, measured on integer inputs: ``[i, j]``
    is whether changing input ``j`` (to ``trials`` other codes below ``values``) changed any
    parameter of output ``i``."""
    rng = np.random.default_rng(seed)
    base = params_of(net, x[None], context)[0]
    d = x.size
    dep = np.zeros((d, d), bool)
    flat = x.reshape(-1)
    for j in range(d):
        for _ in range(trials):
            y = flat.copy()
            y[j] = (y[j] + rng.integers(1, values)) % values
            out = params_of(net, y.reshape(1, *x.shape), context)[0]
            dep[:, j] |= np.any(out != base, axis=-1)
    return dep


def assert_autoregressive(dep: np.ndarray, order) -> None:
    """Output ``i`` depends on no input ``j`` with ``rank(j) >= rank(i)`` in ``order``.

    Raises:
        AssertionError: Naming the first offending pair.
    """
    rank = np.empty(len(order), int)
    rank[np.asarray(order)] = np.arange(len(order))
    bad = dep & (rank[None, :] >= rank[:, None])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(f"output {i} depends on input {j}, which is not before it")


def params_of(net, x: np.ndarray, context=None) -> np.ndarray:
    """``net(x, context)`` as numpy, flattened to ``(batch, D, num_params)``."""
    if is_pyro(net):
        dtype = next(net.parameters()).dtype
        xt = torch.as_tensor(x)
        xt = xt.to(dtype) if xt.is_floating_point() else xt.long()
        ctx = None if context is None else torch.as_tensor(context, dtype=dtype)
        with torch.no_grad():
            out = net(xt, ctx).numpy()
    else:
        ctx = None if context is None else jnp.asarray(context)
        out = np.asarray(net(jnp.asarray(x), ctx))
    return out.reshape(len(x), -1, out.shape[-1])


def log_prob_of(net, head, x: np.ndarray, context=None) -> np.ndarray:
    """The efficient form's ``log p(x)`` per event (nats), numpy; ``x (batch, *event)``."""
    length = x.shape[-1] if net.event_shape is None else None
    if is_pyro(net):
        dtype = next(net.parameters()).dtype
        ctx = None if context is None else torch.as_tensor(context, dtype=dtype)
        d = par.AutoregressiveDistribution(net, head, ctx, length, batch_shape=(len(x),))
        with torch.no_grad():
            return d.log_prob(torch.as_tensor(x)).numpy()
    ctx = None if context is None else jnp.asarray(context)
    d = nar.AutoregressiveDistribution(net, head, ctx, length, batch_shape=(len(x),))
    return np.asarray(d.log_prob(jnp.asarray(x)))


def sample_with(net, head, noise: np.ndarray, cached: bool, context=None, **kw) -> np.ndarray:
    """``net.sample`` on the given uniform noise, numpy out."""
    if is_pyro(net):
        dtype = next(net.parameters()).dtype
        ctx = None if context is None else torch.as_tensor(context, dtype=dtype)
        with torch.no_grad():
            out = net.sample(torch.as_tensor(noise, dtype=dtype), head, ctx, cached=cached, **kw)
        return out.numpy()
    ctx = None if context is None else jnp.asarray(context)
    return np.asarray(net.sample(jnp.asarray(noise), head, ctx, cached=cached, **kw))


def plated_log_prob(net, head, x: np.ndarray, context=None) -> np.ndarray:
    """The plated form's total ``log p`` (one number: every site of every event), from the
    backend's own trace of ``AutoregressiveDensity.plated_model`` on rows of ``x``."""
    rows = x.reshape(len(x), -1)
    if is_pyro(net):
        dtype = next(net.parameters()).dtype
        density = par.AutoregressiveDensity(net, head)
        xt = torch.as_tensor(rows)
        ctx = None if context is None else torch.as_tensor(context, dtype=dtype)
        with torch.no_grad():
            tr = poutine.trace(density.plated_model).get_trace(xt, ctx)
            return float(tr.log_prob_sum())
    density = nar.AutoregressiveDensity(net, head)
    ctx = None if context is None else jnp.asarray(context)
    lp, _ = log_density(density.plated_model, (jnp.asarray(rows), ctx), {}, {})
    return float(lp)


def plated_sites(net, head, x: np.ndarray, context=None) -> list[str]:
    """The sample sites the plated form issues (names, in order)."""
    rows = x.reshape(len(x), -1)
    if is_pyro(net):
        density = par.AutoregressiveDensity(net, head)
        tr = poutine.trace(density.plated_model).get_trace(torch.as_tensor(rows), context)
        return [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"]
    density = nar.AutoregressiveDensity(net, head)
    tr = nh.trace(nh.seed(density.plated_model, 0)).get_trace(jnp.asarray(rows), context)
    return [n for n, s in tr.items() if s["type"] == "sample"]


# -- the smallest network of the protocol ----------------------------------------------------


def _toy_order(dim: int, reverse: bool) -> tuple[int, ...]:
    return tuple(range(dim))[::-1] if reverse else tuple(range(dim))


def _toy_mask(dim: int, reverse: bool) -> np.ndarray:
    """``mask[i, j] = 1`` where input ``j`` comes before output ``i`` in the order."""
    rank = np.empty(dim, int)
    rank[list(_toy_order(dim, reverse))] = np.arange(dim)
    return (rank[None, :] < rank[:, None]).astype(np.float64)


class ToyNetPyro(torch.nn.Module):
    """``params[..., i, p] = b[i, p] + sum_{j before i} W[p, i, j] x_j``: FVSBN with
    ``num_params`` outputs per dimension and an optional context (a linear term)."""

    def __init__(self, dim, num_params=1, reverse=False, context_dim=0, seed=0, scale=1.0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.event_shape, self.num_params = (dim,), num_params
        self.order = _toy_order(dim, reverse)
        self.register_buffer("mask", torch.tensor(_toy_mask(dim, reverse)))
        dtype = torch.get_default_dtype()
        self.weight = torch.nn.Parameter(
            torch.tensor(rng.normal(0, scale, (num_params, dim, dim)), dtype=dtype)
        )
        self.bias = torch.nn.Parameter(
            torch.tensor(rng.normal(0, 1, (dim, num_params)), dtype=dtype)
        )
        self.context_weight = (
            torch.nn.Parameter(
                torch.tensor(rng.normal(0, 1, (dim * num_params, context_dim)), dtype=dtype)
            )
            if context_dim
            else None
        )

    def forward(self, x, context=None):
        w = self.weight * self.mask.to(self.weight.dtype)
        out = torch.einsum("pij,...j->...ip", w, x.to(w.dtype)) + self.bias
        if self.context_weight is not None:
            out = out + (context @ self.context_weight.T).reshape(out.shape)
        return out

    def sample(self, noise, head, context=None, cached=True, prefix=None):
        return par.naive_sample(self, noise, head, context)

    def plated(self, x, head, context=None):
        return par.plated_conditionals(self, x, head, context)

    def get_weights(self):
        return {k: v.detach().numpy().copy() for k, v in self.named_parameters()}

    def set_weights(self, weights):
        for k, p in self.named_parameters():
            with torch.no_grad():
                p.copy_(torch.as_tensor(weights[k]))
        return self


class ToyNetNumPyro(eqx.Module):
    """The NumPyro twin of :class:`ToyNetPyro` (same weights, same outputs)."""

    weight: jax.Array
    bias: jax.Array
    context_weight: jax.Array | None
    event_shape: tuple = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    order: tuple = eqx.field(static=True)
    reverse: bool = eqx.field(static=True)

    def __init__(self, dim, num_params=1, reverse=False, context_dim=0, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        self.event_shape, self.num_params, self.reverse = (dim,), num_params, reverse
        self.order = _toy_order(dim, reverse)
        self.weight = jnp.asarray(rng.normal(0, scale, (num_params, dim, dim)))
        self.bias = jnp.asarray(rng.normal(0, 1, (dim, num_params)))
        self.context_weight = (
            jnp.asarray(rng.normal(0, 1, (dim * num_params, context_dim))) if context_dim else None
        )

    def __call__(self, x, context=None):
        w = self.weight * _toy_mask(self.event_shape[0], self.reverse)
        out = jnp.einsum("pij,...j->...ip", w, jnp.asarray(x, w.dtype)) + self.bias
        if self.context_weight is not None:
            out = out + (context @ self.context_weight.T).reshape(out.shape)
        return out

    def sample(self, noise, head, context=None, cached=True, prefix=None):
        return nar.naive_sample(self, noise, head, context)

    def plated(self, x, head, context=None):
        return nar.plated_conditionals(self, x, head, context)

    def get_weights(self):
        out = {"weight": np.asarray(self.weight), "bias": np.asarray(self.bias)}
        if self.context_weight is not None:
            out["context_weight"] = np.asarray(self.context_weight)
        return out

    def set_weights(self, weights):
        new = self
        for k in self.get_weights():
            new = eqx.tree_at(lambda m, k=k: getattr(m, k), new, jnp.asarray(weights[k]))
        return new


def toy_net(backend_name: str, *args, **kw):
    """The toy network of ``backend_name`` (``"pyro"`` or ``"numpyro"``)."""
    return (ToyNetPyro if backend_name == "pyro" else ToyNetNumPyro)(*args, **kw)


def heads(backend_name: str):
    """The head module of a backend."""
    return par if backend_name == "pyro" else nar


__all__ = [
    "ToyNetNumPyro",
    "ToyNetPyro",
    "all_binary",
    "assert_autoregressive",
    "dependencies",
    "heads",
    "log_prob_of",
    "params_of",
    "perturbation_dependencies",
    "plated_log_prob",
    "plated_sites",
    "sample_with",
    "toy_net",
]
