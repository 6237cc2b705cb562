"""Normalizing flows as NumPyro models: :class:`Flow` (a stack of transforms, an Equinox
module), :func:`build_flow` (a flow by name) and the density models :class:`FlowDensity` and
:class:`ConditionalFlowDensity` (mirrors :mod:`ppgen.models.pyro.flow`).

A flow density is ``TransformedDistribution(Normal(0, I), flow.transforms())`` (Rezende &
Mohamed 2015; Papamakarios et al. 2021, *Normalizing Flows for Probabilistic Modeling and
Inference*): its model observes ``x`` in the ``"data"`` plate under that distribution and
its guide has no sites, so ppgen's ``ELBO``, ``IWAE``, ``Trainer`` and
``evaluate_log_likelihood`` give the exact log-likelihood ``log p(x)`` (the log weight of
an empty guide is ``log p(x)`` itself, whatever the number of particles).

The flow is registered with ``numpyro.contrib.module.eqx_module`` as the param site
``"flow$params"``: its transforms are pytrees (arrays and networks the children, masks and
sizes static), so the whole flow is one jitted parameter tree. Data are rows ``(batch, D)``
with ``D = prod(event_shape)``; an image flow reshapes each row to its event shape and back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError, DataError
from ppgen.models import flows
from ppgen.models.conventions import check_weights
from ppgen.models.numpyro.base import check_x

__all__ = [
    "ConditionalFlowDensity",
    "Flow",
    "FlowDensity",
    "build_flow",
    "build_layer",
    "flow_distribution",
    "with_logit",
]

BASES = ("normal",)


def _layer_weights(t: Any) -> dict[str, np.ndarray]:
    return t.get_weights() if hasattr(t, "get_weights") else {}


class Flow(eqx.Module):
    """A stack of transforms ``[T_1, ..., T_L]``, ``T_1`` next to the base noise and ``T_L``
    next to the data (the order of ``TransformedDistribution``).

    Weights are the transforms' parameters under ``layers.<i>.<name>`` (torch layout), the
    same keys and shapes as the Pyro twin's.

    Args:
        layers: NumPyro transforms that are pytrees (ppgen's, or NumPyro's own), conditional
            ones with ``.condition(context)``.
        event_shape: The event shape the flow acts on, ``(D,)`` or ``(C, H, W)``.
        context_dim: Features of the context of a conditional flow (0: unconditional).

    Raises:
        ConfigError: No layer.
    """

    layers: list[Any]
    event_shape: tuple[int, ...] = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)

    def __init__(
        self, layers: Sequence[Any], event_shape: Sequence[int], context_dim: int = 0
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ConfigError("a flow needs at least one layer, got none")
        self.layers = layers
        self.event_shape = tuple(int(s) for s in event_shape)
        self.context_dim = int(context_dim)

    def transforms(self, context: jax.Array | None = None) -> list[Any]:
        """The transforms ``[T_1, ..., T_L]`` (conditioned on ``context (..., context_dim)``
        for a conditional flow), for ``TransformedDistribution(base, ...)``.

        Raises:
            ConfigError: A conditional flow without context, or a context given to an
                unconditional flow.
        """
        if self.context_dim and context is None:
            raise ConfigError(
                f"this flow is conditional (context_dim={self.context_dim}): pass the context"
            )
        if not self.context_dim and context is not None:
            raise ConfigError("this flow is unconditional (context_dim=0): it takes no context")
        if context is None:
            return self.unconditioned()
        return [t.condition(context) if hasattr(t, "condition") else t for t in self.layers]

    def unconditioned(self) -> list[Any]:
        """The layers as built: transforms, conditional ones not yet conditioned."""
        return list(self.layers)

    def initialize(self, y: jax.Array) -> Flow:
        """A copy of this flow after data-dependent initialisation (Glow's ActNorm) on a
        batch of data ``y (N, *event_shape)`` (``image_flows.initialize_flow``)."""
        from ppgen.models.numpyro.image_flows import initialize_flow

        return eqx.tree_at(lambda f: f.layers, self, initialize_flow(self.layers, y))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy under torch's names (``layers.0.u``, ...)."""
        return {
            f"layers.{i}.{key}": np.asarray(value)
            for i, t in enumerate(self.layers)
            for key, value in _layer_weights(t).items()
        }

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> Flow:
        """A copy of this flow holding ``weights`` (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        layers = []
        for i, t in enumerate(self.layers):
            own = {key: weights[f"layers.{i}.{key}"] for key in _layer_weights(t)}
            layers.append(t.set_weights(own) if own else t)
        return eqx.tree_at(lambda f: f.layers, self, layers)


def with_logit(flow: Flow, alpha: float = 0.05, levels: int | None = None) -> Flow:
    """``flow`` followed, on the data side, by the inverse of RealNVP's logit map
    (``image_flows.Logit``, Dinh et al. 2016): a density on ``[0, 1]^D`` (dequantised
    pixels) whose Jacobian is counted. The same transforms (and parameters), one layer more.

    With ``levels=L``, also by ``Dequantize(levels=L).inv`` (``image_flows.Dequantize``):
    a density over ``k + u`` for pixels ``k`` of ``L`` grey levels and ``u ~ U[0, 1)^D``,
    whose ``-log p`` is the dequantised NLL of the ``L``-level data in nats per image
    (``-log p(v) + D log L`` for ``v = (k + u) / L``; Theis et al. 2016), the standard
    figure, bits/dim its share per pixel in bits.

    Raises:
        ConfigError: ``alpha`` outside ``[0, 0.5)``, or ``levels`` not an integer >= 2.
    """
    from ppgen.models.numpyro.image_flows import Dequantize, Logit

    event_dim = len(flow.event_shape)
    layers = [*flow.unconditioned(), Logit(alpha, event_dim=event_dim).inv]
    if levels is not None:
        layers.append(Dequantize(event_dim=event_dim, levels=levels).inv)
    return Flow(layers, flow.event_shape, flow.context_dim)


def build_layer(layer: flows.Layer, dim: int, context_dim: int, bins: int, bound: float) -> Any:
    """The NumPyro transform of one planned layer (:class:`ppgen.models.flows.Layer`) on
    vectors ``(dim,)``; conditioners are ReLU MLPs / MADEs with a zero last layer."""
    kind, seed = layer.kind, layer.seed
    if kind in ("planar", "radial", "diagonal_scaling"):
        from ppgen.models.numpyro import transforms
    else:
        from ppgen.models.numpyro import coupling
        from ppgen.models.numpyro.nets import MLP
    if kind in ("planar", "radial"):
        if context_dim:
            cls = transforms.ConditionalPlanar if kind == "planar" else transforms.ConditionalRadial
            return cls(dim, context_dim, layer.hidden, seed=seed)
        cls = transforms.Planar if kind == "planar" else transforms.Radial
        return cls(dim, seed=seed)
    if kind == "diagonal_scaling":
        return transforms.DiagonalScaling(dim)
    elementwise = _elementwise(coupling, layer.elementwise, bins, bound)
    p = elementwise.num_params
    if kind == "coupling":
        net = MLP(flows.conditioner_sizes(layer, dim, context_dim, p), flows.ACTIVATION, seed=seed)
        return coupling.Coupling(layer.mask, coupling.zero_last_layer(net), elementwise)
    if kind == "autoregressive":
        from ppgen.models.numpyro import autoregressive, made

        net = made.MADE(
            dim,
            layer.hidden,
            p,
            context_dim=context_dim,
            order=layer.order,
            activation=flows.ACTIVATION,
            seed=seed,
            degrees=layer.degrees,
        )
        net = coupling.zero_last_layer(net)
        return autoregressive.MaskedAutoregressive(net, elementwise, direction=layer.direction)
    raise AssertionError(f"unknown layer kind {kind!r}")


def _elementwise(module: Any, name: str | None, bins: int, bound: float) -> Any:
    if name == "additive":
        return module.Additive()
    if name == "affine":
        return module.Affine(log_scale_bound=flows.AFFINE_LOG_SCALE_BOUND)
    return module.RationalQuadraticSpline(bins=bins, bound=bound)


def build_flow(
    name: str,
    event_shape: Sequence[int],
    *,
    layers: int,
    hidden: Sequence[int] = (64, 64),
    context_dim: int = 0,
    bins: int = 8,
    bound: float = 5.0,
    seed: int = 0,
    degrees: str = "spread",
    conditioner: str | None = None,
) -> Flow:
    """The flow called ``name`` (:data:`ppgen.models.flows.FLOWS`) on ``event_shape``.

    Vector flows follow :func:`ppgen.models.flows.flow_plan` (the papers, masks, orders and
    seeds are documented there; the same seed builds the same flow on both backends); image
    flows (``glow``, ``realnvp_multiscale``) are ``ppgen.models.numpyro.image_flows``'
    builders.

    Args:
        name: ``planar``, ``radial``, ``nice``, ``realnvp``, ``maf``, ``iaf``, ``nsf``
            (spline coupling), ``nsf_ar`` (spline autoregressive), ``glow`` or
            ``realnvp_multiscale``.
        event_shape: ``(D,)`` for vector flows, ``(C, H, W)`` for image flows.
        layers: Transforms in the flow (couplings, autoregressive layers, planar maps; for
            image flows, steps per scale, at two scales where the image size allows).
        hidden: Hidden widths of every conditioner (image flows: ``hidden[0]`` channels of
            the conv nets).
        context_dim: Features of the context of a conditional flow ``p(x | y)``.
        bins: Spline bins ``K`` (``nsf``, ``nsf_ar``).
        bound: Spline half-width ``B``: identity outside ``[-B, B]``.
        seed: Seed of the initial weights.
        degrees: The hidden degrees of the autoregressive layers' MADEs, ``"spread"`` or
            ``"cyclic"`` (runs stored before 2026-12; :func:`ppgen.models.masks.made_degrees`).
        conditioner: Image flows' conditioner nets, ``"glow"`` (Glow's 3x3 -> 1x1 -> 3x3) or
            ``"resnet"`` (RealNVP's residual net); ``None``: the flow's own
            (:func:`ppgen.models.flows.image_conditioner`). Vector flows take ``None``.

    Raises:
        ConfigError: See :func:`ppgen.models.flows.check_flow` (unknown name, zero layers,
            an image flow on vectors, ``bound <= 0``, ...) and
            :func:`ppgen.models.flows.image_conditioner` (an unknown conditioner, or one
            given for a vector flow).
    """
    settings = {"layers": layers, "hidden": hidden, "context_dim": context_dim}
    shape = flows.check_flow(name, event_shape, bins=bins, bound=bound, **settings)
    conditioner = flows.image_conditioner(name, conditioner)
    if name in flows.IMAGE_FLOWS:
        from ppgen.models.numpyro import image_flows

        builder = image_flows.glow if name == "glow" else image_flows.multiscale_realnvp
        scales = flows.image_scales(shape)
        if name == "glow" and scales < 1:
            raise ConfigError(
                f"glow squeezes 2 x 2 pixels: it needs an even height and width, got {shape}"
            )
        transforms = builder(
            shape,
            scales=scales,
            steps=layers,
            hidden=int(hidden[0]),
            seed=seed,
            conditioner=conditioner,
        )
        return Flow(transforms, shape)
    plan = flows.flow_plan(
        name, shape[0], bins=bins, bound=bound, seed=seed, degrees=degrees, **settings
    )
    return Flow(
        [build_layer(layer, shape[0], context_dim, bins, bound) for layer in plan],
        shape,
        context_dim,
    )


def _check_invertible(flow: Flow) -> None:
    """Refuse, in one line, a flow with a layer that has no inverse (NumPyro's
    ``BlockNeuralAutoregressiveTransform``), found by tracing one event from the data side
    through each layer's inverse, as ``log_prob`` will (shapes only: nothing is computed).
    A failure of another kind is not judged here: scoring data reports it."""
    context = jnp.zeros((1, flow.context_dim)) if flow.context_dim else None
    names = [f"{type(t).__module__}.{type(t).__qualname__}" for t in flow.unconditioned()]
    y = jax.ShapeDtypeStruct((1, *flow.event_shape), jnp.result_type(float))
    for i, t in reversed(list(enumerate(flow.transforms(context)))):
        try:
            y = jax.eval_shape(t.inv, y)
        except NotImplementedError:  # NumPyro's Transform._inverse
            raise ConfigError(flows.no_inverse_message(i, names[i])) from None
        except Exception:  # noqa: BLE001 - only asking whether an inverse exists
            return


def flow_distribution(flow: Flow, context: jax.Array | None = None) -> dist.TransformedDistribution:
    """``TransformedDistribution(Normal(0, I), flow.transforms(context))`` on the flow's
    event shape (the distribution of :class:`FlowDensity`; usable as a learned prior or
    posterior inside another program).

    Raises:
        ConfigError: A conditional flow without context, or the reverse.
    """
    shape = flow.event_shape
    base = dist.Normal(jnp.zeros(shape), 1.0).to_event(len(shape))
    return dist.TransformedDistribution(base, flow.transforms(context))


# Compiled once per flow structure and input shape: eager JAX compiles every operation.
@eqx.filter_jit
def _log_prob(flow: Flow, events: jax.Array, context: jax.Array | None) -> jax.Array:
    return flow_distribution(flow, context).log_prob(events)


@eqx.filter_jit
def _sample(flow: Flow, rng_key: jax.Array, n: int, context: jax.Array | None) -> jax.Array:
    return flow_distribution(flow, context).sample(rng_key, (n,))


@eqx.filter_jit
def _path(flow: Flow, rng_key: jax.Array, n: int, context: jax.Array | None) -> list[jax.Array]:
    path = [flow_distribution(flow, context).base_dist.sample(rng_key, (n,))]
    for t in flow.transforms(context):
        path.append(t(path[-1]))
    return path


class FlowDensity:
    """``x ~ TransformedDistribution(Normal(0, I), flow.transforms())``: a density model with
    an exact ``log p(x)`` (change of variables) and an empty guide.

    ``model(x, num_data=None)`` observes the rows ``x (batch, D)`` at site ``"x"`` in the
    ``"data"`` plate; ``guide`` has no sites. The flow is the param site ``"flow$params"``,
    weights ``flow.layers.<i>.<name>`` (as the Pyro twin's).

    Args:
        event_shape: The event shape ``(D,)`` or ``(C, H, W)``; rows have
            ``D = prod(event_shape)`` features.
        flow: A :class:`Flow` on ``event_shape`` (e.g. from :func:`build_flow`).
        base: The base distribution: ``"normal"`` (standard normal).

    Raises:
        ConfigError: A flow on another event shape, a conditional flow (use
            :class:`ConditionalFlowDensity`), an unknown base, or a layer without an
            inverse (:func:`ppgen.models.flows.no_inverse_message`: ``log_prob`` runs the
            flow from data to noise; such a layer belongs in a posterior flow).
    """

    conditional = False

    def __init__(self, event_shape: Sequence[int], flow: Flow, base: str = "normal") -> None:
        self.event_shape = tuple(int(s) for s in event_shape)
        if not isinstance(flow, Flow) or flow.event_shape != self.event_shape:
            raise ConfigError(
                f"the flow must be a Flow on events of shape {self.event_shape}, got "
                f"{getattr(flow, 'event_shape', type(flow).__name__)}"
            )
        if bool(flow.context_dim) != self.conditional:
            raise ConfigError(
                "a conditional flow needs ConditionalFlowDensity, an unconditional one FlowDensity"
            )
        if base not in BASES:
            raise ConfigError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")
        _check_invertible(flow)
        self.flow, self.base = flow, base
        self.x_dim = math.prod(self.event_shape)

    # -- the distribution -------------------------------------------------------------

    def distribution(
        self, flow: Flow | None = None, context: jax.Array | None = None
    ) -> dist.TransformedDistribution:
        """``TransformedDistribution(Normal(0, I), flow.transforms(context))`` with events of
        :attr:`event_shape`."""
        return flow_distribution(self.flow if flow is None else flow, context)

    def _events(self, x: jax.Array) -> jax.Array:
        return jnp.reshape(x, (*jnp.shape(x)[:-1], *self.event_shape))

    def _rows(self, x: jax.Array) -> jax.Array:
        return jnp.reshape(x, (*jnp.shape(x)[: jnp.ndim(x) - len(self.event_shape)], self.x_dim))

    def _check(self, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        if len(shape) != 2 or shape[-1] != self.x_dim:
            raise DataError(flows.shape_message(shape, self.event_shape))
        return check_x(x, self.x_dim)

    # -- model and guide --------------------------------------------------------------

    def _observe(self, x: jax.Array, context: jax.Array | None, num_data: int | None) -> None:
        flow = eqx_module("flow", self.flow)
        batch = jnp.shape(x)[0]
        size = batch if num_data is None else int(num_data)
        if size < batch:
            raise ConfigError(f"num_data={num_data} is smaller than the batch ({batch})")
        with numpyro.plate("data", size, subsample_size=batch):
            numpyro.sample("x", self.distribution(flow, context), obs=self._events(x))

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """Observe ``x (batch, D)`` under the flow in the ``"data"`` plate (scaled by
        ``num_data / batch``).

        Raises:
            DataError: ``x`` not ``(batch, D)`` or holding NaN/Inf.
        """
        self._observe(self._check(x), None, num_data)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """No latent sites: the model's ``log p(x)`` is exact."""

    # -- exact density and samples ------------------------------------------------------

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Exact ``log p(x)`` in nats per row, ``(batch,)``.

        Raises:
            DataError: ``x`` not ``(batch, D)`` or holding NaN/Inf.
        """
        return _log_prob(self.flow, self._events(self._check(x)), None)

    def sample(self, rng_key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` rows ``(n, D)`` from the flow."""
        return self._rows(_sample(self.flow, rng_key, int(num_samples), None))

    def sample_path(self, rng_key: jax.Array, num_samples: int) -> list[jax.Array]:
        """Base draws and their images after each layer: ``L + 1`` arrays ``(n, D)``, the
        first the noise, the last the samples (for pictures of what each layer does)."""
        return self._path(rng_key, int(num_samples), None)

    def _path(self, rng_key: jax.Array, n: int, context: jax.Array | None) -> list[jax.Array]:
        return [self._rows(p) for p in _path(self.flow, rng_key, n, context)]

    # -- weights ----------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """The flow's parameters as numpy, keys ``flow.layers.<i>.<name>`` (torch layout)."""
        return {f"flow.{k}": v for k, v in self.flow.get_weights().items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``weights`` in place (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        self.flow = self.flow.set_weights({k[len("flow.") :]: v for k, v in weights.items()})

    def bind(self, params: Mapping[str, Any]) -> Self:
        """A copy of this model holding trained NumPyro params (``Trainer.params(state)``).

        Raises:
            ConfigError: ``params`` lacks the flow's param site ``"flow$params"``.
        """
        if "flow$params" not in params:
            raise ConfigError("params lack ['flow$params']; pass the params of this model")
        bound = copy.copy(self)
        bound.flow = eqx.combine(params["flow$params"], self.flow)
        return bound


class ConditionalFlowDensity(FlowDensity):
    """``p(x | y) = TransformedDistribution(Normal(0, I), flow.transforms(context=y))``: a
    conditional density model with an exact ``log p(x | y)`` and an empty guide.

    ``model(x, y, num_data=None)`` observes ``x (batch, D)`` given ``y (batch,
    context_dim)`` (a float context, e.g. one-hot labels) in the ``"data"`` plate; train it
    on the tuple ``(x, y)``.

    Args:
        event_shape: The event shape of ``x``.
        flow: A conditional :class:`Flow` (``context_dim > 0``).
        base: ``"normal"``.
    """

    conditional = True

    def _context(self, y: jax.Array | None, batch: int) -> jax.Array:
        if y is None:
            raise ConfigError(
                "this flow is conditional, p(x | y): pass the context too, model(x, y) (train "
                "and evaluate on the pair (x, y))"
            )
        c = self.flow.context_dim
        if tuple(jnp.shape(y)) != (batch, c):
            raise DataError(
                f"y must be a (batch, {c}) array matching x's {batch} rows, got "
                f"{tuple(jnp.shape(y))}"
            )
        return check_x(jnp.asarray(y, dtype=jnp.result_type(float)), c)

    def model(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """Observe ``x`` given the context ``y`` in the ``"data"`` plate.

        Raises:
            DataError: ``x`` or ``y`` of the wrong shape, or holding NaN/Inf.
        """
        x = self._check(x)
        self._observe(x, self._context(y, jnp.shape(x)[0]), num_data)

    def guide(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """No latent sites."""

    def log_prob(self, x: jax.Array, y: jax.Array | None = None) -> jax.Array:  # type: ignore[override]
        """Exact ``log p(x | y)`` per row, ``(batch,)``."""
        x = self._check(x)
        y = self._context(y, jnp.shape(x)[0])
        return _log_prob(self.flow, self._events(x), y)

    def sample(self, rng_key: jax.Array, y: jax.Array) -> jax.Array:  # type: ignore[override]
        """One row ``x ~ p(x | y_i)`` per context row ``y (n, context_dim)``: ``(n, D)``."""
        n = jnp.shape(y)[0]
        y = self._context(y, n)
        return self._rows(_sample(self.flow, rng_key, n, y))

    def sample_path(self, rng_key: jax.Array, y: jax.Array) -> list[jax.Array]:  # type: ignore[override]
        """As :meth:`FlowDensity.sample_path`, one draw per context row."""
        n = jnp.shape(y)[0]
        return self._path(rng_key, n, self._context(y, n))
