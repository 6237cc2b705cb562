"""Autoregressive densities ``p(x) = prod_i p(x_i | x_<i)``: the per-dimension conditional
families, the distribution that scores every conditional in one pass and draws one
dimension at a time, and the model-guide pair (mirrors :mod:`ppgen.models.pyro.ar`).

A model of this family is a *network* (FVSBN, NADE, MADE, PixelCNN, WaveNet, char-RNN)
whose output ``params[..., i, :]`` depends only on the inputs before ``i`` in its
``order``, read through a *head*: the distribution of one dimension given its parameters.
:class:`AutoregressiveDistribution` is a NumPyro ``Distribution`` built from the two, so it
composes (a VAE's decoder likelihood, a prior over discrete latents, a site in a user's
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

import copy
import math
from collections.abc import Mapping
from typing import Any, Self

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints
from numpyro.util import not_jax_tracer

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import check_length, check_weights

__all__ = [
    "AutoregressiveDensity",
    "AutoregressiveDistribution",
    "Bernoulli",
    "Categorical",
    "DiscretizedMixLogistic",
    "DiscretizedLogisticMixture",
    "context_batch_shape",
    "naive_sample",
    "plated_conditionals",
    "uniform_noise",
]

_LOG_SCALE_MIN = -7.0  # PixelCNN++'s floor on the logistic log-scales


def uniform_noise(rng_key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform draws in the open interval ``(0, 1)`` of ``shape`` (the noise every head
    consumes; the smallest normal float stands in for 0, so logs stay finite)."""
    tiny = jnp.finfo(jnp.result_type(float)).tiny
    return jax.random.uniform(rng_key, shape, minval=tiny, maxval=1.0)


def _validating(validate: bool | None) -> bool:
    """Whether to check values: ``validate``, or NumPyro's distribution validation when None."""
    return bool(dist.Distribution._validate_args) if validate is None else bool(validate)


def _gumbel(u: jax.Array) -> jax.Array:
    return -jnp.log(-jnp.log(u))


class Bernoulli:
    """One binary dimension: ``x_i ~ Bernoulli(sigmoid(params[..., 0]))`` (values 0./1.).

    A draw from uniform noise ``u`` is ``1[u < sigmoid(logit)]``.
    """

    num_params = 1
    noise_shape: tuple[int, ...] = ()
    name = "bernoulli"

    def distribution(self, params: jax.Array) -> dist.Distribution:
        """``Bernoulli(logits=params[..., 0])``, batch shape ``params.shape[:-1]``."""
        return dist.Bernoulli(logits=params[..., 0])

    def log_prob(self, params: jax.Array, x: jax.Array) -> jax.Array:
        """``log p(x_i | params_i)`` in nats, shape ``params.shape[:-1]``."""
        logits = params[..., 0]
        return -jax.nn.softplus(jnp.where(x > 0.5, -logits, logits))

    def draw(self, params: jax.Array, noise: jax.Array) -> jax.Array:
        """``1[u < sigmoid(logit)]`` as floats, shape ``params.shape[:-1]``."""
        return (noise < jax.nn.sigmoid(params[..., 0])).astype(params.dtype)

    def values(self, x: jax.Array, validate: bool | None = None) -> jax.Array:
        """``x`` as this head's values: floats, which must be 0 or 1.

        Concrete values are checked (:meth:`check_values`, one pass over ``x``) while
        NumPyro's distribution validation is on, as ``ppgen.models.numpyro.base.check_x``
        checks them (``validate=None``; ``True``/``False`` decides for this call); traced
        ones (inside ``jit``) never.

        Raises:
            DataError: Values other than 0 and 1 (when checked).
        """
        x = jnp.asarray(x, dtype=jnp.result_type(float))
        if _validating(validate) and not_jax_tracer(x):
            self.check_values(x)
        return x

    def check_values(self, x: jax.Array) -> None:
        """Refuse concrete values other than 0 and 1 (NaN included).

        Raises:
            DataError: Values other than 0 and 1.
        """
        arr = np.asarray(x)
        if np.any((arr != 0) & (arr != 1)):
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

    def distribution(self, params: jax.Array) -> dist.Distribution:
        """``Categorical(logits=params)``, batch shape ``params.shape[:-1]``."""
        return dist.Categorical(logits=params)

    def log_prob(self, params: jax.Array, x: jax.Array) -> jax.Array:
        """``log p(x_i | params_i)`` in nats, shape ``params.shape[:-1]``."""
        logp = jax.nn.log_softmax(params, axis=-1)
        return jnp.take_along_axis(logp, x[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def draw(self, params: jax.Array, noise: jax.Array) -> jax.Array:
        """The Gumbel-max draw, int32 codes of shape ``params.shape[:-1]``."""
        return jnp.argmax(params + _gumbel(noise), axis=-1).astype(jnp.int32)

    def values(self, x: jax.Array, validate: bool | None = None) -> jax.Array:
        """``x`` as int32 codes; values must be integers in ``[0, K)``, checked as
        :meth:`Bernoulli.values` checks them (concrete ones, while NumPyro's validation is
        on, or as ``validate`` says).

        Raises:
            DataError: Values that are not integer codes below ``num_classes`` (when checked).
        """
        if _validating(validate) and not_jax_tracer(x):
            self.check_values(x)
        return jnp.asarray(x).astype(jnp.int32)

    def check_values(self, x: jax.Array) -> None:
        """Refuse concrete values that are not integer codes in ``[0, K)`` (NaN included).

        Raises:
            DataError: Values that are not integer codes below ``num_classes``.
        """
        arr = np.asarray(x)
        if arr.size and (
            np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() >= self.num_classes
        ):
            hint = (
                "; 8-bit images: pass the grey levels k (x * 255), not x" if arr.max() <= 1 else ""
            )
            fractional = arr[arr != np.round(arr)]
            found = (
                f"non-integer values such as {fractional.flat[0]}"
                if fractional.size
                else f"values in [{arr.min()}, {arr.max()}]"
            )
            raise DataError(
                f"a {self.num_classes}-way categorical model needs integer codes in "
                f"[0, {self.num_classes}), got {found}" + hint
            )

    @property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_classes - 1)


def _log_sigmoid_difference(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(sigmoid(a) - sigmoid(b))`` for ``a > b``, without cancellation:
    ``log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a))``."""
    return jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-b) + jnp.log(-jnp.expm1(b - a))


class DiscretizedMixLogistic(dist.Distribution):
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
    pytree_data_fields = ("logit_weights", "means", "log_scales")
    pytree_aux_fields = ("levels",)

    def __init__(
        self,
        logit_weights: jax.Array,
        means: jax.Array,
        log_scales: jax.Array,
        levels: int = 256,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.logit_weights, self.means = logit_weights, means
        self.log_scales = jnp.maximum(log_scales, _LOG_SCALE_MIN)
        self.levels = int(levels)
        batch_shape = jnp.shape(logit_weights)[:-1]
        super().__init__(batch_shape, (), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.levels - 1)

    def log_prob(self, value: jax.Array) -> jax.Array:
        k = jnp.asarray(value)[..., None]
        half = 1.0 / (self.levels - 1)
        centred = 2.0 * half * k - 1.0 - self.means
        inv_scale = jnp.exp(-self.log_scales)
        upper, lower = inv_scale * (centred + half), inv_scale * (centred - half)
        interior = _log_sigmoid_difference(upper, lower)
        log_p = jnp.where(
            k <= 0,
            jax.nn.log_sigmoid(upper),
            jnp.where(k >= self.levels - 1, jax.nn.log_sigmoid(-lower), interior),
        )
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logit_weights, -1) + log_p, axis=-1)

    def draw(self, noise: jax.Array) -> jax.Array:
        """A code from uniform noise ``(*batch, M + 1)``: the component by Gumbel-max on the
        first ``M``, the logistic by inverting its CDF at the last; int32."""
        m = self.logit_weights.shape[-1]
        comp = jnp.argmax(self.logit_weights + _gumbel(noise[..., :m]), axis=-1)[..., None]
        mean = jnp.take_along_axis(self.means, comp, -1)[..., 0]
        log_scale = jnp.take_along_axis(self.log_scales, comp, -1)[..., 0]
        u = noise[..., m]
        x = mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u))
        k = jnp.round((x + 1.0) * (self.levels - 1) / 2.0)
        return jnp.clip(k, 0, self.levels - 1).astype(jnp.int32)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        m = self.logit_weights.shape[-1]
        noise = uniform_noise(key, (*sample_shape, *self.batch_shape, m + 1))
        return self.draw(noise)


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

    def distribution(self, params: jax.Array) -> DiscretizedMixLogistic:
        """The :class:`DiscretizedMixLogistic` mixture, batch shape ``params.shape[:-1]``."""
        w, mean, log_scale = jnp.split(params, 3, axis=-1)
        return DiscretizedMixLogistic(w, mean, log_scale, self.num_classes)

    def log_prob(self, params: jax.Array, x: jax.Array) -> jax.Array:
        return self.distribution(params).log_prob(x)

    def draw(self, params: jax.Array, noise: jax.Array) -> jax.Array:
        return self.distribution(params).draw(noise)


Head = Bernoulli | Categorical


def context_batch_shape(net: Any, context: Any) -> tuple[int, ...]:
    """The batch shape ``context`` stands for: ``()`` without one, what the network says
    when it has a ``context_batch_shape`` method (e.g. WaveNet's local features ``(*batch,
    T, local_dim)`` or its ``(global, local)`` pair), else ``context.shape[:-1]``."""
    if context is None:
        return ()
    if hasattr(net, "context_batch_shape"):
        return tuple(net.context_batch_shape(context))
    return tuple(jnp.shape(context)[:-1])


class AutoregressiveDistribution(dist.Distribution):
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
        forward: What computes the parameters in :meth:`log_prob` (default ``net``; the
            Pyro twin's model passes a param-site view there; NumPyro's ``eqx_module``
            already returns the network holding the site's values).

    Raises:
        ConfigError: A head whose parameter count differs from the network's, or a sequence
            network without ``length``.
    """

    arg_constraints: dict[str, Any] = {}
    pytree_data_fields = ("net", "context", "forward")
    pytree_aux_fields = ("head", "cached")

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
        if head.num_params != net.num_params:
            raise ConfigError(
                f"the {head.name} head takes {head.num_params} parameters per dimension but "
                f"the network gives {net.num_params}; build the network with "
                f"num_params={head.num_params}"
            )
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
        super().__init__(tuple(batch_shape), event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True)
    def support(self) -> constraints.Constraint:
        return constraints.independent(self.head.support, len(self.event_shape))

    def log_prob(self, value: jax.Array) -> jax.Array:
        """``log p(x)`` in nats, summed over the event: shape ``(*batch)``. Concrete values
        are checked against the head's support when this distribution validates (NumPyro's
        ``validate_args``, by default its validation flag).

        Raises:
            DataError: Values outside the head's support (when validating).
        """
        value = self.head.values(value, validate=self._validate_args)
        log_p = self.head.log_prob(self.forward(value, self.context), value)
        return jnp.sum(log_p, axis=tuple(range(-len(self.event_shape), 0)))

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """``(*sample_shape, *batch, *event)`` draws, one dimension at a time."""
        shape = (*sample_shape, *self.batch_shape, *self.event_shape)
        noise = uniform_noise(key, (*shape, *self.head.noise_shape))
        context = jax.tree_util.tree_map(
            lambda c: jnp.broadcast_to(c, (*sample_shape, *jnp.shape(c))), self.context
        )
        return self.net.sample(noise, self.head, context, cached=self.cached)


class AutoregressiveDensity:
    """An autoregressive density as a model-guide pair: ``x ~ AutoregressiveDistribution(
    net, head)`` observed at site ``"x"`` in the ``"data"`` plate, and an empty guide.

    Rows are flat, ``(batch, D)`` with ``D = prod(event_shape)`` (``(batch, T)`` for a
    sequence network); the network is the param site ``"net$params"``, its weights
    ``net.<name>``. With no latent site, ppgen's ELBO, IWAE and log-likelihood estimator
    give the exact ``log p(x)``.

    Args:
        net: A network of the autoregressive protocol.
        head: Its head.

    Raises:
        ConfigError: A head that does not fit the network.
    """

    def __init__(self, net: Any, head: Head) -> None:
        if head.num_params != net.num_params:
            raise ConfigError(
                f"the {head.name} head takes {head.num_params} parameters per dimension but "
                f"the network gives {net.num_params}; build the network with "
                f"num_params={head.num_params}"
            )
        self.net, self.head = net, head
        self.event_shape = None if net.event_shape is None else tuple(net.event_shape)
        self.x_dim = None if self.event_shape is None else math.prod(self.event_shape)

    # -- rows and events ----------------------------------------------------------------

    def _check(self, x: jax.Array) -> jax.Array:
        """``x`` as the head's values: its shape always checked, concrete values finite and
        (while NumPyro's validation is on) in the head's support, as ``check_x`` does; the
        distributions this model builds then skip the check (``validate_args=False``), so it
        runs once per call."""
        shape = jnp.shape(x)
        if len(shape) != 2 or (self.x_dim is not None and shape[1] != self.x_dim):
            want = f"(batch, {self.x_dim})" if self.x_dim is not None else "(batch, T)"
            raise DataError(
                f"x has shape {shape} but this model needs {want}"
                + (f": rows of the flattened {self.event_shape} events" if self.x_dim else "")
            )
        if not_jax_tracer(x) and not np.all(np.isfinite(np.asarray(x, dtype=np.float64))):
            raise DataError("x contains NaN or Inf; drop or impute those examples first")
        return self.head.values(x)  # its support, while validating

    def _events(self, x: jax.Array) -> jax.Array:
        if self.event_shape is None:
            return x
        return jnp.reshape(x, (*jnp.shape(x)[:-1], *self.event_shape))

    def _rows(self, x: jax.Array) -> jax.Array:
        if self.event_shape is None:
            return x
        return jnp.reshape(x, (*jnp.shape(x)[: jnp.ndim(x) - len(self.event_shape)], -1))

    def distribution(
        self, net: Any = None, context: Any = None, length: int | None = None, **kw: Any
    ) -> AutoregressiveDistribution:
        """The :class:`AutoregressiveDistribution` of ``net`` (default: this model's)."""
        return AutoregressiveDistribution(
            self.net if net is None else net, self.head, context, length, **kw
        )

    @staticmethod
    def _plate(x: jax.Array, num_data: int | None) -> numpyro.plate:
        batch = jnp.shape(x)[0]
        size = batch if num_data is None else int(num_data)
        if size < batch:
            raise ConfigError(f"num_data={num_data} is smaller than the batch ({batch})")
        return numpyro.plate("data", size, subsample_size=batch)

    # -- model and guide ----------------------------------------------------------------

    def model(self, x: jax.Array, context: Any = None, num_data: int | None = None) -> None:
        """Observe the rows ``x (batch, D)`` (given ``context``) in the ``"data"`` plate,
        scaled by ``num_data / batch``.

        Raises:
            DataError: ``x`` of the wrong shape, holding NaN/Inf, or values outside the
                head's support.
        """
        x = self._check(x)
        net = eqx_module("net", self.net)
        with self._plate(x, num_data):
            d = self.distribution(
                net,
                context,
                jnp.shape(x)[1],
                batch_shape=(jnp.shape(x)[0],),
                forward=self._forward(net),
                validate_args=False,
            )
            numpyro.sample("x", d, obs=self._events(x))

    def _forward(self, net: Any) -> Any:
        """``net`` and, for a network with several mask sets (MADE's ``num_masks > 1``), one
        set drawn per call from the model's PRNG key (the trainer seeds every step):
        order- and connectivity-agnostic training (Germain et al. 2015, section 4.2).
        Without a key (an unseeded call), the network's active set."""
        if getattr(net, "num_masks", 1) <= 1:
            return net
        key = numpyro.prng_key()
        if key is None:
            return net
        k = jax.random.randint(key, (), 0, net.num_masks)
        return lambda x, context: net(x, context, mask_index=k)

    def guide(self, x: jax.Array, context: Any = None, num_data: int | None = None) -> None:
        """No latent sites: the model's ``log p(x)`` is exact."""

    def plated_model(self, x: jax.Array, context: Any = None, num_data: int | None = None):
        """The same model as one sample site ``x_{i}`` per dimension (the network's
        ``plated`` form, as its paper writes it), in the ``"data"`` plate."""
        x = self._check(x)
        net = eqx_module("net", self.net)
        with self._plate(x, num_data):
            net.plated(self._events(x), self.head, context)

    # -- exact density and samples ------------------------------------------------------

    def log_prob(self, x: jax.Array, context: Any = None) -> jax.Array:
        """Exact ``log p(x)`` in nats per row, ``(batch,)``.

        Raises:
            DataError: as :meth:`model`.
        """
        x = self._check(x)
        d = self.distribution(
            None, context, jnp.shape(x)[1], batch_shape=(jnp.shape(x)[0],), validate_args=False
        )
        return d.log_prob(self._events(x))

    def sample(
        self,
        rng_key: jax.Array,
        num_samples: int,
        context: Any = None,
        length: int | None = None,
        cached: bool = True,
    ) -> jax.Array:
        """``num_samples`` rows ``(n, D)`` (``(n, length)`` for a sequence network), one
        dimension at a time (the cached sampler unless ``cached=False``)."""
        d = self.distribution(None, context, length, batch_shape=(int(num_samples),), cached=cached)
        return self._rows(d.sample(rng_key))

    # -- weights ------------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """The network's parameters as numpy, keys ``net.<name>`` (torch layout)."""
        return {f"net.{k}": v for k, v in self.net.get_weights().items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``weights`` in place (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        self.net = self.net.set_weights({k[len("net.") :]: v for k, v in weights.items()})

    def bind(self, params: Mapping[str, Any]) -> Self:
        """A copy of this model holding trained NumPyro params (``Trainer.params(state)``).

        Raises:
            ConfigError: ``params`` lacks the network's param site ``"net$params"``.
        """
        if "net$params" not in params:
            raise ConfigError("params lack ['net$params']; pass the params of this model")
        bound = copy.copy(self)
        bound.net = eqx.combine(params["net$params"], self.net)
        return bound


# -- generic pieces a network may use ------------------------------------------------------


def _event_ndim(net: Any, noise: jax.Array, head: Head) -> tuple[int, ...]:
    """The event shape a draw of ``noise`` fills."""
    if net.event_shape is not None:
        return tuple(net.event_shape)
    return (jnp.shape(noise)[jnp.ndim(noise) - len(head.noise_shape) - 1],)


def naive_sample(
    net: Any,
    noise: jax.Array,
    head: Head,
    context: Any = None,
    order: Any = None,
    start: int = 0,
    x: jax.Array | None = None,
) -> jax.Array:
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
        ``(*batch, *event)`` draws (float 0/1 for a Bernoulli head, int32 codes otherwise).
    """
    event_shape = _event_ndim(net, noise, head)
    batch_shape = jnp.shape(noise)[: jnp.ndim(noise) - len(head.noise_shape) - len(event_shape)]
    d = math.prod(event_shape)
    if order is None:
        order = range(d) if net.event_shape is None else net.order
    order = jnp.asarray(np.asarray(order, dtype=np.int32))
    dtype = jnp.result_type(float) if isinstance(head, Bernoulli) else jnp.int32
    flat_noise = jnp.reshape(noise, (*batch_shape, d, *head.noise_shape))
    if x is None:
        flat = jnp.zeros((*batch_shape, d), dtype)
    else:
        flat = jnp.reshape(jnp.asarray(x).astype(dtype), (*batch_shape, d))

    def body(k: int, flat: jax.Array) -> jax.Array:
        pos = order[k]
        params = net(jnp.reshape(flat, (*batch_shape, *event_shape)), context)
        params = jnp.take(jnp.reshape(params, (*batch_shape, d, -1)), pos, axis=-2)
        value = head.draw(params, jnp.take(flat_noise, pos, axis=len(batch_shape)))
        return flat.at[..., pos].set(value.astype(dtype))

    flat = jax.lax.fori_loop(int(start), d, body, flat)
    return jnp.reshape(flat, (*batch_shape, *event_shape))


def plated_conditionals(
    net: Any, x: jax.Array | None, head: Head, context: Any = None, length: int | None = None
) -> jax.Array:
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
    batch = () if x is None else jnp.shape(x)[: jnp.ndim(x) - len(event_shape)]
    dtype = jnp.result_type(float) if isinstance(head, Bernoulli) else jnp.int32
    flat = (
        jnp.zeros((*batch, d), dtype)
        if x is None
        else jnp.reshape(jnp.asarray(x).astype(dtype), (*batch, d))
    )
    for pos in order:
        params = net(jnp.reshape(flat, (*flat.shape[:-1], *event_shape)), context)
        params = jnp.reshape(params, (*params.shape[: -1 - len(event_shape)], d, -1))
        obs = None if x is None else flat[..., pos]
        value = numpyro.sample(f"x_{pos}", head.distribution(params[..., pos, :]), obs=obs)
        if x is None:
            flat = jnp.broadcast_to(flat, (*jnp.shape(value), d)).at[..., pos].set(value)
    return jnp.reshape(flat, (*flat.shape[:-1], *event_shape))
