"""Autoregressive densities ``p(x) = prod_i p(x_i | x_<i)``: the per-dimension conditional
families, the distribution that scores every conditional in one pass and draws one
dimension at a time, and the model-guide pair (mirrors :mod:`ppgen.models.numpyro.ar`).

A model of this family is a *network* (FVSBN, NADE, MADE, PixelCNN, WaveNet, char-RNN)
whose output ``params[..., i, :]`` depends only on the inputs before ``i`` in its
``order``, read through a *head*: the distribution of one dimension given its parameters.
:class:`AutoregressiveDistribution` is a Pyro ``TorchDistribution`` built from the two, so
it composes (a VAE's decoder likelihood, a prior over discrete latents, a site in a user's
model); :class:`AutoregressiveDensity` is ppgen's model-guide pair around it (empty guide:
ppgen's objectives and estimators give the exact ``log p(x)``).

The network protocol (each model file implements it; see docs/ARCHITECTURE.md):

- ``event_shape`` (a tuple, or ``None`` for sequence models taking any length ``T``),
  ``num_params``, ``order`` (flat event positions in sampling order);
- ``net(x, context=None) -> (*batch, *event, num_params)``: teacher-forced, one pass;
- ``net.sample(noise, head, context=None, cached=True, prefix=None) -> x``: one dimension
  at a time, dimension ``i`` drawn as ``head.draw(params_i, noise[..., i, ...])``;
  ``cached=False`` re-evaluates the whole network per dimension (the reference), ``True``
  carries the network's state; both give the same ``x`` for the same noise;
- ``net.plated(x, head, context=None)``: the same model as one sample site ``x_{i}`` per
  dimension, written as the paper writes it;
- ``get_weights()`` / ``set_weights(weights)`` with torch-style keys.

Every head draws from uniform noise in ``(0, 1)`` (Gumbel and logistic draws are made from
it), so samplers, caches and the two backends can be compared on the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch.distributions import constraints

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import check_length
from ppgen.models.pyro.base import LatentVariableModel
from ppgen.models.pyro.params import local_method, local_module

__all__ = [
    "AutoregressiveDensity",
    "AutoregressiveDistribution",
    "Bernoulli",
    "Categorical",
    "DiscretizedLogisticMixture",
    "DiscretizedMixLogistic",
    "context_batch_shape",
    "naive_sample",
    "plated_conditionals",
    "uniform_noise",
]

_LOG_SCALE_MIN = -7.0  # PixelCNN++'s floor on the logistic log-scales


def uniform_noise(shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform draws in the open interval ``(0, 1)`` of ``shape`` from torch's global
    generator (the noise every head consumes; the smallest normal float stands in for 0, so
    logs stay finite)."""
    dtype = dtype or torch.get_default_dtype()
    return torch.rand(shape, dtype=dtype).clamp_min(torch.finfo(dtype).tiny)


def _validating(validate: bool | None) -> bool:
    """Whether to check values: ``validate``, or Pyro's distribution validation when None."""
    return dist.is_validation_enabled() if validate is None else bool(validate)


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u))


class Bernoulli:
    """One binary dimension: ``x_i ~ Bernoulli(sigmoid(params[..., 0]))`` (values 0./1.).

    A draw from uniform noise ``u`` is ``1[u < sigmoid(logit)]``.
    """

    num_params = 1
    noise_shape: tuple[int, ...] = ()
    name = "bernoulli"

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        """``Bernoulli(logits=params[..., 0])``, batch shape ``params.shape[:-1]``."""
        return dist.Bernoulli(logits=params[..., 0])

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | params_i)`` in nats, shape ``params.shape[:-1]``."""
        logits = params[..., 0]
        return -F.softplus(torch.where(x > 0.5, -logits, logits))

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``1[u < sigmoid(logit)]`` as floats, shape ``params.shape[:-1]``."""
        return (noise < torch.sigmoid(params[..., 0])).to(params.dtype)

    def values(self, x: torch.Tensor, validate: bool | None = None) -> torch.Tensor:
        """``x`` as this head's values: floats, which must be 0 or 1.

        The values are checked (:meth:`check_values`, one pass over ``x``) while Pyro's
        distribution validation is on, as ``ppgen.models.pyro.base.check_x`` checks them
        (``validate=None``; ``True``/``False`` decides for this call): the trainer turns it
        off after each epoch's first step.

        Raises:
            DataError: Values other than 0 and 1 (when checked).
        """
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        if _validating(validate):
            self.check_values(x)
        return x

    def check_values(self, x: torch.Tensor) -> None:
        """Refuse values other than 0 and 1 (NaN included).

        Raises:
            DataError: Values other than 0 and 1.
        """
        if torch.any((x != 0) & (x != 1)):
            raise DataError(
                "a Bernoulli autoregressive model needs binary x (0 or 1); binarize the data "
                "(--binarize static or dynamic)"
            )

    @property
    def support(self) -> constraints.Constraint:
        return constraints.boolean


class Categorical:
    """One discrete dimension with ``num_classes`` values: ``x_i ~ Categorical(logits)``,
    ``params[..., :K]`` the logits (values: integer codes ``0..K-1``).

    A draw from uniform noise ``u (K,)`` is the Gumbel-max ``argmax(logits - log(-log u))``.

    Raises:
        ConfigError: ``num_classes < 2``.
    """

    name = "categorical"

    def __init__(self, num_classes: int) -> None:
        if not (isinstance(num_classes, int | np.integer) and num_classes >= 2):
            raise ConfigError(f"a categorical head needs num_classes >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.num_params = self.num_classes
        self.noise_shape = (self.num_classes,)

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        """``Categorical(logits=params)``, batch shape ``params.shape[:-1]``."""
        return dist.Categorical(logits=params)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | params_i)`` in nats, shape ``params.shape[:-1]``."""
        logp = torch.log_softmax(params, dim=-1)
        return torch.gather(logp, -1, x[..., None].long())[..., 0]

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The Gumbel-max draw, int64 codes of shape ``params.shape[:-1]``."""
        return torch.argmax(params + _gumbel(noise), dim=-1)

    def values(self, x: torch.Tensor, validate: bool | None = None) -> torch.Tensor:
        """``x`` as int64 codes; values must be integers in ``[0, K)``, checked as
        :meth:`Bernoulli.values` checks them (while Pyro's validation is on, or as
        ``validate`` says).

        Raises:
            DataError: Values that are not integer codes below ``num_classes`` (when checked).
        """
        if _validating(validate):
            self.check_values(x)
        return x.long()

    def check_values(self, x: torch.Tensor) -> None:
        """Refuse values that are not integer codes in ``[0, K)`` (NaN included).

        Raises:
            DataError: Values that are not integer codes below ``num_classes``.
        """
        if x.numel() and (
            (torch.is_floating_point(x) and torch.any(x != torch.round(x)))
            or x.min() < 0
            or x.max() >= self.num_classes
        ):
            hint = "; 8-bit images: pass the grey levels k (x * 255), not x" if x.max() <= 1 else ""
            fractional = x[x != torch.round(x)] if torch.is_floating_point(x) else x[:0]
            found = (
                f"non-integer values such as {fractional.flatten()[0].item()}"
                if fractional.numel()
                else f"values in [{x.min().item()}, {x.max().item()}]"
            )
            raise DataError(
                f"a {self.num_classes}-way categorical model needs integer codes in "
                f"[0, {self.num_classes}), got {found}" + hint
            )

    @property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_classes - 1)


def _log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(a) - sigmoid(b))`` for ``a > b``, without cancellation:
    ``log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a))``."""
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))


class DiscretizedMixLogistic(dist.TorchDistribution):
    """A mixture of ``M`` logistics discretised to ``levels`` integer codes (Salimans et
    al. 2017, PixelCNN++, eq. 2): code ``k`` is the interval of width ``2 / (levels - 1)``
    around ``2 k / (levels - 1) - 1`` in ``[-1, 1]``; the edge codes take the tails.

    Args:
        logit_weights, means, log_scales: ``(*batch, M)`` each; log-scales are floored at
            -7 as in PixelCNN++.
        levels: Number of codes (256 for 8-bit pixels).

    The log-probability of an interior code is computed exactly as
    ``log(sigmoid(a) - sigmoid(b))`` (no density approximation for tiny intervals).
    """

    arg_constraints = {
        "logit_weights": constraints.real_vector,
        "means": constraints.real_vector,
        "log_scales": constraints.real_vector,
    }

    def __init__(
        self,
        logit_weights: torch.Tensor,
        means: torch.Tensor,
        log_scales: torch.Tensor,
        levels: int = 256,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.logit_weights, self.means = logit_weights, means
        self.log_scales = log_scales.clamp_min(_LOG_SCALE_MIN)
        self.levels = int(levels)
        super().__init__(logit_weights.shape[:-1], torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.levels - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        k = value[..., None].to(self.means.dtype)
        half = 1.0 / (self.levels - 1)
        centred = 2.0 * half * k - 1.0 - self.means
        inv_scale = torch.exp(-self.log_scales)
        upper, lower = inv_scale * (centred + half), inv_scale * (centred - half)
        interior = _log_sigmoid_difference(upper, lower)
        log_p = torch.where(
            k <= 0,
            F.logsigmoid(upper),
            torch.where(k >= self.levels - 1, F.logsigmoid(-lower), interior),
        )
        return torch.logsumexp(torch.log_softmax(self.logit_weights, -1) + log_p, dim=-1)

    def draw(self, noise: torch.Tensor) -> torch.Tensor:
        """A code from uniform noise ``(*batch, M + 1)``: the component by Gumbel-max on the
        first ``M``, the logistic by inverting its CDF at the last; int64."""
        m = self.logit_weights.shape[-1]
        comp = torch.argmax(self.logit_weights + _gumbel(noise[..., :m]), dim=-1)[..., None]
        mean = torch.gather(self.means, -1, comp)[..., 0]
        log_scale = torch.gather(self.log_scales, -1, comp)[..., 0]
        u = noise[..., m]
        x = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        k = torch.round((x + 1.0) * (self.levels - 1) / 2.0)
        return k.clamp(0, self.levels - 1).long()

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        m = self.logit_weights.shape[-1]
        shape = (*sample_shape, *self.batch_shape, m + 1)
        with torch.no_grad():
            return self.draw(uniform_noise(shape, self.means.dtype))


class DiscretizedLogisticMixture(Categorical):
    """One 8-bit dimension as a discretised mixture of ``num_components`` logistics
    (PixelCNN++): ``params`` are ``[logit weights, means, log-scales]``, ``3 M`` numbers.

    Raises:
        ConfigError: ``num_components < 1`` or ``levels < 2``.
    """

    name = "logistic_mixture"

    def __init__(self, num_components: int, levels: int = 256) -> None:
        if not (isinstance(num_components, int | np.integer) and num_components >= 1):
            raise ConfigError(f"a logistic mixture needs >= 1 component, got {num_components!r}")
        super().__init__(levels)
        self.num_components = int(num_components)
        self.num_params = 3 * self.num_components
        self.noise_shape = (self.num_components + 1,)

    def distribution(self, params: torch.Tensor) -> DiscretizedMixLogistic:
        """The :class:`DiscretizedMixLogistic` mixture, batch shape ``params.shape[:-1]``."""
        w, mean, log_scale = torch.chunk(params, 3, dim=-1)
        return DiscretizedMixLogistic(w, mean, log_scale, self.num_classes)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).log_prob(x)

    def draw(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).draw(noise)


Head = Bernoulli | Categorical


def _check_head(net: Any, head: Head) -> None:
    if head.num_params != net.num_params:
        raise ConfigError(
            f"the {head.name} head takes {head.num_params} parameters per dimension but "
            f"the network gives {net.num_params}; build the network with "
            f"num_params={head.num_params}"
        )


def context_batch_shape(net: Any, context: Any) -> tuple[int, ...]:
    """The batch shape ``context`` stands for: ``()`` without one, what the network says
    when it has a ``context_batch_shape`` method (e.g. WaveNet's local features ``(*batch,
    T, local_dim)`` or its ``(global, local)`` pair), else ``context.shape[:-1]``."""
    if context is None:
        return ()
    if hasattr(net, "context_batch_shape"):
        return tuple(net.context_batch_shape(context))
    return tuple(context.shape[:-1])


def _tree_map(fn: Any, context: Any) -> Any:
    """``fn`` on every tensor of a context (``None``, a tensor, or a tuple/list of them)."""
    if context is None:
        return None
    if isinstance(context, tuple | list):
        return type(context)(_tree_map(fn, c) for c in context)
    return fn(context)


class AutoregressiveDistribution(dist.TorchDistribution):
    """``p(x) = prod_i head(x_i | net(x)[..., i, :])``: every conditional scored in one
    teacher-forced pass of ``net``, draws made one dimension at a time by ``net.sample``.

    Args:
        net: A network of the autoregressive protocol (module docstring).
        head: The family of one dimension (:class:`Bernoulli`, :class:`Categorical`,
            :class:`DiscretizedLogisticMixture`) with ``head.num_params == net.num_params``.
        context: What the network is conditioned on (``(*batch, context_dim)``), or ``None``.
        length: Events ``(length,)`` of a sequence network (``net.event_shape is None``).
        batch_shape: The batch shape (default: :func:`context_batch_shape`).
        cached: Draw with the network's cached sampler (``False``: the naive one).
        forward: What computes the parameters in :meth:`log_prob` (default ``net``; a model
            passes the network's param-site view so that substituted parameters count).

    Raises:
        ConfigError: A head whose parameter count differs from the network's, or a sequence
            network without ``length``.
    """

    arg_constraints: dict[str, Any] = {}
    has_rsample = False

    def __init__(
        self,
        net: Any,
        head: Head,
        context: Any = None,
        length: int | None = None,
        batch_shape: tuple[int, ...] | None = None,
        cached: bool = True,
        forward: Any = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        _check_head(net, head)
        if net.event_shape is None:
            if length is None:
                raise ConfigError("a sequence model needs the sequence length (length=T)")
            event_shape = (check_length(length),)
        else:
            event_shape = tuple(net.event_shape)
        if batch_shape is None:
            batch_shape = context_batch_shape(net, context)
        self.net, self.head, self.context, self.cached = net, head, context, bool(cached)
        self.forward = net if forward is None else forward
        super().__init__(
            torch.Size(batch_shape), torch.Size(event_shape), validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=True)
    def support(self) -> constraints.Constraint:
        return constraints.independent(self.head.support, len(self.event_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` in nats, summed over the event: shape ``(*batch)``. The values are
        checked against the head's support when this distribution validates (torch's
        ``validate_args``, by default Pyro's validation flag).

        Raises:
            DataError: Values outside the head's support (when validating).
        """
        value = self.head.values(value, validate=self._validate_args)
        log_p = self.head.log_prob(self.forward(value, self.context), value)
        return log_p.sum(dim=tuple(range(-len(self.event_shape), 0)))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """``(*sample_shape, *batch, *event)`` draws, one dimension at a time (torch's
        global generator)."""
        shape = (*sample_shape, *self.batch_shape, *self.event_shape)
        dtype = next(self.net.parameters()).dtype
        context = _tree_map(lambda c: c.expand(*sample_shape, *c.shape), self.context)
        with torch.no_grad():
            noise = uniform_noise((*shape, *self.head.noise_shape), dtype)
            return self.net.sample(noise, self.head, context, cached=self.cached)


class AutoregressiveDensity(LatentVariableModel):
    """An autoregressive density as a model-guide pair: ``x ~ AutoregressiveDistribution(
    net, head)`` observed at site ``"x"`` in the ``"data"`` plate, and an empty guide.

    Rows are flat, ``(batch, D)`` with ``D = prod(event_shape)`` (``(batch, T)`` for a
    sequence network); the network's parameters are the param sites ``net$$$<name>``, its
    weights ``net.<name>`` (``get_weights``, ``set_weights`` and ``bind`` as every ppgen
    model's). With no latent site, ppgen's ELBO, IWAE and log-likelihood
    estimator give the exact ``log p(x)``.

    Args:
        net: A network of the autoregressive protocol (a ``torch.nn.Module``).
        head: Its head.

    Raises:
        ConfigError: A head that does not fit the network.
    """

    def __init__(self, net: Any, head: Head) -> None:
        super().__init__()
        _check_head(net, head)
        self.net, self.head = net, head
        self.event_shape = None if net.event_shape is None else tuple(net.event_shape)
        self.x_dim = None if self.event_shape is None else math.prod(self.event_shape)

    # -- rows and events ----------------------------------------------------------------

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the head's values: its type and shape always checked, its values (finite,
        in the head's support) while Pyro's validation is on, as ``check_x`` does; the
        distributions this model builds then skip the check (``validate_args=False``), so it
        runs once per call."""
        if not torch.is_tensor(x):
            raise DataError(
                f"x must be a torch tensor, got {type(x).__name__}; convert it once with "
                "torch.as_tensor(x)"
            )
        if x.dim() != 2 or (self.x_dim is not None and x.shape[1] != self.x_dim):
            want = f"(batch, {self.x_dim})" if self.x_dim is not None else "(batch, T)"
            raise DataError(
                f"x has shape {tuple(x.shape)} but this model needs {want}"
                + (f": rows of the flattened {self.event_shape} events" if self.x_dim else "")
            )
        if not dist.is_validation_enabled():
            return self.head.values(x, validate=False)
        if torch.is_floating_point(x) and not torch.isfinite(x).all():
            raise DataError("x contains NaN or Inf; drop or impute those examples first")
        return self.head.values(x, validate=True)

    def _events(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.event_shape is None else x.reshape(*x.shape[:-1], *self.event_shape)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if self.event_shape is None:
            return x
        return x.reshape(*x.shape[: x.dim() - len(self.event_shape)], -1)

    def distribution(
        self, net: Any = None, context: Any = None, length: int | None = None, **kw: Any
    ) -> AutoregressiveDistribution:
        """The :class:`AutoregressiveDistribution` of ``net`` (default: this model's)."""
        return AutoregressiveDistribution(
            self.net if net is None else net, self.head, context, length, **kw
        )

    # -- model and guide ----------------------------------------------------------------

    def model(self, x: torch.Tensor, context: Any = None, num_data: int | None = None) -> None:
        """Observe the rows ``x (batch, D)`` (given ``context``) in the ``"data"`` plate,
        scaled by ``num_data / batch``.

        Raises:
            DataError: ``x`` of the wrong shape, holding NaN/Inf, or values outside the
                head's support.
        """
        x = self._check(x)
        forward = self._forward()
        with self._plate(x, num_data):
            d = self.distribution(
                None,
                context,
                x.shape[1],
                batch_shape=(len(x),),
                forward=forward,
                validate_args=False,
            )
            pyro.sample("x", d, obs=self._events(x))

    def _forward(self) -> Any:
        """The network as the model's param sites hold it (a functional view when a handler
        substituted them) and, for a network with several mask sets (MADE's ``num_masks >
        1``), with one set drawn from torch's generator per call: order- and
        connectivity-agnostic training (Germain et al. 2015, section 4.2)."""
        view = local_module("net", self.net)
        kwargs: dict[str, Any] = {}
        if getattr(self.net, "num_masks", 1) > 1:
            kwargs["mask_index"] = int(torch.randint(self.net.num_masks, ()))

        def forward(x: torch.Tensor, context: Any) -> torch.Tensor:
            if view is self.net:
                return self.net(x, context, **kwargs)
            return view((x, context), kwargs)  # torch.func.functional_call's (args, kwargs)

        return forward

    def guide(self, x: torch.Tensor, context: Any = None, num_data: int | None = None) -> None:
        """No latent sites: the model's ``log p(x)`` is exact."""

    def plated_model(self, x: torch.Tensor, context: Any = None, num_data: int | None = None):
        """The same model as one sample site ``x_{i}`` per dimension (the network's
        ``plated`` form, as its paper writes it), in the ``"data"`` plate; the network's
        parameters are the model's param sites, as in :meth:`model` (substituted values
        count)."""
        x = self._check(x)
        plated = local_method("net", self.net, "plated")
        with self._plate(x, num_data):
            plated(self._events(x), self.head, context)

    # -- exact density and samples ------------------------------------------------------

    def log_prob(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Exact ``log p(x)`` in nats per row, ``(batch,)``.

        Raises:
            DataError: as :meth:`model`.
        """
        x = self._check(x)
        d = self.distribution(None, context, x.shape[1], batch_shape=(len(x),), validate_args=False)
        return d.log_prob(self._events(x))

    def sample(
        self,
        num_samples: int,
        context: Any = None,
        length: int | None = None,
        cached: bool = True,
    ) -> torch.Tensor:
        """``num_samples`` rows ``(n, D)`` (``(n, length)`` for a sequence network), one
        dimension at a time (the cached sampler unless ``cached=False``), from torch's
        global generator."""
        d = self.distribution(None, context, length, batch_shape=(int(num_samples),), cached=cached)
        return self._rows(d.sample())


# -- generic pieces a network may use ------------------------------------------------------


def _value_dtype(head: Head, dtype: torch.dtype) -> torch.dtype:
    return dtype if isinstance(head, Bernoulli) else torch.long


def naive_sample(
    net: Any,
    noise: torch.Tensor,
    head: Head,
    context: Any = None,
    order: Any = None,
    start: int = 0,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reference sampler: one full pass of ``net`` per dimension, in ``order``.

    Dimension ``order[k]`` is drawn as ``head.draw(net(x)[..., order[k], :], noise[...,
    order[k], ...])``; what a cached sampler must reproduce exactly.

    Args:
        net: A network of the protocol.
        noise: Uniform noise ``(*batch, *event, *head.noise_shape)``.
        head: The head.
        context: The network's context, or ``None``.
        order: Flat positions in sampling order (default ``net.order``, or left to right
            for a sequence network).
        start: Positions ``order[:start]`` are given (a completion's prefix, taken from
            ``x``) and not drawn.
        x: The events holding the given prefix (``start > 0``).

    Returns:
        ``(*batch, *event)`` draws (float 0/1 for a Bernoulli head, int64 codes otherwise).
    """
    k = len(head.noise_shape)
    if net.event_shape is not None:
        event_shape = tuple(net.event_shape)
    else:
        event_shape = (noise.shape[noise.dim() - k - 1],)
    batch_shape = noise.shape[: noise.dim() - k - len(event_shape)]
    d = math.prod(event_shape)
    order = list(range(d) if order is None and net.event_shape is None else order or net.order)
    dtype = _value_dtype(head, noise.dtype)
    flat_noise = noise.reshape(*batch_shape, d, *head.noise_shape)
    if x is None:
        flat = torch.zeros((*batch_shape, d), dtype=dtype)
    else:
        flat = x.reshape(*batch_shape, d).to(dtype).clone()
    with torch.no_grad():
        for pos in order[int(start) :]:
            params = net(flat.reshape(*batch_shape, *event_shape), context)
            params = params.reshape(*batch_shape, d, -1)[..., pos, :]
            flat[..., pos] = head.draw(params, flat_noise.select(len(batch_shape), pos)).to(dtype)
    return flat.reshape(*batch_shape, *event_shape)


def plated_conditionals(
    net: Any,
    x: torch.Tensor | None,
    head: Head,
    context: Any = None,
    length: int | None = None,
) -> torch.Tensor:
    """A generic plated form: one site ``x_{i}`` per flat position ``i``, in ``net.order``,
    its parameters from a pass of ``net`` on the values so far (observed ``x``, or the
    draws made so far when ``x`` is ``None``). For networks whose paper has no simpler
    recursion to write; call it inside the ``"data"`` plate.

    Returns:
        The events, observed or drawn.
    """
    event_shape = tuple(net.event_shape) if net.event_shape is not None else (int(length),)
    d = math.prod(event_shape)
    order = range(d) if net.event_shape is None else net.order
    dtype = _value_dtype(head, next(net.parameters()).dtype)
    if x is None:
        flat = None
    else:
        batch = x.shape[: x.dim() - len(event_shape)]
        flat = x.reshape(*batch, d).to(dtype)
    drawn: dict[int, torch.Tensor] = {}
    for pos in order:
        if x is None:  # the draws so far, zeros elsewhere (the network ignores them)
            batch = next(iter(drawn.values())).shape if drawn else ()
            flat = torch.zeros((*batch, d), dtype=dtype)
            for j, v in drawn.items():
                flat[..., j] = v.to(dtype)
        params = net(flat.reshape(*flat.shape[:-1], *event_shape), context)
        params = params.reshape(*params.shape[: params.dim() - 1 - len(event_shape)], d, -1)
        obs = None if x is None else flat[..., pos]
        drawn[pos] = pyro.sample(f"x_{pos}", head.distribution(params[..., pos, :]), obs=obs)
    if x is None:
        flat = torch.stack([drawn[j] for j in range(d)], dim=-1).to(dtype)
    return flat.reshape(*flat.shape[:-1], *event_shape)
