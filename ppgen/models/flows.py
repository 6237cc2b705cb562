"""Normalizing flows by name: which flows ppgen builds and each one's layer plan, in numpy,
once for both backends (``ppgen.models.{pyro,numpyro}.flow.build_flow`` read the plan).

A flow is ``TransformedDistribution(base, [T_1, ..., T_L])``: ``T_1`` acts on the base
noise, ``T_L`` on the data (Pyro's and NumPyro's order). :func:`flow_plan` lists the layers
``T_1 .. T_L`` as :class:`Layer` records (kind, masks, orders, permutations, network sizes,
seeds), so both backends build the same flow from the same seed, weight for weight.

The vector flows and the papers they follow:

- ``planar``, ``radial``: Rezende & Mohamed 2015 (with the invertibility constraint).
- ``nice``: additive couplings with alternating masks and a final diagonal scaling (Dinh et
  al. 2014).
- ``realnvp``: affine couplings with alternating masks (Dinh et al. 2016).
- ``maf``: masked affine autoregressive layers, density in one pass (Papamakarios et al.
  2017); ``iaf``: the same layers in the sampling direction (Kingma et al. 2016).
- ``nsf``: rational-quadratic spline couplings with linear tails (Durkan et al. 2019,
  RQ-NSF (C)); ``nsf_ar`` is the autoregressive form, RQ-NSF (AR).

Masks and orders alternate between layers as zuko's ``RealNVP``/``MAF`` do (no permutation
layers; in ``D = 2`` alternation is the only permutation there is), and the layer next to
the data (``T_L``) passes ``x_0`` through / generates it first, as zuko's and flowjax's
first layer does: with the same weights, ppgen's flows compute the same function as those
libraries' (``benchmarks/flow_toy.py``). Conditioners are ReLU MLPs (MADEs for the
autoregressive flows) whose last layer starts at zero, so a fresh flow is the identity.

``glow`` and multi-scale ``realnvp`` on images (``(C, H, W)`` events) are
:data:`IMAGE_FLOWS`, built by ``ppgen.models.{pyro,numpyro}.image_flows``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ppgen.errors import ConfigError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.masks import check_degrees

__all__ = [
    "ACTIVATION",
    "AFFINE_LOG_SCALE_BOUND",
    "ELEMENTWISE",
    "FLOWS",
    "IMAGE_FLOWS",
    "VECTOR_FLOWS",
    "Layer",
    "check_flow",
    "conditioner_sizes",
    "flow_plan",
    "image_conditioner",
    "image_scales",
    "mlp_initial_weights",
    "no_inverse_message",
    "shape_message",
]

VECTOR_FLOWS = ("planar", "radial", "nice", "realnvp", "maf", "iaf", "nsf", "nsf_ar")
"""Flows on vectors ``(D,)``, built layer by layer from :func:`flow_plan`."""

IMAGE_FLOWS = ("glow", "realnvp_multiscale")
"""Flows on images ``(C, H, W)`` (Kingma & Dhariwal 2018; Dinh et al. 2016's multi-scale
architecture), built by the backends' ``image_flows`` modules."""

FLOWS = VECTOR_FLOWS + IMAGE_FLOWS
"""Every flow name ``build_flow`` takes."""

ELEMENTWISE = {
    "nice": "additive",
    "realnvp": "affine",
    "maf": "affine",
    "iaf": "affine",
    "nsf": "spline",
    "nsf_ar": "spline",
}
"""The element-wise map of each coupling or autoregressive flow."""

ACTIVATION = "relu"
"""Hidden activation of every conditioner (zuko's and flowjax's default too)."""

AFFINE_LOG_SCALE_BOUND = 3.0
"""``|log scale| <= 3`` in every affine layer (``3 tanh(raw / 3)``, the contract's ``Affine``)."""

_COUPLING = ("nice", "realnvp", "nsf")
_AUTOREGRESSIVE = {"maf": "maf", "iaf": "iaf", "nsf_ar": "maf"}


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer ``T_i`` of a vector flow, as both backends build it.

    Attributes:
        kind: ``"planar"``, ``"radial"``, ``"coupling"``, ``"autoregressive"`` or
            ``"diagonal_scaling"``.
        seed: Seed of the layer's initial weights.
        elementwise: ``"additive"``, ``"affine"`` or ``"spline"`` (couplings and
            autoregressive layers).
        mask: Coupling mask ``(D,)``, ``True`` = passed through and read by the conditioner.
        order: MADE's input order ``(D,)`` (``order[i]`` = the position at which input ``i``
            is generated).
        direction: ``"maf"`` or ``"iaf"`` (autoregressive layers).
        hidden: Hidden widths of the layer's conditioner (or hypernetwork, when conditional).
        degrees: The MADE's hidden degrees (autoregressive layers): ``"spread"`` or
            ``"cyclic"`` (:func:`ppgen.models.masks.made_degrees`).
    """

    kind: str
    seed: int
    elementwise: str | None = None
    mask: np.ndarray | None = None
    order: np.ndarray | None = None
    direction: str | None = None
    hidden: tuple[int, ...] = field(default=())
    degrees: str = "spread"


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_flow(
    name: str,
    event_shape: Sequence[int],
    *,
    layers: int,
    hidden: Sequence[int],
    context_dim: int = 0,
    bins: int = 8,
    bound: float = 5.0,
) -> tuple[int, ...]:
    """Check a flow's settings against its event shape; return the shape as ints.

    Raises:
        ConfigError: An unknown flow name; ``layers`` not a positive integer (zero layers);
            hidden widths not positive; a negative ``context_dim``; a spline's ``bins`` or
            ``bound`` out of range (``bound <= 0``); an image flow on vectors (the event
            shape must be ``(C, H, W)``) or a vector flow on an image event; a coupling
            flow on one dimension (it needs two halves).
    """
    from ppgen.models.elementwise import check_spline

    if name not in FLOWS:
        raise ConfigError(f"unknown flow {name!r}; choose one of {', '.join(FLOWS)}")
    if not _is_int(layers, 1):
        raise ConfigError(f"a flow needs at least one layer, got layers={layers!r}")
    hidden = tuple(hidden)
    if not hidden or not all(_is_int(h, 1) for h in hidden):
        raise ConfigError(f"hidden widths must be positive integers, got {hidden!r}")
    if not _is_int(context_dim, 0):
        raise ConfigError(f"context_dim must be an integer >= 0, got {context_dim!r}")
    shape = tuple(int(s) for s in event_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"event_shape must be positive sizes, got {tuple(event_shape)!r}")
    if ELEMENTWISE.get(name) == "spline" or name == "glow":
        check_spline(bins, bound)
    if name in IMAGE_FLOWS:
        if context_dim:
            raise ConfigError(f"{name} is unconditional in ppgen: it takes no context_dim")
        if len(shape) != 3:
            raise ConfigError(
                f"{name} is an image flow: it needs image data, events of shape (C, H, W), "
                f"got events of shape {shape}; use a vector flow ({', '.join(VECTOR_FLOWS)}) "
                "on vectors"
            )
        return shape
    if len(shape) != 1:
        raise ConfigError(
            f"{name} is a vector flow: it needs events of shape (D,), got {shape}; flatten "
            f"images or use an image flow ({', '.join(IMAGE_FLOWS)})"
        )
    if name in _COUPLING and shape[0] < 2:
        raise ConfigError(f"{name} couples two halves of x: it needs D >= 2, got D = {shape[0]}")
    return shape


IMAGE_CONDITIONERS = {"glow": "glow", "realnvp_multiscale": "resnet"}
"""Each image flow's own conditioner network (``image_flows.CONDITIONERS``): Glow's
3x3 -> 1x1 -> 3x3 net for ``glow``, RealNVP's residual net for ``realnvp_multiscale``."""


def image_conditioner(name: str, conditioner: str | None) -> str | None:
    """The conditioner network of the flow ``name``: ``conditioner``, or the flow's own
    (:data:`IMAGE_CONDITIONERS`) when ``None``; ``None`` for a vector flow, whose
    conditioners are MLPs (``hidden``).

    Raises:
        ConfigError: An unknown conditioner, or one given for a vector flow.
    """
    from ppgen.models.image_flows import conditioner_name

    if name not in IMAGE_FLOWS:
        if conditioner is not None:
            raise ConfigError(
                f"conditioner={conditioner!r} chooses the conv nets of the image flows "
                f"({', '.join(IMAGE_FLOWS)}), and {name} has none: drop conditioner"
            )
        return None
    return IMAGE_CONDITIONERS[name] if conditioner is None else conditioner_name(conditioner)


def flow_plan(
    name: str,
    dim: int,
    *,
    layers: int,
    hidden: Sequence[int] = (64, 64),
    context_dim: int = 0,
    bins: int = 8,
    bound: float = 5.0,
    seed: int = 0,
    degrees: str = "spread",
) -> list[Layer]:
    """The layers ``T_1 .. T_L`` (noise side first) of the vector flow ``name`` on ``(dim,)``.

    ``layers`` counts the flow's transforms proper (couplings, autoregressive layers, planar
    or radial maps); NICE adds its final diagonal scaling on the data side. Layer ``i``
    (0-based from the noise side) alternates with ``j = L - 1 - i``, its position from the
    data side: coupling masks ``mask[k] = (k % 2 == j % 2)`` and autoregressive orders
    natural for even ``j``, reversed for odd ``j``. Each layer's seed is spawned from
    ``seed`` (:func:`ppgen.models.conventions.spawn_seeds`). ``degrees`` is the hidden
    degree scheme of the autoregressive layers' MADEs (``"cyclic"``: what runs stored before
    2026-12 were trained with; :func:`ppgen.models.masks.made_degrees`).

    Raises:
        ConfigError: See :func:`check_flow`, and an unknown ``degrees``.
    """
    check_degrees(degrees)
    (dim,) = check_flow(
        name, (dim,), layers=layers, hidden=hidden, context_dim=context_dim, bins=bins,
        bound=bound,
    )  # fmt: skip
    if name not in VECTOR_FLOWS:  # an image flow: check_flow refused the vector shape
        raise AssertionError(name)
    hidden = tuple(int(h) for h in hidden)
    seeds = spawn_seeds(seed, layers + 1)
    plan = []
    for i in range(layers):
        j = layers - 1 - i  # position from the data side
        if name in ("planar", "radial"):
            plan.append(Layer(name, seeds[i], hidden=hidden))
        elif name in _COUPLING:
            mask = np.arange(dim) % 2 == j % 2
            plan.append(Layer("coupling", seeds[i], ELEMENTWISE[name], mask=mask, hidden=hidden))
        else:
            order = np.arange(dim) if j % 2 == 0 else np.arange(dim)[::-1].copy()
            plan.append(
                Layer(
                    "autoregressive",
                    seeds[i],
                    ELEMENTWISE[name],
                    order=order,
                    direction=_AUTOREGRESSIVE[name],
                    hidden=hidden,
                    degrees=degrees,
                )
            )
    if name == "nice":
        plan.append(Layer("diagonal_scaling", seeds[layers]))
    return plan


def conditioner_sizes(layer: Layer, dim: int, context_dim: int, num_params: int) -> list[int]:
    """Layer widths of a coupling layer's conditioner MLP: it reads the passed-through
    coordinates (and the context) and outputs ``num_params`` values per transformed one."""
    n_pass = int(np.sum(layer.mask))
    return [n_pass + int(context_dim), *layer.hidden, (int(dim) - n_pass) * int(num_params)]


def mlp_initial_weights(sizes: Sequence[int], seed: int) -> dict[str, np.ndarray]:
    """An MLP's initial weights drawn by numpy, keys ``layers.<i>.weight (out, in)`` and
    ``layers.<i>.bias (out,)``: uniform on ``[-1/sqrt(in), 1/sqrt(in)]`` (torch's default
    range), drawn weight then bias, layer by layer, from ``np.random.default_rng(seed)``:
    the draw of ``ppgen.models.numpyro.nets.MLP(sizes, seed=seed)``, so a Pyro flow's
    conditioners start from the same numbers as its NumPyro twin's."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        bound = 1.0 / np.sqrt(n_in)
        out[f"layers.{i}.weight"] = rng.uniform(-bound, bound, (n_out, n_in))
        out[f"layers.{i}.bias"] = rng.uniform(-bound, bound, n_out)
    return out


def image_scales(event_shape: Sequence[int], most: int = 2) -> int:
    """Scales of a multi-scale image flow on ``(C, H, W)``: the largest ``s <= most`` with
    ``H`` and ``W`` multiples of ``2**s`` (each scale squeezes by 2; MNIST's 28 x 28 and
    digits' 8 x 8 take 2)."""
    _, h, w = (int(v) for v in event_shape)
    s = 0
    while s < most and h % 2 ** (s + 1) == 0 and w % 2 ** (s + 1) == 0:
        s += 1
    return s


def no_inverse_message(layer: int, name: str) -> str:
    """The one line both backends' flow density models raise for a layer without an inverse
    (Pyro's ``Planar``, ``Radial``, ``NeuralAutoregressive``, ``BlockAutoregressive``,
    NumPyro's ``BlockNeuralAutoregressiveTransform``: they only go forward, noise to data).

    A density model scores data by the inverse direction, ``z = T^-1(x)``, ``log p(x) =
    log p(z) + log|det dz/dx|``; a forward-only layer serves where values are only drawn
    forward and scored on the way (a VAE's posterior flow).

    Args:
        layer: The layer's index in the flow (0: next to the base noise).
        name: The layer's class, by its qualified name (``module.Class``).
    """
    return (
        f"layer {layer} of the flow ({name}) has no inverse, and a flow density model scores "
        "data through the inverse, x -> z (log p(x) = log p(z) + log|det dz/dx|): use "
        "it as a posterior flow (a VAE's q(z|x) draws forward only) or pick an "
        f"invertible transform (every flow of build_flow inverts: {', '.join(VECTOR_FLOWS)})"
    )


def shape_message(shape: Sequence[int], event_shape: Sequence[int]) -> str:
    """The one line both backends' flow density models raise for data of the wrong shape:
    they take rows ``(batch, D)``, ``D = prod(event_shape)``, each row one event.

    Args:
        shape: The shape of the data given.
        event_shape: The flow's event shape.
    """
    shape, event_shape = tuple(int(s) for s in shape), tuple(int(s) for s in event_shape)
    dim = int(np.prod(event_shape))
    if len(shape) > 2 and int(np.prod(shape[1:])) == dim:
        hint = "flatten each example (x.reshape(len(x), -1))"
    elif len(shape) == 2 and len(event_shape) == 1:
        hint = f"or build the flow with event_shape=({shape[1]},)"
    elif len(shape) == 2:
        hint = f"or build the flow on events of {shape[1]} values"
    else:
        hint = "pass one row per example"
    return (
        f"x has shape {shape} but this flow density needs (batch, {dim}): each row one event "
        f"of the flow's event_shape {event_shape}; {hint}"
    )
