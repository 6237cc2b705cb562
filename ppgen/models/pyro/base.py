"""What every Pyro model of ppgen shares: input checks, the ``"data"`` plate, the observation
model and weights in numpy (mirrors :mod:`ppgen.models.numpyro.base`).

A :class:`LatentVariableModel` keeps its parameters as ordinary ``nn.Module`` attributes and
announces them with module-local param statements (:mod:`ppgen.models.pyro.params`), so two
instances never share or clobber parameters. Every Gaussian layer reads a network output as
``[loc, pre_scale]`` on the last axis with ``scale = softplus(pre_scale) + MIN_SCALE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import MIN_SCALE, UNIT_SCALE_RAW, check_likelihood
from ppgen.models.pyro.params import get_weights, local_param, set_weights

__all__ = ["LatentVariableModel", "check_x", "normal_params"]


def normal_params(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A network output ``[loc, pre]``, ``(..., 2 d)``, as the Gaussian parameters
    ``(loc, softplus(pre) + MIN_SCALE)``, each ``(..., d)``."""
    loc, pre = out.chunk(2, dim=-1)
    return loc, softplus(pre) + MIN_SCALE


def check_x(x: torch.Tensor, x_dim: int, support: str = "real") -> torch.Tensor:
    """Return ``x`` if it is a ``(batch, x_dim)`` tensor of finite values in ``support``.

    The values (a pass over ``x``) are checked while Pyro's distribution validation is on
    (the default; ``pyro.enable_validation(False)`` skips them, as it skips Pyro's own
    checks); the type and shape always.

    Args:
        x: The data, a torch tensor (numpy arrays are refused: convert them once, not per
            call, e.g. with ``torch.as_tensor``).
        x_dim: Features per example.
        support: ``"real"`` (finite), ``"binary"`` (0 or 1: a Bernoulli likelihood's data) or
            ``"unit_interval"`` (in [0, 1]: grey values a Bernoulli cross-entropy scores).

    Raises:
        DataError: ``x`` is not a tensor, has another shape, or values outside ``support``.
    """
    if not torch.is_tensor(x):
        raise DataError(
            f"x must be a torch.Tensor, got {type(x).__name__}; "
            "convert with torch.as_tensor(x, dtype=torch.get_default_dtype())"
        )
    if x.dim() != 2 or x.shape[-1] != x_dim:
        raise DataError(
            f"x has shape {tuple(x.shape)} but this model needs (batch, {x_dim}); flatten "
            f"each example (x.reshape(len(x), -1)) or build the model with x_dim="
            f"{x.shape[-1] if x.dim() else '...'}"
        )
    if not dist.is_validation_enabled():
        return x
    if support == "binary":
        # One reduction in the common case; NaN fails both comparisons, so it lands here too.
        if ((x != 0) & (x != 1)).any():
            if torch.isnan(x).any():
                raise DataError("x contains NaN or Inf; drop or impute those examples first")
            raise DataError(
                "a Bernoulli likelihood needs binary x (0 or 1); binarize the data "
                "(e.g. Trainer(..., transform=DynamicBinarization())) or "
                "use likelihood='gaussian'"
            )
        return x
    if not torch.isfinite(x).all():
        raise DataError("x contains NaN or Inf; drop or impute those examples first")
    if support == "unit_interval" and len(x) and (x.min() < 0 or x.max() > 1):
        raise DataError(
            "a Bernoulli likelihood needs x in [0, 1] (binary or grey values); rescale "
            "the data (e.g. x / 255) or use likelihood='gaussian'"
        )
    return x


class LatentVariableModel(nn.Module):
    """Plumbing shared by ppgen's Pyro models: input checks, the ``"data"`` plate, the
    likelihood ``p(x | decoder output)`` and the weights as numpy arrays.

    Subclasses with a decoder call :meth:`_init_likelihood` (which sets ``x_dim``,
    ``likelihood`` and, for a Gaussian, a ``fixed_scale`` or a learned per-feature
    ``decoder_scale_raw``); others set ``x_dim`` and ``likelihood`` themselves.
    """

    x_dim: int
    likelihood: str
    fixed_scale: float | None = None
    # What a Bernoulli model's data may hold (a subclass that scores grey values widens it).
    bernoulli_support = "binary"

    def _init_likelihood(self, x_dim: int, likelihood: str, scale: float | str) -> None:
        self.fixed_scale = check_likelihood(x_dim, likelihood, scale)
        self.x_dim, self.likelihood = int(x_dim), likelihood
        if likelihood == "gaussian" and self.fixed_scale is None:
            self.decoder_scale_raw = nn.Parameter(torch.full((self.x_dim,), UNIT_SCALE_RAW))

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the densities need it: binary for a Bernoulli, finite for a Gaussian."""
        support = self.bernoulli_support if self.likelihood == "bernoulli" else "real"
        return check_x(x, self.x_dim, support)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the networks read it: grey levels too (e.g. data a Bernoulli model was
        trained on with dynamic binarization), finite whatever Pyro's validation says."""
        with pyro.validation_enabled():
            return check_x(x, self.x_dim)

    @staticmethod
    def _plate(x: torch.Tensor, num_data: int | None) -> pyro.plate:
        """The ``"data"`` plate: per-dataset scale ``num_data / len(x)``.

        The minibatch is already a random subsample chosen by the trainer, so we hand the
        plate trivial indices instead of letting it draw ``randperm(num_data)`` every step.
        """
        size = len(x) if num_data is None else int(num_data)
        if size < len(x):
            raise ConfigError(f"num_data={num_data} is smaller than the batch ({len(x)})")
        return pyro.plate("data", size, subsample=torch.arange(len(x)))

    def _observation(self, out: torch.Tensor) -> dist.Distribution:
        """p(x | decoder output): Bernoulli(logits) or Normal(mean, scale), one event."""
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if self.fixed_scale is not None:
            scale = torch.full_like(out, self.fixed_scale)
        else:
            raw = local_param("decoder_scale_raw", self.decoder_scale_raw)
            scale = (softplus(raw) + MIN_SCALE).expand_as(out)
        return dist.Normal(out, scale).to_event(1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x | decoder output]: Bernoulli probabilities or the Gaussian mean."""
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy, keyed by its ``state_dict`` name (torch layout:
        ``Linear`` weight is ``(out, in)``, e.g. ``encoder.layers.0.weight``)."""
        return get_weights(self)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Copy ``weights`` (keys and shapes as :meth:`get_weights`) into this model.

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        set_weights(self, weights)

    def bind(self, params: Mapping[str, torch.Tensor | np.ndarray]) -> Self:
        """Copy ``params`` (``Trainer.params(state)`` or :meth:`get_weights`) in; return self.

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        set_weights(self, params)
        return self
