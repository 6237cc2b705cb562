"""Normalizing flows as Pyro models: :class:`Flow` (a stack of transforms), :func:`build_flow`
(a flow by name) and the density models :class:`FlowDensity` and
:class:`ConditionalFlowDensity` (mirrors :mod:`ppgen.models.numpyro.flow`).

A flow density is ``TransformedDistribution(Normal(0, I), flow.transforms())`` (Rezende &
Mohamed 2015; Papamakarios et al. 2021, *Normalizing Flows for Probabilistic Modeling and
Inference*): its model observes ``x`` in the ``"data"`` plate under that distribution and
its guide has no sites, so ppgen's ``ELBO``, ``IWAE``, ``Trainer`` and
``evaluate_log_likelihood`` give the exact log-likelihood ``log p(x)`` (the log weight of
an empty guide is ``log p(x)`` itself, whatever the number of particles).

Data are rows ``(batch, D)`` with ``D = prod(event_shape)``, as every ppgen model takes
them; an image flow (``event_shape = (C, H, W)``) reshapes each row to its event shape and
back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Self

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppgen.errors import ConfigError, DataError
from ppgen.models import flows
from ppgen.models.pyro.base import LatentVariableModel, check_x
from ppgen.models.pyro.params import ModuleWeights, local_module, set_weights

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


class Flow(ModuleWeights, nn.Module):
    """A stack of transforms ``[T_1, ..., T_L]``, ``T_1`` next to the base noise and ``T_L``
    next to the data (the order of ``TransformedDistribution``).

    Weights are the transforms' parameters under ``layers.<i>.<name>`` (torch layout), the
    same keys and shapes as the NumPyro twin's.

    Args:
        layers: Pyro transforms (``TransformModule``s holding their parameters, or
            parameter-free ``Transform``s), conditional ones with ``.condition(context)``.
        event_shape: The event shape the flow acts on, ``(D,)`` or ``(C, H, W)``.
        context_dim: Features of the context of a conditional flow (0: unconditional).

    Raises:
        ConfigError: No layer.
    """

    def __init__(
        self,
        layers: Sequence[Any],
        event_shape: Sequence[int],
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ConfigError("a flow needs at least one layer, got none")
        # Parameter-free transforms (not modules) are held by a module, so that layer i is
        # ``layers.<i>`` whatever its kind, as on NumPyro.
        self.layers = nn.ModuleList([t if isinstance(t, nn.Module) else _Fixed(t) for t in layers])
        self.event_shape = tuple(int(s) for s in event_shape)
        self.context_dim = int(context_dim)

    def transforms(self, context: torch.Tensor | None = None) -> list[Any]:
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
        layers = self.unconditioned()
        if context is None:
            return layers
        return [t.condition(context) if hasattr(t, "condition") else t for t in layers]

    def unconditioned(self) -> list[Any]:
        """The layers as built: transforms, conditional ones not yet conditioned."""
        return [t.transform if isinstance(t, _Fixed) else t for t in self.layers]

    def initialize(self, y: torch.Tensor) -> Self:
        """Data-dependent initialisation (Glow's ActNorm) on a batch of data ``y (N,
        *event_shape)``, in place (``image_flows.initialize_flow``); returns self."""
        from ppgen.models.pyro.image_flows import initialize_flow

        initialize_flow(self.transforms(), y)
        return self

    def forward(self, fn: Callable[[Flow], Any]) -> Any:
        """``fn(self)``: under :func:`~ppgen.models.pyro.params.local_module`'s functional
        view the substituted parameters are in place while ``fn`` runs."""
        return fn(self)


class _Fixed(nn.Module):
    """A parameter-free transform as a module (a place in ``Flow.layers``)."""

    def __init__(self, transform: Any) -> None:
        super().__init__()
        self.transform = transform


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
    from ppgen.models.pyro.image_flows import Dequantize, Logit

    event_dim = len(flow.event_shape)
    layers = [*flow.unconditioned(), Logit(alpha, event_dim=event_dim).inv]
    if levels is not None:
        layers.append(Dequantize(event_dim=event_dim, levels=levels).inv)
    return Flow(layers, flow.event_shape, flow.context_dim)


def build_layer(layer: flows.Layer, dim: int, context_dim: int, bins: int, bound: float) -> Any:
    """The Pyro transform of one planned layer (:class:`ppgen.models.flows.Layer`) on
    vectors ``(dim,)``; conditioners are ReLU MLPs / MADEs with a zero last layer."""
    kind, seed = layer.kind, layer.seed
    if kind in ("planar", "radial", "diagonal_scaling"):
        from ppgen.models.pyro import transforms
    else:
        from ppgen.models.pyro import coupling
        from ppgen.models.pyro.nets import MLP
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
        sizes = flows.conditioner_sizes(layer, dim, context_dim, p)
        net = MLP(sizes, flows.ACTIVATION, seed=seed)
        set_weights(net, flows.mlp_initial_weights(sizes, seed))  # numpy's draw, as NumPyro's
        return coupling.Coupling(layer.mask, coupling.zero_last_layer(net), elementwise)
    if kind == "autoregressive":
        from ppgen.models.pyro import autoregressive, made

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
    flows (``glow``, ``realnvp_multiscale``) are ``ppgen.models.pyro.image_flows``' builders.

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
        from ppgen.models.pyro import image_flows

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


def _dtype(flow: Flow) -> torch.dtype:
    p = next(flow.parameters(), None)
    return torch.get_default_dtype() if p is None else p.dtype


def _check_invertible(flow: Flow) -> None:
    """Refuse, in one line, a flow with a layer that has no inverse (Pyro's ``Planar``,
    ``Radial``, ``NeuralAutoregressive``, ``BlockAutoregressive``: they invert only values
    they produced), found by running one zero event from the data side through each
    layer's inverse, as ``log_prob`` will. A failure of another kind (a probe outside a
    layer's domain) is not judged here: scoring data reports it."""
    first = next(flow.parameters(), None)
    like = {"dtype": _dtype(flow), "device": None if first is None else first.device}
    context = torch.zeros(1, flow.context_dim, **like) if flow.context_dim else None
    names = [f"{type(t).__module__}.{type(t).__qualname__}" for t in flow.unconditioned()]
    y = torch.zeros(1, *flow.event_shape, **like)
    with torch.no_grad():
        for i, t in reversed(list(enumerate(flow.transforms(context)))):
            try:
                y = t.inv(y)
            except NotImplementedError:  # torch's Transform._inverse
                raise ConfigError(flows.no_inverse_message(i, names[i])) from None
            except KeyError as error:  # Pyro's forward-only maps: a cache miss
                if "intermediates cache" in str(error):
                    raise ConfigError(flows.no_inverse_message(i, names[i])) from None
                return
            except Exception:  # noqa: BLE001 - only asking whether an inverse exists
                return


def flow_distribution(
    flow: Flow, context: torch.Tensor | None = None
) -> dist.TransformedDistribution:
    """``TransformedDistribution(Normal(0, I), flow.transforms(context))`` on the flow's
    event shape, in its parameters' dtype (the distribution of :class:`FlowDensity`; usable
    as a learned prior or posterior inside another program).

    Raises:
        ConfigError: A conditional flow without context, or the reverse.
    """
    zeros = torch.zeros(flow.event_shape, dtype=_dtype(flow))
    base = dist.Normal(zeros, 1.0).to_event(len(flow.event_shape))
    return dist.TransformedDistribution(base, flow.transforms(context))


class FlowDensity(LatentVariableModel):
    """``x ~ TransformedDistribution(Normal(0, I), flow.transforms())``: a density model with
    an exact ``log p(x)`` (change of variables) and an empty guide.

    ``model(x, num_data=None)`` observes the rows ``x (batch, D)`` at site ``"x"`` in the
    ``"data"`` plate; ``guide`` has no sites. The flow's parameters are the param sites
    ``flow$$$layers.<i>.<name>``, weights ``flow.layers.<i>.<name>`` (``get_weights``,
    ``set_weights`` and ``bind`` as every ppgen model's).

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
        super().__init__()
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

    def _dtype(self) -> torch.dtype:
        return _dtype(self.flow)

    def distribution(
        self, flow: Flow | None = None, context: torch.Tensor | None = None
    ) -> dist.TransformedDistribution:
        """``TransformedDistribution(Normal(0, I), flow.transforms(context))`` with events of
        :attr:`event_shape`."""
        return flow_distribution(self.flow if flow is None else flow, context)

    def _events(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], *self.event_shape)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[: x.dim() - len(self.event_shape)], self.x_dim)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(x) and (x.dim() != 2 or x.shape[-1] != self.x_dim):
            raise DataError(flows.shape_message(x.shape, self.event_shape))
        with pyro.validation_enabled():  # NaN in data is refused, whatever validation says
            return check_x(x, self.x_dim)

    # -- model and guide --------------------------------------------------------------

    def _observe(self, x: torch.Tensor, context: torch.Tensor | None, num_data: int | None):
        flow = local_module("flow", self.flow)
        size = len(x) if num_data is None else int(num_data)
        if size < len(x):
            raise ConfigError(f"num_data={num_data} is smaller than the batch ({len(x)})")
        with pyro.plate("data", size, subsample=torch.arange(len(x))):
            if flow is self.flow:
                pyro.sample("x", self.distribution(context=context), obs=self._events(x))
                return

            # Substituted parameters (a handler replaced a param site) are in place only
            # while the functional view runs: score there, observe the exact value.
            def score(f: Flow) -> torch.Tensor:
                return self.distribution(f, context).log_prob(self._events(x))

            log_px = flow(score)
            pyro.sample("x", dist.Delta(x, log_density=log_px, event_dim=1), obs=x)

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """Observe ``x (batch, D)`` under the flow in the ``"data"`` plate (scaled by
        ``num_data / batch``).

        Raises:
            DataError: ``x`` not ``(batch, D)`` or holding NaN/Inf.
        """
        self._observe(self._check(x), None, num_data)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """No latent sites: the model's ``log p(x)`` is exact."""

    # -- exact density and samples ------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats per row, ``(batch,)``.

        Raises:
            DataError: ``x`` not ``(batch, D)`` or holding NaN/Inf.
        """
        return self.distribution().log_prob(self._events(self._check(x)))

    def sample(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` rows ``(n, D)`` from the flow (torch's global generator)."""
        with torch.no_grad():
            return self._rows(self.distribution().sample((int(num_samples),)))

    def sample_path(self, num_samples: int) -> list[torch.Tensor]:
        """Base draws and their images after each layer: ``L + 1`` arrays ``(n, D)``, the
        first the noise, the last the samples (for pictures of what each layer does)."""
        return self._path(num_samples, None)

    def _path(self, num_samples: int, context: torch.Tensor | None) -> list[torch.Tensor]:
        with torch.no_grad():
            z = self.distribution(context=context).base_dist.sample((int(num_samples),))
            path = [z]
            for t in self.flow.transforms(context):
                path.append(t(path[-1]))
            return [self._rows(p) for p in path]


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

    def _context(self, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        if y is None:
            raise ConfigError(
                "this flow is conditional, p(x | y): pass the context too, model(x, y) (train "
                "and evaluate on the pair (x, y))"
            )
        c = self.flow.context_dim
        if not torch.is_tensor(y) or y.dim() != 2 or tuple(y.shape) != (batch, c):
            raise DataError(
                f"y must be a (batch, {c}) tensor matching x's {batch} rows, got "
                f"{tuple(getattr(y, 'shape', ())) or type(y).__name__}"
            )
        with pyro.validation_enabled():
            return check_x(y.to(self._dtype()), c)

    def model(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """Observe ``x`` given the context ``y`` in the ``"data"`` plate.

        Raises:
            DataError: ``x`` or ``y`` of the wrong shape, or holding NaN/Inf.
        """
        x = self._check(x)
        self._observe(x, self._context(y, len(x)), num_data)

    def guide(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """No latent sites."""

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Exact ``log p(x | y)`` per row, ``(batch,)``."""
        x = self._check(x)
        return self.distribution(context=self._context(y, len(x))).log_prob(self._events(x))

    def sample(self, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """One row ``x ~ p(x | y_i)`` per context row ``y (n, context_dim)``: ``(n, D)``."""
        y = self._context(y, len(y))
        with torch.no_grad():
            return self._rows(self.distribution(context=y).sample((len(y),)))

    def sample_path(self, y: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """As :meth:`FlowDensity.sample_path`, one draw per context row."""
        return self._path(len(y), self._context(y, len(y)))
