"""Importance weights and the importance-sampled log marginal likelihood of any model/guide.

``log p(x_i) = log E_{q(z | x_i)}[p(x_i, z) / q(z | x_i)]``, estimated by
``log (1/K) sum_k w_{k,i}`` with ``z_k ~ q(z | x_i)`` (Burda et al., 2015, eq. 8 with
``K = 5000`` is the standard MNIST test NLL). The estimate is a lower bound in expectation
that tightens as ``K`` grows, and is exact for every ``K`` when ``q`` is the posterior
(mirrors :mod:`ppgen.inference.pyro.loglik`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from numpyro import handlers
from tqdm.auto import tqdm

from ppgen.data.schedules import Minibatches, argument_names
from ppgen.errors import ConfigError, PPGenError
from ppgen.inference.checks import check_count, check_num_particles, datapoint_param_sizes
from ppgen.inference.numpyro.particles import particle_terms, structure
from ppgen.inference.numpyro.support import check_observed_support

__all__ = ["evaluate_log_likelihood", "log_marginal_likelihood", "log_weights"]


def log_weights(
    rng_key: jax.Array,
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    **kwargs: Any,
) -> jax.Array:
    """Per-datapoint log importance weights ``log p(x_i, z_k) - log q(z_k | x_i)``.

    The ``K`` particles ``z_k ~ q(z | x_i)`` are drawn at once in an outer ``"particles"``
    plate at dim ``-(max_plate_nesting + 1)``; each site's log-density is summed over every
    plate but ``"particles"`` and ``"data"``, with the data plate's subsample scale divided
    out, so the weights are per datapoint whatever ``num_data`` is. Works for any NumPyro
    model/guide pair whose parameters are already in place (``handlers.substitute``, or the
    ``numpyro.param`` initial values). A guide conditioned on given latents
    (``handlers.condition(guide, data={"z": z})`` with ``z`` of shape ``(K, batch, ...)``)
    gives deterministic weights.

    Args:
        rng_key: PRNG key for the guide's draws.
        model: ``model(*args, **kwargs)`` with its latent and observed sites in the
            ``"data"`` plate (or with no plate at all: one datapoint).
        guide: ``guide(*args, **kwargs)`` sampling every latent site of the model.
        *args: Passed to model and guide (e.g. the minibatch ``x``).
        num_particles: ``K``, always in the particle plate (finding its dim is shape-only).
        **kwargs: Passed to model and guide (e.g. ``num_data``).

    Returns:
        Array of shape ``(num_particles, batch)``.

    Raises:
        ConfigError: ``num_particles`` is not a positive integer, a site lies outside the
            ``"data"`` plate, or a model latent the guide lacks.
    """
    num_particles = check_num_particles(num_particles)
    out = particle_terms(rng_key, model, guide, args, kwargs, num_particles=num_particles)
    return sum(out.terms.values())


def log_marginal_likelihood(
    rng_key: jax.Array,
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 5000,
    chunk_size: int = 500,
    **kwargs: Any,
) -> jax.Array:
    """Importance-sampled ``log p(x_i) ~= logmeanexp_k log w_{k,i}``, shape ``(batch,)``.

    The ``num_samples`` weights are drawn ``chunk_size`` at a time in a ``lax.scan`` that
    keeps a running ``logsumexp``, so memory grows with ``chunk_size``, not ``num_samples``
    (a 784-200-200-50 VAE with ``K = 5000`` on a batch of 100 needs a few hundred MB).

    Args:
        rng_key: PRNG key.
        model: Model (see :func:`log_weights`).
        guide: Guide, the proposal.
        *args: Passed to model and guide.
        num_samples: ``K``; need not be a multiple of ``chunk_size``.
        chunk_size: Particles per chunk, each chunk one step of the scan.
        **kwargs: Passed to model and guide.

    Raises:
        ConfigError: ``num_samples`` or ``chunk_size`` is not a positive integer.
    """
    num_samples = check_count("num_samples", num_samples)
    chunk = min(check_count("chunk_size", chunk_size), num_samples)
    num_chunks = math.ceil(num_samples / chunk)
    info = structure(rng_key, model, guide, args, kwargs)  # once, not once per chunk

    def body(total: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        i, key = inputs
        out = particle_terms(key, model, guide, args, kwargs, num_particles=chunk, info=info)
        lw = sum(out.terms.values())  # (chunk, batch)
        valid = i * chunk + jnp.arange(chunk) < num_samples  # the last chunk may overhang
        lw = jnp.where(valid[:, None], lw, -jnp.inf)
        return jnp.logaddexp(total, logsumexp(lw, axis=0)), None

    batch = jax.eval_shape(
        lambda key: log_weights(key, model, guide, *args, num_particles=1, **kwargs), rng_key
    ).shape[1]
    keys = jax.random.split(rng_key, num_chunks)
    init = jnp.full((batch,), -jnp.inf)
    total, _ = jax.lax.scan(body, init, (jnp.arange(num_chunks), keys))
    return total - math.log(num_samples)


def evaluate_log_likelihood(
    rng_key: jax.Array,
    model: Callable,
    guide: Callable,
    x: Any,
    *,
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int = 500,
    progress: bool = False,
) -> np.ndarray:
    """:func:`log_marginal_likelihood` of every row of a dataset, in batches.

    One compiled function serves every batch: the last partial batch is padded with copies
    of its last row and the padding dropped. Batch ``b`` uses ``fold_in(rng_key, b)``.

    Args:
        rng_key: PRNG key.
        model: ``model(x)`` (parameters in place, e.g. a bound ppgen model).
        guide: ``guide(x)``.
        x: Data of shape ``(N, features)``, or several arrays with the same ``N`` as in
            training (a tuple, passed positionally, or a dict, by keyword).
        num_samples: Importance samples per datapoint.
        batch_size: Datapoints per compiled call.
        chunk_size: Particles per chunk inside a call.
        progress: Show a tqdm bar over batches.

    Returns:
        ``log p(x_i)`` estimates, shape ``(N,)``.

    Raises:
        DataError: ``x`` is not numeric, empty, holds NaN/Inf, or a value lies outside the
            support of its likelihood (e.g. grey values under a Bernoulli).
        ConfigError: A count is not a positive integer, or the guide has one parameter per
            datapoint (``AutoNormal``) and ``x`` is not all its rows in one batch.
    """
    batch_size = check_count("batch_size", batch_size)
    arrays, names = Minibatches().batch(x, None)[0], argument_names(x)
    arrays = tuple(a if a.dtype.kind in "iub" else a.astype(jnp.result_type(float)) for a in arrays)
    n = len(arrays[0])
    size = min(batch_size, n)
    sizes = _datapoint_sizes(rng_key, model, guide, *_split(arrays, names, 0, 1))
    if sizes and (sizes != {n} or batch_size < n):
        raise ConfigError(
            f"the guide has one parameter per datapoint (e.g. AutoNormal) for {sorted(sizes)} "
            f"rows; evaluate it on exactly those rows in one batch (batch_size >= {n}), or use "
            "an amortized guide"
        )

    def estimate(key, batch):
        args, kwargs = _split(batch, names, 0, size)
        return log_marginal_likelihood(
            key, model, guide, *args, num_samples=num_samples, chunk_size=chunk_size, **kwargs
        )

    estimate = jax.jit(estimate)
    out = []
    starts = range(0, n, size)
    for b, start in enumerate(tqdm(starts, desc="log p(x)", disable=not progress)):
        batch = tuple(a[start : start + size] for a in arrays)
        m = len(batch[0])
        if m < size:
            batch = tuple(np.concatenate([a, np.repeat(a[-1:], size - m, axis=0)]) for a in batch)
        try:
            lml = np.asarray(estimate(jax.random.fold_in(rng_key, b), batch))[:m]
        except Exception as error:
            if sizes and not isinstance(error, PPGenError):
                raise ConfigError(_DATAPOINT_PLATE) from None
            raise
        if not np.all(np.isfinite(lml)):  # say why when it is the data
            check_observed_support(model, *_split(batch, names, 0, size))
        out.append(lml)
    return np.concatenate(out)


_DATAPOINT_PLATE = (
    "the guide has one parameter per datapoint (e.g. AutoNormal) and its 'data' plate was "
    "built for another batch layout (an autoguide keeps its first call's subsample size); "
    "evaluate it with Trainer.evaluate on its training data, or use an amortized guide"
)


def _split(arrays: tuple, names: tuple[str, ...] | None, start: int, stop: int):
    """Rows ``start:stop`` as the pair's positional and keyword arguments."""
    rows = tuple(jnp.asarray(a[start:stop]) for a in arrays)
    return (rows, {}) if names is None else ((), dict(zip(names, rows, strict=True)))


def _datapoint_sizes(rng_key: jax.Array, model: Callable, guide: Callable, args, kwargs):
    """Plate sizes of the guide's per-datapoint parameters, from one shape-only run."""
    sites: list[dict] = []

    def run() -> None:
        with handlers.block():
            trace = handlers.trace(handlers.seed(guide, rng_key)).get_trace(*args, **kwargs)
        sites.extend(s for s in trace.values() if s["type"] == "param")

    try:
        jax.eval_shape(run)
    except Exception:  # noqa: BLE001 - the estimate reports the real error
        return set()
    return datapoint_param_sizes(sites)
