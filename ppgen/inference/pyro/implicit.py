"""Samples of an implicit model: what the likelihood-free objectives read from a model program
(mirrors :mod:`ppgen.inference.numpyro.implicit`).

A generator is an ordinary model program ``model(x, ...)``: latents drawn inside the
``"data"`` plate, and the site ``"x"`` a deterministic function of them
(``pyro.deterministic("x", G(z), event_dim=...)``), or an observed site whose distribution
can draw reparameterised samples (a flow's ``TransformedDistribution``, a ``Delta``, a
``Normal`` around ``G(z)``): its density is never asked for. The data ``x`` the model is
called with is the batch the samples are compared with, so both have the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

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

    x: torch.Tensor
    data: torch.Tensor
    conditions: tuple[torch.Tensor, ...]
    latents: tuple[torch.Tensor, ...]
    num_data: float


def _site_value(trace: poutine.Trace, name: str) -> torch.Tensor:
    """The sample a site holds: a deterministic value, a latent's draw, or a fresh
    reparameterised draw from an observed site's distribution."""
    site = trace.nodes[name]
    if site["type"] != "sample":
        raise ConfigError(f"site {name!r} is a {site['type']} site, not a sample of the model")
    if site["infer"].get("_deterministic"):
        return site["value"]
    fn = site["fn"]
    if not getattr(fn, "has_rsample", False):
        raise ConfigError(
            f"site {name!r} ({type(getattr(fn, 'base_dist', fn)).__name__}) has no "
            "reparameterised sampler, so no "
            f"gradient reaches the generator; make it pyro.deterministic({name!r}, G(z))"
        )
    if site["is_observed"]:
        return fn.rsample()
    return site["value"]


def model_samples(
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
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    for name in (site, *conditions, *latents):
        if name not in trace.nodes:
            shown = ", ".join(
                n for n, s in trace.nodes.items()
                if s["type"] == "sample" and n != DATA and not n.startswith("_")
            )  # fmt: skip
            raise ConfigError(
                f"the model has no site {name!r} (its sites: {shown}); a generator puts its "
                f"samples in pyro.deterministic({site!r}, G(z))"
            )
    x = _site_value(trace, site)
    data = args[0]
    if not torch.is_tensor(data):
        raise DataError(f"the data batch must be a torch.Tensor, got {type(data).__name__}")
    if x.shape != data.shape:
        raise DataError(
            f"the generator's samples at site {site!r} have shape {tuple(x.shape)} but the "
            f"data batch has shape {tuple(data.shape)}; make G(z) return the data's shape "
            "(one sample per example)"
        )
    # N: the trace's "data" plate's full size, wherever x is (as NumPyro's trace has it)
    plate = trace.nodes.get(DATA)
    num_data = float(len(data))
    if plate is not None and site_is_subsample(plate):
        num_data = float(plate["fn"].size)
    return ModelSamples(
        x=x,
        data=data,
        conditions=tuple(trace.nodes[c]["value"] for c in conditions),
        latents=tuple(trace.nodes[z]["value"] for z in latents),
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
    conditions such as cGAN's labels taken from them) with the state's parameters, torch's
    generator seeded with ``seed`` (and restored after), and returns ``metric(samples,
    x)``, a dict with a ``"loss"`` (lower is better), by which the driver keeps the best
    checkpoint; with data ``(x, y)`` (cGAN's labels) the metric is called as
    ``metric(samples, x, y)`` (mirrors the NumPyro evaluator).

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

    def samples(self, trainer: Any, state: Any, data: Any) -> np.ndarray:
        """One sample per row of ``data``, ``(n, *event)``, in batches of ten training
        batches."""
        parts = _parts(data)
        dtype = next(iter(state.params.values())).dtype
        size = max(1, trainer.batch_size * 10)
        out = []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed)
            for start in range(0, len(parts[0]), size):
                rows = tuple(
                    torch.as_tensor(a[start : start + size]).to(
                        torch.long if np.issubdtype(a.dtype, np.integer) else dtype
                    )
                    for a in parts
                )
                out.append(model_samples(trainer.model, rows, {}, site=self.site).x.numpy())
        return np.concatenate(out)

    def __call__(self, trainer: Any, state: Any, data: Any) -> dict[str, float]:
        values = self.metric(self.samples(trainer, state, data), *_parts(data))
        return {k: float(v) for k, v in values.items()}
