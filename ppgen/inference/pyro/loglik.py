"""Per-datapoint importance weights and the importance-sampled marginal likelihood.

For a model ``p(x, z)`` and a guide ``q(z | x)`` the log weight of ``z ~ q`` is
``log w = log p(x, z) - log q(z | x)``; ``E_q[w] = p(x)``, so

    log p(x) ~= log (1/K) sum_k w_k,     z_k ~ q(z | x),

a stochastic lower bound that tightens as K grows (Burda et al. 2015, *Importance Weighted
Autoencoders*). Every function works on any Pyro model/guide pair whose per-datapoint sites
lie in a plate named ``"data"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from ppgen.errors import ConfigError, DataError
from ppgen.inference.pyro.handlers import guess_max_plate_nesting, traces

__all__ = ["evaluate_log_likelihood", "log_marginal_likelihood", "log_weights", "to_tensor"]

DATA = "data"


def to_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a 2-D ``dtype`` tensor, never written to.

    A writable numpy array of the right dtype is shared, not copied (an epoch of MNIST is
    190 MB); other arrays are copied, so read-only ones (memory maps) are never exposed to
    torch.

    Raises:
        DataError: ``x`` is not a numeric 2-D array.
    """
    if not torch.is_tensor(x):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"x must be a numeric array, got dtype {x.dtype}")
        want = torch.empty((), dtype=dtype).numpy().dtype
        if x.dtype != want or not x.flags.writeable:
            x = np.array(x, dtype=want)
        x = torch.from_numpy(x)
    if x.dim() != 2:
        raise DataError(
            f"x has shape {tuple(x.shape)}; pass a 2-D array (examples, features), "
            "e.g. x.reshape(len(x), -1)"
        )
    return x.to(dtype)


def _data_frame(site: Message) -> CondIndepStackFrame | None:
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA:
            return frame
    return None


def _per_datapoint(site: Message, particle_dim: int | None) -> torch.Tensor:
    """Unscaled ``log p`` of one site reduced to ``(particles or 1, batch or 1)``.

    Sums over every dim but the particle and ``"data"`` dims, and divides the data plate's
    subsample scale ``num_data / batch`` out of the site's scale (other scales are kept).
    """
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    frame = _data_frame(site)
    scale = site["scale"]
    if frame is not None and frame.full_size is not None and frame.full_size != frame.size:
        scale = scale * frame.size / frame.full_size
    log_p = scale_and_mask(log_p, scale, site["mask"])
    if not torch.is_tensor(log_p) or log_p.dim() == 0:
        return torch.as_tensor(log_p).reshape(1, 1)
    n = log_p.dim()
    keep = [d for d in (particle_dim, frame.dim if frame else None) if d is not None and -d <= n]
    keep_axes = [n + d for d in keep]
    summed = [a for a in range(n) if a not in keep_axes]
    if summed:
        log_p = log_p.sum(summed)  # (particles?, batch?) in that order
    if particle_dim is None or particle_dim not in keep:
        log_p = log_p.unsqueeze(0)
    if frame is None or frame.dim not in keep:
        log_p = log_p.unsqueeze(-1)
    return log_p


def _log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    max_plate_nesting: int | None = None,
) -> tuple[torch.Tensor, float]:
    """``(log_w (num_particles, batch), num_data / batch)``; see :func:`log_weights`."""
    model_trace, guide_trace, particle_dim = traces(
        model, guide, args, kwargs, num_particles, max_plate_nesting
    )
    frames = _check_sites(model_trace, guide_trace)
    log_w = 0.0
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_w = log_w + sign * _per_datapoint(site, particle_dim)
    batch = frames[0].size if frames else 1
    log_w = torch.as_tensor(log_w).expand(num_particles, batch)
    scale = frames[0].full_size / frames[0].size if frames else 1.0
    return log_w, scale


def _check_sites(model_trace: Trace, guide_trace: Trace) -> list[CondIndepStackFrame]:
    """The ``"data"`` frames of all sample sites; ConfigError if some site lies outside."""
    frames, outside = [], []
    for trace in (model_trace, guide_trace):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            frame = _data_frame(site)
            if frame is None:
                outside.append(name)
            else:
                frames.append(frame)
    if frames and outside:
        raise ConfigError(
            f"sample sites {sorted(set(outside))} lie outside the 'data' plate; per-datapoint "
            "weights need every site of model and guide inside pyro.plate('data', ...)"
        )
    return frames


def log_weights(
    model: Callable, guide: Callable, *args: Any, num_particles: int = 1, **kwargs: Any
) -> torch.Tensor:
    """Per-datapoint log importance weights ``log p(x_i, z) - log q(z | x_i)``, ``z ~ q``.

    The particles are drawn in one vectorised pass (an outer ``pyro.plate("particles")``).
    The values are per datapoint: the ``"data"`` plate's subsample scale is divided out.
    Conditioning the guide on latent values (``poutine.condition``, each shaped
    ``(num_particles, batch, ...)``) makes the weights deterministic.

    Args:
        model: A Pyro model; ``*args, **kwargs`` are passed to it and to ``guide``.
        guide: A Pyro guide over the model's latent sites.
        num_particles: K, the number of draws ``z ~ q``.

    Returns:
        ``(num_particles, batch)``; ``batch`` is 1 for a model without a ``"data"`` plate.

    Raises:
        ConfigError: A sample site lies outside the ``"data"`` plate while others are inside.
    """
    if num_particles < 1:
        raise ConfigError(f"num_particles must be >= 1, got {num_particles}")
    return _log_weights(model, guide, args, kwargs, int(num_particles))[0]


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 5000,
    chunk_size: int = 500,
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-sampled ``log p(x_i) ~= logmeanexp_k log w_k``, ``(batch,)``.

    The ``num_samples`` weights are drawn ``chunk_size`` at a time and folded into a running
    ``logsumexp`` under ``torch.no_grad()``, so memory is bounded by one chunk.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ConfigError(
            f"num_samples and chunk_size must be >= 1, got {num_samples}, {chunk_size}"
        )
    with torch.no_grad():
        nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        total, remaining = None, int(num_samples)
        while remaining > 0:
            k = min(int(chunk_size), remaining)
            log_w, _ = _log_weights(model, guide, args, kwargs, k, nesting)
            lse = torch.logsumexp(log_w, dim=0)  # (batch,)
            total = lse if total is None else torch.logaddexp(total, lse)
            remaining -= k
    return total - math.log(num_samples)


def evaluate_log_likelihood(
    model: Callable,
    guide: Callable,
    x: np.ndarray | torch.Tensor,
    *,
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int = 500,
    progress: bool = False,
) -> np.ndarray:
    """:func:`log_marginal_likelihood` of every row of ``x``, ``batch_size`` rows at a time.

    Returns:
        ``log p(x_i)`` estimates in nats, float64 ``(N,)``.
    """
    x = to_tensor(x, torch.get_default_dtype())
    if len(x) == 0:
        raise DataError(f"x must hold at least one example, got shape {tuple(x.shape)}")
    out = []
    for start in tqdm(range(0, len(x), batch_size), disable=not progress, desc="log p(x)"):
        batch = x[start : start + batch_size]
        lml = log_marginal_likelihood(
            model, guide, batch, num_samples=num_samples, chunk_size=chunk_size
        )
        out.append(lml.double().cpu().numpy())
    return np.concatenate(out)
