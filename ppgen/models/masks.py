"""Masks of coupling and autoregressive flows, computed once in numpy for both backends.

MADE's connectivity (Germain et al. 2015): input ``i`` has degree ``order[i] + 1``, hidden
unit degrees are ``1..D-1``, a hidden unit sees the inputs whose degree is at most its own
and output ``i`` sees the hidden units whose degree is below input ``i``'s, so output ``i``
depends only on inputs generated before it. Masks are boolean and in torch's layout
``(out, in)``, the layout of both backends' weights.

Order- and connectivity-agnostic training (Germain et al. 2015, section 4.2-4.3) cycles
through ``num_masks`` mask sets: set 0 is the deterministic one above (the given order), set
``k >= 1`` draws a new ordering and new hidden degrees from ``np.random.default_rng(seed +
k)`` (as karpathy/pytorch-made's ``update_masks``), the same on both backends. With
``agnostic="connectivity"`` (connectivity-agnostic only, section 4.3) every set keeps the
given order and draws only the hidden degrees.

Coupling masks (Dinh et al. 2014, 2016): ``True`` marks the coordinates passed through
unchanged (and read by the conditioner), ``False`` those transformed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ppgen.errors import ConfigError

__all__ = [
    "alternating_mask",
    "channel_mask",
    "check_coupling_mask",
    "AGNOSTIC",
    "DEGREES",
    "check_agnostic",
    "check_degrees",
    "check_direct",
    "check_mask_index",
    "check_num_params",
    "check_order",
    "checkerboard_mask",
    "fvsbn_initial_weights",
    "fvsbn_mask",
    "half_mask",
    "made_degrees",
    "made_initial_weights",
    "made_mask_positions",
    "made_masks",
    "nade_initial_weights",
    "sampling_order",
]


def check_order(input_dim: int, order: Sequence[int] | None) -> tuple[int, ...]:
    """Check an autoregressive order; return it as a tuple of ints.

    Args:
        input_dim: ``D``, the number of inputs (a positive integer).
        order: ``order[i]`` is the position (0-based) at which input ``i`` is generated, a
            permutation of ``range(D)``; ``None`` for the identity ``(0, 1, ..., D-1)``.

    Raises:
        ConfigError: ``input_dim < 1`` or ``order`` not a permutation of ``range(D)``.
    """
    if int(input_dim) < 1:
        raise ConfigError(f"input_dim must be a positive integer, got {input_dim!r}")
    if order is None:
        return tuple(range(int(input_dim)))
    order = tuple(int(o) for o in np.asarray(order).ravel())
    if sorted(order) != list(range(int(input_dim))):
        raise ConfigError(
            f"order must be a permutation of range({input_dim}) (the position of each input), "
            f"got {order}"
        )
    return order


def _is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool (nor a float that happens to be whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_set_index(mask_index: int) -> int:
    """``mask_index`` as an int >= 0 (a mask set's index; the sets themselves are
    unbounded here). Raises ConfigError otherwise."""
    if not _is_integer(mask_index) or mask_index < 0:
        raise ConfigError(f"mask_index must be an integer >= 0, got {mask_index!r}")
    return int(mask_index)


def check_mask_index(num_masks: int, mask_index: int) -> int:
    """Check MADE's ``num_masks`` (an integer >= 1) and ``mask_index`` (an integer in
    ``[0, num_masks)``); return ``mask_index`` as an int.

    Raises:
        ConfigError: Either is out of range or not an integer.
    """
    if not _is_integer(num_masks) or num_masks < 1:
        raise ConfigError(f"num_masks must be an integer >= 1, got {num_masks!r}")
    if not _is_integer(mask_index) or not 0 <= mask_index < num_masks:
        raise ConfigError(f"mask_index must be an integer in [0, {num_masks}), got {mask_index!r}")
    return int(mask_index)


AGNOSTIC = ("order", "connectivity")
DEGREES = ("spread", "cyclic")
"""How mask set 0 gives its hidden units degrees: ``"spread"`` (the default) spreads them
evenly over ``1..D-1``; ``"cyclic"`` (ppgen before 2026-12) cycles ``1, 2, ...`` and, in a
layer narrower than ``D - 1``, never reaches the last inputs (see :func:`made_degrees`)."""


def check_num_params(num_params: int) -> int:
    """Check MADE's outputs per input, ``num_params`` (an integer >= 1); return it as an int.

    Raises:
        ConfigError: Not an integer (a bool or a float included) or below 1.
    """
    if not _is_integer(num_params) or num_params < 1:
        raise ConfigError(f"num_params must be a positive integer, got {num_params!r}")
    return int(num_params)


def check_direct(direct: bool) -> bool:
    """Check MADE's ``direct`` flag (direct input-to-output connections): a bool.

    Raises:
        ConfigError: Anything else (the recipes' words ``"output"``/``"none"`` included:
            the module takes ``direct=True``/``False``).
    """
    if not isinstance(direct, (bool, np.bool_)):
        raise ConfigError(
            f"direct must be True or False, got {direct!r} (the recipes' --direct output "
            "is direct=True)"
        )
    return bool(direct)


def check_degrees(degrees: str) -> str:
    """Return ``degrees`` if it is one of :data:`DEGREES`.

    Raises:
        ConfigError: Anything else.
    """
    if degrees not in DEGREES:
        raise ConfigError(
            f"unknown MADE degree scheme {degrees!r}; choose one of {', '.join(DEGREES)}"
        )
    return degrees


def check_agnostic(agnostic: str) -> str:
    """Check what MADE's mask sets ``k >= 1`` draw: ``"order"`` (an ordering and the
    hidden degrees; order- and connectivity-agnostic) or ``"connectivity"`` (the hidden
    degrees only). Raises ConfigError otherwise."""
    if agnostic not in AGNOSTIC:
        raise ConfigError(
            f"unknown MADE mask-set kind {agnostic!r}; choose one of {', '.join(AGNOSTIC)}"
        )
    return agnostic


def made_degrees(
    input_dim: int,
    hidden: Sequence[int],
    order: Sequence[int] | None = None,
    context: bool = False,
    mask_index: int = 0,
    seed: int = 0,
    agnostic: str = "order",
    degrees: str = "spread",
) -> list[np.ndarray]:
    """Degrees of MADE's units, input layer first (Germain et al. 2015, section 4).

    Input ``i`` has degree ``order[i] + 1`` (in ``1..D``). In mask set 0 the ``h`` units of
    each hidden layer have deterministic degrees in ``1..D-1``: with ``degrees="spread"``
    (the default), ``1 + floor(k (D - 2) / (h - 1))`` for unit ``k``, spread evenly from 1 to
    ``D - 1``, so that output ``i`` sees about ``h (i - 1) / (D - 1)`` units of the last
    layer (the paper's expectation for degrees drawn uniformly) and the last output sees
    every input before it; a layer at least ``D - 1`` wide gets the cyclic degrees below.
    With ``degrees="cyclic"`` (ppgen before 2026-12, kept to load runs trained with it),
    ``arange(h) % max(1, D - 1) + 1``: a layer narrower than ``D - 1`` then holds only
    degrees ``1..h``, so the inputs after the ``h``-th in the order feed no unit, and the
    last ``D - h - 1`` outputs never see their nearest predecessors (a MADE of 500 units on
    MNIST's 784 pixels predicted its bottom 283 pixels from the top 500 alone). With a
    context, the degrees are in ``0..D-1`` (spread from 0, or ``arange(h) % D``): units of
    degree 0 see the context only, so the first output in the order depends on the context
    too (as zuko's masked MLP connects its context to every output); without, that output
    is a constant.

    Mask set ``mask_index = k >= 1`` (order- and connectivity-agnostic training, Germain et
    al. 2015, sections 4.2-4.3) ignores ``order``: ``rng = np.random.default_rng(seed + k)``
    draws the ordering ``rng.permutation(D)`` and then each hidden layer's degrees uniformly
    from ``[lo, max(1, D - 1)]``, ``lo`` the smallest degree of the layer below (0 for the
    first layer with a context), so no unit is left without inputs. With
    ``agnostic="connectivity"`` (connectivity-agnostic training only, section 4.3) set ``k``
    keeps ``order`` and draws only the hidden degrees, so every set is autoregressive in the
    same order (what the paper's binarized-MNIST results use, as we read section 6.2).

    Args:
        input_dim: ``D``.
        hidden: Widths of the hidden layers.
        order: See :func:`check_order` (mask set 0 only).
        context: Whether a context feeds every hidden unit of the first layer.
        mask_index: Which mask set, ``k >= 0`` (0: the deterministic one).
        seed: The seed mask sets ``k >= 1`` are drawn from (``seed + k``).
        agnostic: ``"order"`` (sets ``k >= 1`` draw an ordering and the connectivity) or
            ``"connectivity"`` (they keep ``order``).
        degrees: Mask set 0's hidden degrees, ``"spread"`` or ``"cyclic"`` (above).

    Returns:
        ``[input degrees (D,), hidden degrees (h_1,), ...]`` as int arrays.

    Raises:
        ConfigError: A bad order, a hidden width below 1, a negative ``mask_index`` or an
            unknown ``agnostic`` or ``degrees``.
    """
    order = check_order(input_dim, order)
    check_agnostic(agnostic)
    check_degrees(degrees)
    hidden = [int(h) for h in hidden]
    if any(h < 1 for h in hidden):
        raise ConfigError(f"MADE hidden widths must be positive, got {tuple(hidden)}")
    d = int(input_dim)
    if int(mask_index) > 0:
        rng = np.random.default_rng(int(seed) + int(mask_index))
        if agnostic == "order":
            degrees = [rng.permutation(d).astype(np.int64) + 1]
        else:
            degrees = [np.asarray(order, dtype=np.int64) + 1]
        for layer, h in enumerate(hidden):
            lo = 0 if (context and layer == 0) else int(degrees[-1].min())
            degrees.append(rng.integers(lo, max(1, d - 1) + 1, size=h).astype(np.int64))
        return degrees
    if int(mask_index) < 0:
        raise ConfigError(f"mask_index must be an integer >= 0, got {mask_index!r}")
    out = [np.asarray(order, dtype=np.int64) + 1]
    low, high = (0 if context else 1), max(1, d - 1)  # the degrees a hidden unit can take
    span = high - low + 1
    for h in hidden:
        k = np.arange(h, dtype=np.int64)
        if degrees == "spread" and h < span:  # low .. high, both ends included
            out.append(low + k * (high - low) // max(1, h - 1))
        else:
            out.append(k % span + low)
    return out


def made_mask_positions(
    input_dim: int,
    order: Sequence[int] | None = None,
    mask_index: int = 0,
    seed: int = 0,
    agnostic: str = "order",
) -> tuple[int, ...]:
    """The positions (``order`` convention of :func:`check_order`) of MADE's mask set
    ``mask_index``: ``order`` itself for set 0 and for every set when ``agnostic`` is
    ``"connectivity"``, the drawn ordering for ``k >= 1`` otherwise (:func:`made_degrees`).

    Raises:
        ConfigError: A bad order, a negative ``mask_index`` or an unknown ``agnostic``.
    """
    degrees = made_degrees(
        input_dim, [1], order, mask_index=mask_index, seed=seed, agnostic=agnostic
    )
    return tuple(int(p) - 1 for p in degrees[0])


def sampling_order(positions: Sequence[int]) -> tuple[int, ...]:
    """The inputs in the order they are generated: ``argsort(positions)``.

    ``positions[i]`` is the position at which input ``i`` is generated (MADE's ``order``
    argument); the result's ``k``-th entry is the input generated ``k``-th (the
    autoregressive models' ``order`` attribute). The two agree for the identity and the
    reversal.
    """
    return tuple(int(i) for i in np.argsort(np.asarray(positions), kind="stable"))


@functools.lru_cache(maxsize=64)
def _cached_masks(
    input_dim: int,
    hidden: tuple[int, ...],
    num_params: int,
    order: tuple[int, ...],
    context: bool,
    mask_index: int,
    seed: int,
    agnostic: str,
    scheme: str,
) -> tuple[np.ndarray, ...]:
    degrees = made_degrees(input_dim, hidden, order, context, mask_index, seed, agnostic, scheme)
    pairs = zip(degrees[:-1], degrees[1:], strict=True)
    masks = [d_out[:, None] >= d_in[None, :] for d_in, d_out in pairs]
    # Output unit i * num_params + j is parameter j of input i: it has input i's degree.
    out_degrees = np.repeat(degrees[0], num_params)
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    for m in masks:
        m.setflags(write=False)
    return tuple(masks)


def made_masks(
    input_dim: int,
    hidden: Sequence[int],
    num_params: int = 1,
    order: Sequence[int] | None = None,
    context: bool = False,
    mask_index: int = 0,
    seed: int = 0,
    agnostic: str = "order",
    degrees: str = "spread",
) -> list[np.ndarray]:
    """MADE's connectivity masks, one per layer, in torch's layout ``(out, in)``.

    Hidden unit ``k`` of a layer sees unit ``l`` of the layer below when ``m_k >= m_l``;
    output unit ``i * num_params + j`` (parameter ``j`` of input ``i``) sees hidden unit
    ``l`` when ``m(i) > m_l``, so output ``i`` depends only on inputs before it in ``order``.

    Args:
        input_dim: ``D``.
        hidden: Widths of the hidden layers (at least one).
        num_params: Outputs per input, ``p``; the output layer has ``D * p`` units.
        order: See :func:`check_order`.
        context: Whether a context feeds the first hidden layer (see :func:`made_degrees`).
        mask_index: The mask set, ``k >= 0`` (see :func:`made_degrees`).
        seed: The seed mask sets ``k >= 1`` are drawn from.
        agnostic: What sets ``k >= 1`` draw, see :func:`made_degrees`.
        degrees: Set 0's hidden degrees, ``"spread"`` or ``"cyclic"``, see
            :func:`made_degrees`.

    Returns:
        Boolean arrays ``(h_1, D), (h_2, h_1), ..., (D * p, h_L)`` (read-only, cached).

    Raises:
        ConfigError: No hidden layer, a width or ``num_params`` below 1, a bad order, a
            negative ``mask_index``, an unknown ``agnostic`` or ``degrees``.
    """
    check_agnostic(agnostic)
    check_degrees(degrees)
    hidden = tuple(int(h) for h in hidden)
    if not hidden:
        raise ConfigError("MADE needs at least one hidden layer")
    num_params = check_num_params(num_params)
    order = check_order(input_dim, order)
    mask_index = _check_set_index(mask_index)
    if mask_index == 0:
        seed = 0  # set 0 does not depend on the seed: one cache entry
    return list(
        _cached_masks(
            int(input_dim),
            hidden,
            num_params,
            order,
            bool(context),
            mask_index,
            int(seed),
            agnostic,
            degrees,
        )
    )


def made_direct_mask(
    input_dim: int,
    num_params: int = 1,
    order: Sequence[int] | None = None,
    mask_index: int = 0,
    seed: int = 0,
    agnostic: str = "order",
) -> np.ndarray:
    """The mask of MADE's direct input-to-output connections (Germain et al. 2015's code,
    ``direct_input_connect="Output"``, the setting of their MNIST results), torch layout
    ``(out, in)``.

    Output unit ``i * num_params + j`` reads input ``l`` directly when ``l`` comes before
    ``i`` in mask set ``mask_index``'s order (:func:`made_mask_positions`), so the outputs
    stay autoregressive: a MADE with these connections contains the FVSBN (its logistic
    regressions on the previous inputs) and adds the hidden layers' features to them.

    Returns:
        Boolean ``(D * num_params, D)`` (read-only, cached).

    Raises:
        ConfigError: ``num_params`` below 1, a bad order, a negative ``mask_index`` or an
            unknown ``agnostic``.
    """
    num_params = check_num_params(num_params)
    mask_index = _check_set_index(mask_index)
    positions = made_mask_positions(input_dim, order, mask_index, seed, agnostic)
    return _cached_direct_mask(positions, num_params)


@functools.lru_cache(maxsize=64)
def _cached_direct_mask(positions: tuple[int, ...], num_params: int) -> np.ndarray:
    pos = np.asarray(positions)
    mask = np.repeat(pos[:, None] > pos[None, :], num_params, axis=0)
    mask.setflags(write=False)
    return mask


def made_initial_weights(
    input_dim: int,
    hidden: Sequence[int],
    num_params: int,
    context_dim: int,
    seed: int,
    direct: bool = False,
) -> dict[str, np.ndarray]:
    """MADE's initial weights, the same on both backends, by torch name and layout.

    Hidden layers are drawn as ``torch.nn.Linear`` draws them (uniform on
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``) by numpy's generator seeded ``seed``; the context
    layer (``context.weight``, no bias) likewise; the output layer is zero, so a fresh
    MADE outputs zeros and a fresh autoregressive flow is the identity.

    With ``direct``, the direct input-to-output weights ``direct.weight`` ``(D * p, D)``
    (:func:`made_direct_mask`) also start at zero.

    Returns:
        ``{"context.weight": (h_1, context_dim)}`` when ``context_dim > 0``,
        ``{"direct.weight": (D * p, D)}`` with ``direct``, then ``layers.{l}.weight``
        ``(out, in)`` and ``layers.{l}.bias`` ``(out,)`` per layer, the output layer last.
    """
    rng = np.random.default_rng(seed)
    sizes = [int(input_dim), *(int(h) for h in hidden), int(input_dim) * int(num_params)]
    weights = {}
    if context_dim > 0:
        bound = 1.0 / np.sqrt(context_dim)
        weights["context.weight"] = rng.uniform(-bound, bound, (sizes[1], int(context_dim)))
    if direct:
        weights["direct.weight"] = np.zeros((sizes[-1], int(input_dim)))
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        bound = 1.0 / np.sqrt(n_in)
        weights[f"layers.{i}.weight"] = (
            np.zeros((n_out, n_in)) if last else rng.uniform(-bound, bound, (n_out, n_in))
        )
        weights[f"layers.{i}.bias"] = np.zeros(n_out) if last else rng.uniform(-bound, bound, n_out)
    return weights


def fvsbn_mask(dim: int) -> np.ndarray:
    """``(D, D)`` boolean, ``True`` strictly below the diagonal: logit ``i`` of an FVSBN
    reads ``x_j`` for ``j < i`` only (torch layout ``(out, in)``).

    Raises:
        ConfigError: ``dim < 1``.
    """
    dim = _check_positive(dim, "dim")
    mask = np.tril(np.ones((dim, dim), dtype=bool), k=-1)
    mask.setflags(write=False)
    return mask


def fvsbn_initial_weights(dim: int, seed: int) -> dict[str, np.ndarray]:
    """An FVSBN's initial weights, the same on both backends: ``weight`` ``(D, D)`` drawn
    uniform on ``[-1/sqrt(D), 1/sqrt(D)]`` (``torch.nn.Linear``'s rule) by numpy's generator
    seeded ``seed`` (only the strictly lower triangle is used), ``bias`` ``(D,)`` zero.

    Raises:
        ConfigError: ``dim < 1``.
    """
    dim = _check_positive(dim, "dim")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(dim)
    return {"weight": rng.uniform(-bound, bound, (dim, dim)), "bias": np.zeros(dim)}


def nade_initial_weights(dim: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """NADE's initial weights (Larochelle & Murray 2011), the same on both backends, by
    the paper's names in torch layout: ``W`` ``(H, D)`` (input to hidden), ``c`` ``(H,)``,
    ``V`` ``(D, H)`` (hidden to output), ``b`` ``(D,)``. ``W`` and ``V`` are uniform on
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` from numpy's generator seeded ``seed``; the
    biases start at zero.

    Raises:
        ConfigError: ``dim`` or ``hidden`` below 1.
    """
    dim, hidden = _check_positive(dim, "dim"), _check_positive(hidden, "hidden")
    rng = np.random.default_rng(seed)
    return {
        "W": rng.uniform(-1 / np.sqrt(dim), 1 / np.sqrt(dim), (hidden, dim)),
        "c": np.zeros(hidden),
        "V": rng.uniform(-1 / np.sqrt(hidden), 1 / np.sqrt(hidden), (dim, hidden)),
        "b": np.zeros(dim),
    }


def _check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def half_mask(dim: int, flip: bool = False) -> np.ndarray:
    """``(dim,)`` coupling mask, the first ``ceil(dim / 2)`` coordinates ``True`` (flipped:
    the others), the split of RealNVP's vector couplings (Dinh et al. 2016).

    Raises:
        ConfigError: ``dim < 2`` (a coupling needs both halves).
    """
    _check_vector_dim(dim)
    mask = np.arange(int(dim)) < (int(dim) + 1) // 2
    return ~mask if flip else mask


def alternating_mask(dim: int, flip: bool = False) -> np.ndarray:
    """``(dim,)`` coupling mask, even coordinates ``True`` (flipped: odd ones), NICE's
    alternating partition (Dinh et al. 2014).

    Raises:
        ConfigError: ``dim < 2``.
    """
    _check_vector_dim(dim)
    mask = np.arange(int(dim)) % 2 == 0
    return ~mask if flip else mask


def checkerboard_mask(shape: Sequence[int], flip: bool = False) -> np.ndarray:
    """``(C, H, W)`` coupling mask, ``True`` where ``h + w`` is even, in every channel
    (RealNVP's checkerboard, Dinh et al. 2016, figure 3; flipped: where it is odd).

    Raises:
        ConfigError: ``shape`` not three positive sizes, or a single pixel.
    """
    c, h, w = _check_image_shape(shape)
    if h * w < 2:
        raise ConfigError(f"a checkerboard mask needs at least two pixels, got shape {shape}")
    board = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0
    mask = np.broadcast_to(board, (c, h, w)).copy()
    return ~mask if flip else mask


def channel_mask(shape: Sequence[int], flip: bool = False) -> np.ndarray:
    """``(C, H, W)`` coupling mask, the first ``ceil(C / 2)`` channels ``True`` (RealNVP's
    channel-wise masking, Dinh et al. 2016; flipped: the other channels).

    Raises:
        ConfigError: ``shape`` not three positive sizes, or a single channel.
    """
    c, h, w = _check_image_shape(shape)
    if c < 2:
        raise ConfigError(f"a channel mask needs at least two channels, got shape {shape}")
    mask = np.zeros((c, h, w), dtype=bool)
    mask[: (c + 1) // 2] = True
    return ~mask if flip else mask


def check_coupling_mask(mask: np.ndarray | Sequence[bool]) -> np.ndarray:
    """Check a coupling mask; return it as a boolean numpy array.

    Args:
        mask: Boolean array of the event shape, ``(D,)`` or ``(C, H, W)``; ``True`` =
            passed through and read by the conditioner, ``False`` = transformed.

    Raises:
        ConfigError: Not boolean, not 1-D or 3-D, or all ``True`` / all ``False``.
    """
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        raise ConfigError(f"a coupling mask must be boolean, got dtype {array.dtype}")
    if array.ndim not in (1, 3):
        raise ConfigError(
            f"a coupling mask has the event shape, (D,) or (C, H, W), got shape {array.shape}"
        )
    if array.all() or not array.any():
        raise ConfigError(
            "a coupling mask needs both kinds of entries: True (passed through) and False "
            "(transformed)"
        )
    return array.copy()


def _check_vector_dim(dim: int) -> None:
    if int(dim) < 2:
        raise ConfigError(f"a coupling on vectors needs dim >= 2, got {dim!r}")


def _check_image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"image masks take a shape (C, H, W) of positive sizes, got {shape}")
    return shape
