"""Test NLL and milliseconds per step of RealNVP, MAF and NSF on the five 2-D toy densities,
in ppgen-pyro, ppgen-numpyro, zuko (PyTorch) and flowjax (JAX), all in one process.

Setting (the same in all four): 5 transforms, conditioners with two hidden layers of 64 ReLU
units whose last layer starts at zero (a fresh flow is the identity), standard normal base,
affine maps with log-scale ``3 tanh(raw / 3)`` (RealNVP, MAF), rational-quadratic splines with
8 bins on [-5, 5] and identity tails (NSF, spline coupling), Adam, the same batch size,
learning rate and number of steps, the same training points and the same minibatches (rows
from ``ppgen.data.minibatch_indices``). Each library uses its own networks, masks, spline code
and training loop: ppgen through its ``Trainer`` with ``ELBO()`` and the flow density's empty
guide (what a ppgen user writes), zuko and flowjax through the loops of their tutorials
(``-flow().log_prob(x).mean()`` with ``torch.optim.Adam``; flowjax's ``step`` with
``MaximumLikelihoodLoss`` and ``optax.adam``). The element-wise maps of zuko and flowjax are
given ppgen's parametrisation through their documented extension points (zuko's
``univariate=``, flowjax's ``transformer=``) so that all four learn the same function class;
see ``SETTING`` for what still differs.

For every (density, flow) cell the four are trained with their epochs interleaved; the test
NLL (nats) is the mean ``-log p`` of the same 10,000 fresh samples for all four, and the time
per step the median over the epochs after the first (which includes JAX's compilation).

    pip install -e '.[bench]'                     # zuko and flowjax
    python benchmarks/flow_toy.py                 # the full run
    python benchmarks/flow_toy.py --quick         # a smoke test (seconds)

JSON keys: ``nll_gap_max`` (per backend: the largest ppgen NLL minus the better of zuko's and
flowjax's, over densities and flows), ``numpyro_vs_flowjax`` and ``pyro_vs_zuko`` (median
over cells of the per-cell ratio of median step times), and ``cells`` (the per-cell table).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, median, write_result  # noqa: E402

NAME = "flow_toy"
FLOWS = ("realnvp", "maf", "nsf")
LIBRARIES = ("pyro", "numpyro", "zuko", "flowjax")
LAYERS, HIDDEN = 5, (64, 64)
LOG_SCALE_BOUND = 3.0  # ppgen's Affine: log_scale = bound * tanh(raw / bound)
BINS, BOUND = 8, 5.0  # ppgen's RationalQuadraticSpline defaults
MIN_BIN, MIN_DERIVATIVE = 1e-3, 1e-3
# ppgen's spline derivatives are MIN_DERIVATIVE + softplus(raw + SPLINE_DERIVATIVE_SHIFT).
SPLINE_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))
NSF_KIND = "coupling"  # ppgen's "nsf": spline coupling (Durkan et al. 2019, RQ-NSF (C))
N_TEST = 10_000
TEST_SEED, TRAIN_SEED = 12345, 0

SETTING = (
    f"{LAYERS} transforms, conditioner hidden {HIDDEN} ReLU, last layer zero at init, "
    f"N(0, I) base; affine log-scale {LOG_SCALE_BOUND:g} tanh(raw/{LOG_SCALE_BOUND:g}); "
    f"NSF = spline {NSF_KIND}, {BINS} bins on [-{BOUND:g}, {BOUND:g}], identity tails; "
    "Adam, same batch/lr/steps and the same minibatches in all four; test NLL on the same "
    f"{N_TEST} fresh samples. Differences: hidden-layer initial weights (each library's "
    "own U(+-1/sqrt(fan_in)) draws), Adam implementation (torch fused for ppgen-pyro and "
    "zuko, optax for ppgen-numpyro and flowjax), and each library's float32 arithmetic"
)

INSTALL_HINT = (
    "flow_toy needs the benchmark-only packages zuko and flowjax: pip install -e '.[bench]'"
)


def peers_missing() -> list[str]:
    """The names of the peer libraries (zuko, flowjax) that cannot be imported."""
    return [m for m in ("zuko", "flowjax") if importlib.util.find_spec(m) is None]


# --------------------------------------------------------------------------------------------
# zuko: its flows, with ppgen's element-wise parametrisation plugged in as `univariate`.


def zuko_univariates():
    """ppgen's affine map and spline as zuko univariate transforms (data -> noise).

    ppgen's maps go noise -> data (Pyro's convention); on the data side a flow applies their
    inverse. zuko applies a univariate transform's forward on the data side, so these classes
    are the inverses of ppgen's maps, with zuko's own evaluation code underneath.
    """
    import torch
    import torch.nn.functional as F
    from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

    class Affine(MonotonicAffineTransform):
        """``z = (x - t) exp(-s)``, ``s = 3 tanh(raw / 3)``: ppgen's ``y = x exp(s) + t``
        inverted, written as zuko's ``z = x exp(a) + b`` with ``a = -s``,
        ``b = -t exp(-s)``."""

        def __init__(self, shift, raw, **kwargs) -> None:
            torch.distributions.Transform.__init__(self, **kwargs)
            log_scale = LOG_SCALE_BOUND * torch.tanh(raw / LOG_SCALE_BOUND)
            self.log_scale = -log_scale
            self.scale = torch.exp(-log_scale)
            self.shift = -shift * self.scale

    class Spline(MonotonicRQSTransform):
        """The inverse of ppgen's rational-quadratic spline: knots
        ``B (2 cumsum(widths) - 1)``, ``widths = m + (1 - K m) softmax(raw)``, interior
        derivatives ``m + softplus(raw + shift)``, boundary derivatives 1."""

        def __init__(self, widths, heights, derivatives, **kwargs) -> None:
            torch.distributions.Transform.__init__(self, **kwargs)
            k = widths.shape[-1]

            def knots(raw):
                w = MIN_BIN + (1 - k * MIN_BIN) * torch.softmax(raw, dim=-1)
                return BOUND * (2 * F.pad(torch.cumsum(w, dim=-1), (1, 0), value=0.0) - 1)

            self.horizontal, self.vertical = knots(widths), knots(heights)
            d = MIN_DERIVATIVE + F.softplus(derivatives + SPLINE_DERIVATIVE_SHIFT)
            self.derivatives = F.pad(d, (1, 1), value=1.0)

        def _call(self, y):
            return super()._inverse(y)

        def _inverse(self, x):
            return super()._call(x)

        def log_abs_det_jacobian(self, y, x):
            return self.call_and_ladj(y)[1]

        def call_and_ladj(self, y):
            """zuko's ``_inverse`` and the log-derivative of the forward map at the result,
            negated (one bin search)."""
            k = self.searchsorted(self.vertical, y) - 1
            mask, x0, x1, y0, y1, d0, d1, s = self.bin(k)
            y_ = mask * (y - y0)
            a = (y1 - y0) * (s - d0) + y_ * (d0 + d1 - 2 * s)
            b = (y1 - y0) * d0 - y_ * (d0 + d1 - 2 * s)
            c = -s * y_
            z = 2 * c / (-b - (b**2 - 4 * a * c).sqrt())
            x = x0 + z * (x1 - x0)
            jac = (
                s**2
                * (2 * s * z * (1 - z) + d0 * (1 - z) ** 2 + d1 * z**2)
                / (s + (d0 + d1 - 2 * s) * z * (1 - z)) ** 2
            )
            return torch.where(mask, x, y), -(mask * jac.log())

    return Affine, Spline


def zuko_flow(flow: str, seed: int):
    """zuko's RealNVP (``NICE`` with affine maps), MAF, or NSF (spline ``NICE`` for coupling,
    spline ``MAF`` for autoregressive), 2-D, with ppgen's maps and zeroed last layers.

    Layer 0 acts on the data; its mask conditions on x0 (zuko's alternating masks), the MAF
    orders alternate (x0 first on the data side), as in ppgen's flows.
    """
    import torch
    import zuko

    affine, spline = zuko_univariates()
    affine_kw = dict(univariate=affine, shapes=((), ()))
    spline_kw = dict(univariate=spline, shapes=((BINS,), (BINS,), (BINS - 1,)))
    kind = {
        "realnvp": (zuko.flows.NICE, affine_kw),
        "maf": (zuko.flows.MAF, affine_kw),
        "nsf": (zuko.flows.NICE if NSF_KIND == "coupling" else zuko.flows.MAF, spline_kw),
    }
    cls, kw = kind[flow]
    torch.manual_seed(seed)
    model = cls(2, transforms=LAYERS, hidden_features=HIDDEN, **kw)
    with torch.no_grad():
        for t in model.transform.transforms:
            t.hyper[-1].weight.zero_()
            t.hyper[-1].bias.zero_()
    return model


class ZukoRunner:
    """zuko's training loop of its tutorial: ``loss = -flow().log_prob(x).mean()``, Adam
    (fused, as ppgen's Pyro trainer uses)."""

    def __init__(self, flow: str, seed: int, lr: float) -> None:
        import torch

        self.torch = torch
        self.flow = zuko_flow(flow, seed)
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=lr, fused=True)

    def epoch(self, x: np.ndarray, batches: np.ndarray) -> float:
        xt = self.torch.from_numpy(x)
        total = 0.0
        for idx in self.torch.from_numpy(batches.astype(np.int64)):
            loss = -self.flow().log_prob(xt[idx]).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.item()
        return total / len(batches)

    def nll(self, x: np.ndarray) -> float:
        with self.torch.no_grad():
            return float(-self.flow().log_prob(self.torch.from_numpy(x)).double().mean())


# --------------------------------------------------------------------------------------------
# flowjax: its flows, with ppgen's element-wise parametrisation as the `transformer`.


def flowjax_transformers():
    """ppgen's affine map and spline as flowjax transformers (data -> noise): flowjax's
    ``Affine`` and ``RationalQuadraticSpline`` with ppgen's parametrisation, inverted.

    flowjax's flows (``invert=True``) apply a transformer's ``transform`` on the data side;
    ppgen's maps go noise -> data, so both are wrapped in ``Invert``. flowjax's spline has
    ``knots = K - 1`` inner knots (K bins), an absolute minimum bin width (ppgen's relative
    ``1e-3`` of ``2B``) and learned boundary derivatives, pinned here to 1 as in ppgen.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from flowjax.bijections import Affine, Invert, RationalQuadraticSpline
    from paramax import Parameterize

    def exp_log_scale(raw):
        return jnp.exp(LOG_SCALE_BOUND * jnp.tanh(raw / LOG_SCALE_BOUND))

    affine = eqx.tree_at(
        lambda a: a.scale, Affine(), replace=Parameterize(exp_log_scale, jnp.zeros(()))
    )

    def derivatives(raw):
        inner = MIN_DERIVATIVE + jax.nn.softplus(raw + SPLINE_DERIVATIVE_SHIFT)
        pad = [(0, 0)] * (inner.ndim - 1) + [(1, 1)]  # unwrap may see a stacked (n, K-1)
        return jnp.pad(inner, pad, constant_values=1.0)

    spline = RationalQuadraticSpline(
        knots=BINS - 1, interval=BOUND, min_derivative=MIN_DERIVATIVE, min_width=2 * BOUND * MIN_BIN
    )
    spline = eqx.tree_at(
        lambda s: s.derivatives, spline, replace=Parameterize(derivatives, jnp.zeros(BINS - 1))
    )
    return Invert(affine), Invert(spline)


def flowjax_flow(flow: str, seed: int):
    """flowjax's ``coupling_flow`` / ``masked_autoregressive_flow`` (5 layers, width 64,
    depth 2, ReLU, a ``Flip`` after each layer), with ppgen's maps and zeroed last layers."""
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow, masked_autoregressive_flow

    affine, spline = flowjax_transformers()
    builder = {
        "realnvp": (coupling_flow, affine),
        "maf": (masked_autoregressive_flow, affine),
        "nsf": (coupling_flow if NSF_KIND == "coupling" else masked_autoregressive_flow, spline),
    }
    make, transformer = builder[flow]
    dist = make(
        jr.key(seed),
        base_dist=Normal(jnp.zeros(2)),
        transformer=transformer,
        flow_layers=LAYERS,
        nn_width=HIDDEN[0],
        nn_depth=len(HIDDEN),
    )
    return eqx.tree_at(_flowjax_last_layer, dist, replace_fn=jnp.zeros_like)


def _flowjax_net(dist):
    """The conditioner of flowjax's stacked layers (``Invert(Scan(Chain[layer, Flip]))``)."""
    layer = dist.bijection.bijection.bijection.bijections[0]
    return getattr(layer, "conditioner", None) or layer.masked_autoregressive_mlp


def _flowjax_weight(linear):
    """A flowjax linear layer's weight array (inside the autoregressive mask's wrapper)."""
    from paramax import Parameterize

    return linear.weight.args[1] if isinstance(linear.weight, Parameterize) else linear.weight


def _flowjax_last_layer(dist):
    """The last conditioner layer's weight and bias of every (stacked) flowjax layer."""
    last = _flowjax_net(dist).layers[-1]
    return _flowjax_weight(last), last.bias


# --------------------------------------------------------------------------------------------
# Weights in one layout for all libraries: per flow layer, counted from the data side, the
# conditioner's (weight (out, in), bias) pairs in the natural coordinates (x0, x1) of that
# layer's input, as zuko holds them. Used to start libraries from the same weights and by the
# tests (the same weights give the same log-density in every library).

Weights = list[list[tuple[np.ndarray, np.ndarray]]]


def autoregressive(flow: str) -> bool:
    """Whether ``flow`` is built from masked autoregressive layers (else coupling layers)."""
    return flow == "maf" or (flow == "nsf" and NSF_KIND == "autoregressive")


def zuko_weights(model) -> Weights:
    """The conditioner weights of a :func:`zuko_flow` (data-side layer first)."""
    return [
        [
            (m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
            for m in t.hyper
            if hasattr(m, "weight")
        ]
        for t in model.transform.transforms
    ]


def set_zuko_weights(model, weights: Weights):
    """Copy ``weights`` into a :func:`zuko_flow` in place; returns it."""
    import torch

    with torch.no_grad():
        for t, layer in zip(model.transform.transforms, weights, strict=True):
            linears = [m for m in t.hyper if hasattr(m, "weight")]
            for m, (w, b) in zip(linears, layer, strict=True):
                m.weight.copy_(torch.from_numpy(np.asarray(w)))
                m.bias.copy_(torch.from_numpy(np.asarray(b)))
    return model


def set_flowjax_weights(dist, weights: Weights, flow: str):
    """A copy of a :func:`flowjax_flow` holding ``weights``.

    flowjax flips the coordinates after every layer, so its odd layers see ``(x1, x0)``: an
    autoregressive layer's input columns and output blocks are swapped to match (a coupling
    layer reads and writes one coordinate, nothing to swap).
    """
    import equinox as eqx
    import jax.numpy as jnp

    def flowjax_layout(j: int, k: int, w: np.ndarray, b: np.ndarray):
        if not (autoregressive(flow) and j % 2 == 1):
            return w, b
        if k == 0:
            return w[:, ::-1], b
        if k == len(weights[j]) - 1:
            p = w.shape[0] // 2
            return w.reshape(2, p, -1)[::-1].reshape(w.shape), b.reshape(2, p)[::-1].reshape(-1)
        return w, b

    stacked = []
    for k in range(len(weights[0])):
        pairs = [flowjax_layout(j, k, *layer[k]) for j, layer in enumerate(weights)]
        stacked.append(jnp.asarray(np.stack([w for w, _ in pairs])))
        stacked.append(jnp.asarray(np.stack([b for _, b in pairs])))

    def leaves(d):
        return [
            leaf
            for linear in _flowjax_net(d).layers
            for leaf in (_flowjax_weight(linear), linear.bias)
        ]

    return eqx.tree_at(leaves, dist, replace=stacked)


class FlowjaxRunner:
    """flowjax's training step (``flowjax.train.train_utils.step``, the one ``fit_to_data``
    runs for each batch) with ``MaximumLikelihoodLoss`` and ``optax.adam``."""

    def __init__(self, flow: str, seed: int, lr: float) -> None:
        import equinox as eqx
        import jax.numpy as jnp
        import optax
        import paramax
        from flowjax.train.losses import MaximumLikelihoodLoss
        from flowjax.train.train_utils import step

        self.jnp, self.step, self.loss = jnp, step, MaximumLikelihoodLoss()
        dist = flowjax_flow(flow, seed)
        self.params, self.static = eqx.partition(
            dist, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
        )
        self.optimizer = optax.adam(lr)
        self.opt_state = self.optimizer.init(self.params)
        self.log_prob = eqx.filter_jit(lambda params, x: self._dist(params).log_prob(x))

    def _dist(self, params):
        import equinox as eqx
        import paramax

        return paramax.unwrap(eqx.combine(params, self.static))

    def epoch(self, x: np.ndarray, batches: np.ndarray) -> float:
        xj = self.jnp.asarray(x)
        losses = []
        for idx in batches:
            self.params, self.opt_state, loss = self.step(
                self.params,
                self.static,
                xj[idx],
                optimizer=self.optimizer,
                opt_state=self.opt_state,
                loss_fn=self.loss,
            )
            losses.append(loss)
        return float(np.mean(np.asarray(losses)))  # waits for JAX's async results

    def nll(self, x: np.ndarray) -> float:
        return float(-np.mean(np.asarray(self.log_prob(self.params, self.jnp.asarray(x)))))
