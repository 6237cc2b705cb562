"""Samples of an implicit model: what the likelihood-free objectives read from a model program
(mirrors :mod:`ppgen.inference.pyro.implicit`).

A generator is an ordinary model program ``model(x, ...)``: latents drawn inside the
``"data"`` plate, and the site ``"x"`` a deterministic function of them
(``numpyro.deterministic("x", G(z))``), or an observed site whose distribution can draw
reparameterised samples (a flow's ``TransformedDistribution``, a ``Delta``, a ``Normal``
around ``G(z)``): its density is never asked for. The data ``x`` the model is called with
is the batch the samples are compared with, so both have the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ppgen.errors import ConfigError, DataError

__all__ = ["ModelSamples", "SampleEvaluator", "model_samples"]

DATA = "data"


class ModelSamples(NamedTuple):
    """One run of a generator on a batch.

    Attributes:
        x: The model's samples at the site read, ``(batch, *event)``.
        data: The batch they are compared with (the model's first argument), same shape.
        conditions: The values of the sites named in ``conditions`` (e.g. cGAN's observed
            labels ``y``), in that order.
        latents: The values of the sites named in ``latents`` (e.g. BiGAN's ``z``).
        num_data: ``N``, the ``"data"`` plate's full size (the batch size without one):
            losses are ``N`` times a batch statistic, per-dataset estimates like the ELBO's.
    """

    x: jax.Array
    data: jax.Array
    conditions: tuple[jax.Array, ...]
    latents: tuple[jax.Array, ...]
    num_data: float


def _site_value(rng_key: jax.Array, trace: dict, name: str) -> jax.Array:
    """The sample a site holds: a deterministic value, a latent's draw, or a fresh
    reparameterised draw from an observed site's distribution."""
    site = trace[name]
    if site["type"] == "deterministic":
        return site["value"]
    if site["type"] != "sample":
        raise ConfigError(f"site {name!r} is a {site['type']} site, not a sample of the model")
    fn = site["fn"]
    if not getattr(fn, "has_rsample", False):
        raise ConfigError(
            f"site {name!r} ({type(getattr(fn, 'base_dist', fn)).__name__}) has no "
            "reparameterised sampler, so no "
            f"gradient reaches the generator; make it numpyro.deterministic({name!r}, G(z))"
        )
    if site["is_observed"]:
        return fn.rsample(rng_key)
    return site["value"]


def model_samples(
    rng_key: jax.Array,
    model: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    *,
    site: str = "x",
    conditions: Sequence[str] = (),
    latents: Sequence[str] = (),
) -> ModelSamples:
    """Run ``model(*args, **kwargs)`` once and read its samples at ``site``.

    Args:
        rng_key: Key of the model's draws.
        model: A generator program (see the module's docstring); its first argument is the
            data batch ``(batch, *event)``.
        args, kwargs: The model's arguments.
        site: The site holding the samples.
        conditions: Observed sites the critic also sees (cGAN's ``"y"``).
        latents: Latent sites read too (BiGAN's ``"z"``).

    Raises:
        ConfigError: The model has no such site, or it cannot give reparameterised samples.
        DataError: The samples' shape differs from the data's.
    """
    if not args:
        raise ConfigError("call the objective with the data batch as the first argument")
    sample_key, draw_key = jax.random.split(rng_key)
    trace = handlers.trace(handlers.seed(model, sample_key)).get_trace(*args, **kwargs)
    for name in (site, *conditions, *latents):
        if name not in trace:
            shown = ", ".join(n for n, s in trace.items() if s["type"] != "plate")
            raise ConfigError(
                f"the model has no site {name!r} (its sites: {shown}); a generator puts its "
                f"samples in numpyro.deterministic({site!r}, G(z))"
            )
    x = _site_value(draw_key, trace, site)
    data = jnp.asarray(args[0])
    if jnp.shape(x) != jnp.shape(data):
        raise DataError(
            f"the generator's samples at site {site!r} have shape {tuple(jnp.shape(x))} but "
            f"the data batch has shape {tuple(jnp.shape(data))}; make G(z) return the data's "
            "shape (one sample per example)"
        )
    plate = trace.get(DATA)
    num_data = float(len(data))
    if plate is not None and plate["type"] == "plate":
        size, subsample_size = plate["args"]
        num_data = float(size) if subsample_size not in (None, size) else num_data
    return ModelSamples(
        x=x,
        data=data,
        conditions=tuple(trace[c]["value"] for c in conditions),
        latents=tuple(trace[z]["value"] for z in latents),
        num_data=num_data,
    )


def _parts(data: Any) -> tuple[np.ndarray, ...]:
    """The model's positional arguments in ``data``: one array, or a tuple (cGAN's ``(x, y)``)."""
    parts = data if isinstance(data, tuple) else (data,)
    return tuple(np.asarray(a) for a in parts)


class SampleEvaluator:
    """A trainer's evaluation for implicit models: a metric of the model's samples against
    the evaluation data, e.g. FID for images or modes covered on the 2-D mixtures.

    ``Trainer(..., evaluator=SampleEvaluator(metric))``: ``evaluate(state, data)`` draws one
    sample per row of ``data`` (the model called on ``data``'s rows in batches, its
    conditions such as cGAN's labels taken from them) with the state's parameters and a
    fixed key, and returns ``metric(samples, x)``, a dict with a ``"loss"`` (lower is
    better), by which the driver keeps the best checkpoint; with data ``(x, y)`` (cGAN's
    labels) the metric is called as ``metric(samples, x, y)``. Sampling is compiled once per
    trainer (mirrors the Pyro evaluator, which seeds torch's generator).

    Args:
        metric: ``metric(samples, x, *rest) -> dict`` on numpy arrays, ``samples`` and ``x``
            ``(n, *event)``, ``rest`` the data's further arrays.
        site: The model's site holding the samples.
        seed: Seed of the evaluation draws (the same every evaluation).
    """

    def __init__(
        self, metric: Callable[..., Mapping[str, float]], *,
        site: str = "x", seed: int = 0,
    ) -> None:  # fmt: skip
        self.metric, self.site, self.seed = metric, site, seed
        self._compiled: dict[int, Callable] = {}

    def _draw_fn(self, trainer: Any) -> Callable:
        if id(trainer) not in self._compiled:

            def draw(state: Any, key: jax.Array, *args: jax.Array) -> jax.Array:
                model = handlers.substitute(trainer.model, data=trainer.params(state))
                return model_samples(key, model, args, {}, site=self.site).x

            self._compiled[id(trainer)] = jax.jit(draw)
        return self._compiled[id(trainer)]

    def samples(self, trainer: Any, state: Any, data: Any) -> np.ndarray:
        """One sample per row of ``data``, ``(n, *event)``, in batches of ten training
        batches."""
        parts = _parts(data)
        fn, size = self._draw_fn(trainer), max(1, trainer.batch_size * 10)
        key = jax.random.PRNGKey(self.seed)
        out = []
        for i, start in enumerate(range(0, len(parts[0]), size)):
            rows = tuple(jnp.asarray(a[start : start + size]) for a in parts)
            out.append(np.asarray(fn(state, jax.random.fold_in(key, i), *rows)))
        return np.concatenate(out)

    def __call__(self, trainer: Any, state: Any, data: Any) -> dict[str, float]:
        values = self.metric(self.samples(trainer, state, data), *_parts(data))
        return {k: float(v) for k, v in values.items()}
