"""Test NLL and milliseconds per step of RealNVP, MAF and NSF on the five 2-D toy densities,
in ppgen-pyro, ppgen-numpyro, zuko (PyTorch) and flowjax (JAX), all in one process.

Setting (the same in all four): 5 transforms, conditioners with two hidden layers of 64 ReLU
units whose last layer starts at zero, standard normal base, affine maps with log-scale
``3 tanh(raw / 3)`` (RealNVP, MAF), rational-quadratic splines with 8 bins on [-5, 5] and
identity tails (NSF: spline coupling), Adam with the same batch size, learning rate, cosine
schedule and number of steps, the same training points and the same minibatches (rows from
``ppgen.data.minibatch_indices``). Each library uses its own networks, masks, spline
evaluation and training loop: ppgen through its ``Trainer`` with ``ELBO()`` and the flow
density's empty guide (what a ppgen user writes), zuko and flowjax through the loops of their
tutorials (``-flow().log_prob(x).mean()`` with ``torch.optim.Adam``; flowjax's ``step`` with
``MaximumLikelihoodLoss`` and ``optax.adam``). By default zuko and flowjax start from ppgen's
initial weights (``--init shared``; ``--init own``: their own draws, last layers zeroed).

What the peers do by default, and what is set here so that all four compute the same
function of the same weights (``tests/test_flow_toy.py`` checks it in float64):

- zuko's ``RealNVP``/``NICE`` alternates coupling masks (no permutation layers) and its
  ``MAF`` alternates orders, as ppgen's flows do; zuko's ``NSF`` is autoregressive, so the
  spline coupling flow here is zuko's ``NICE`` with a spline ``univariate``. flowjax's
  ``coupling_flow`` and ``masked_autoregressive_flow`` put a ``Flip`` after every layer,
  which is the same alternation in 2-D.
- Element-wise maps: zuko's affine map soft-clamps its log-scale to (-6.9, 6.9) and its
  spline uses soft-clamped softmax widths and ``exp`` derivatives; flowjax's affine scale is
  ``softplus(raw) + 0.01`` and its spline learns the two boundary derivatives too (K + 1
  derivatives) with an absolute minimum bin width. Here both get ppgen's parametrisation
  through their documented extension points (zuko's ``univariate=``, flowjax's
  ``transformer=``), evaluated by their own spline code, and both apply it on the data side
  as ppgen's inverse is (zuko and flowjax apply a map's forward on the data side, ppgen's
  maps go noise -> data like Pyro's transforms).
- Initialisation: both draw every layer ``U(+-1/sqrt(fan_in))`` (the last one too, so a
  fresh flow is not the identity); here the last layers are zeroed, as ppgen's are.
- Base: zuko's is a fixed ``N(0, I)``; flowjax's ``Normal`` has a trainable loc and scale,
  frozen here with ``paramax.non_trainable``.

For every (density, flow) cell the four are trained with their epochs interleaved; the test
NLL (nats) is the mean ``-log p`` of the same 10,000 fresh samples for all four, and the time
per step the median over the epochs after the first (which includes JAX's compilation).

    pip install -e '.[bench]'                     # zuko and flowjax
    python benchmarks/flow_toy.py                 # the full run (5000 steps x 15 cells)
    python benchmarks/flow_toy.py --quick         # smoke test: one density, 2 x 5 steps

JSON keys: ``nll_gap_max`` (per backend: the largest ppgen NLL minus the better of zuko's and
flowjax's, over densities and flows), ``numpyro_vs_flowjax`` and ``pyro_vs_zuko`` (median
over cells of the per-cell ratio of median step times), and ``cells`` (the per-cell table).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Stopwatch,
    given_options,
    hardware,
    median,
    parse,
    quick_settings,
    result_name,
    write_result,
)

# ppgen's element-wise maps: log_scale = B tanh(raw / B); spline bins at least MIN_BIN_WIDTH
# and MIN_BIN_HEIGHT of 2 * BOUND, interior derivatives
# MIN_DERIVATIVE + softplus(raw + DERIVATIVE_SHIFT).
from ppgen.models.elementwise import (  # noqa: E402
    DERIVATIVE_SHIFT,
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    MIN_DERIVATIVE,
)
from ppgen.models.flows import AFFINE_LOG_SCALE_BOUND as LOG_SCALE_BOUND  # noqa: E402

NAME = "flow_toy"
FLOWS = ("realnvp", "maf", "nsf")
LIBRARIES = ("pyro", "numpyro", "zuko", "flowjax")
LAYERS, HIDDEN = 5, (64, 64)
BINS, BOUND = 8, 5.0  # ppgen's RationalQuadraticSpline defaults
NSF_KIND = "coupling"  # ppgen's "nsf": spline coupling (Durkan et al. 2019, RQ-NSF (C))
N_TEST = 10_000
TEST_SEED, TRAIN_SEED = 12345, 0


def setting(init: str) -> str:
    """The JSON's one-line description of the setting and of what still differs."""
    start = (
        "zuko and flowjax start from ppgen's initial weights"
        if init == "shared"
        else "each library draws its own hidden-layer weights"
    )
    return (
        f"{LAYERS} transforms, conditioner hidden {HIDDEN} ReLU, last layer zero at init, "
        f"N(0, I) base; affine log-scale {LOG_SCALE_BOUND:g} tanh(raw/{LOG_SCALE_BOUND:g}); "
        f"NSF = spline {NSF_KIND}, {BINS} bins on [-{BOUND:g}, {BOUND:g}], identity tails; "
        "Adam with the same batch, learning rate, schedule, steps and minibatches in all "
        f"four; {start}; test NLL on the same fresh samples. Differences: each library's "
        "networks, masks, spline evaluation, Adam (torch fused for ppgen-pyro and zuko, optax "
        "for ppgen-numpyro and flowjax) and float32 arithmetic"
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

            def knots(raw, least):
                w = least + (1 - k * least) * torch.softmax(raw, dim=-1)
                return BOUND * (2 * F.pad(torch.cumsum(w, dim=-1), (1, 0), value=0.0) - 1)

            self.horizontal = knots(widths, MIN_BIN_WIDTH)
            self.vertical = knots(heights, MIN_BIN_HEIGHT)
            d = MIN_DERIVATIVE + F.softplus(derivatives + DERIVATIVE_SHIFT)
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

    def __init__(self, flow: str, seed: int, lr: float, schedule: str, steps: int) -> None:
        import torch

        self.torch = torch
        self.flow = zuko_flow(flow, seed)
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=lr, fused=True)
        # torch's cosine annealing to 0 at `steps` (ppgen's "cosine"), or a constant rate.
        self.sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=steps)
            if schedule == "cosine"
            else None
        )

    def load(self, weights: Weights, flow: str) -> None:
        """Start from ``weights`` (shared layout), before the first step."""
        set_zuko_weights(self.flow, weights)

    def epoch(self, x: np.ndarray, batches: np.ndarray) -> float:
        xt = self.torch.from_numpy(x)
        total = 0.0
        for idx in self.torch.from_numpy(batches.astype(np.int64)):
            loss = -self.flow().log_prob(xt[idx]).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.sched is not None:
                self.sched.step()
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
    from paramax import Parameterize, RealToIncreasingOnInterval

    def exp_log_scale(raw):
        return jnp.exp(LOG_SCALE_BOUND * jnp.tanh(raw / LOG_SCALE_BOUND))

    affine = eqx.tree_at(
        lambda a: a.scale, Affine(), replace=Parameterize(exp_log_scale, jnp.zeros(()))
    )

    def derivatives(raw):
        inner = MIN_DERIVATIVE + jax.nn.softplus(raw + DERIVATIVE_SHIFT)
        pad = [(0, 0)] * (inner.ndim - 1) + [(1, 1)]  # unwrap may see a stacked (n, K-1)
        return jnp.pad(inner, pad, constant_values=1.0)

    spline = RationalQuadraticSpline(
        knots=BINS - 1,
        interval=BOUND,
        min_derivative=MIN_DERIVATIVE,
        min_width=2 * BOUND * MIN_BIN_WIDTH,
    )
    heights = RealToIncreasingOnInterval(
        jnp.zeros(BINS),
        interval=(-BOUND, BOUND),
        min_width=2 * BOUND * MIN_BIN_HEIGHT,
        include_endpoints="both",
    )
    spline = eqx.tree_at(
        lambda s: (s.y_pos, s.derivatives),
        spline,
        replace=(heights, Parameterize(derivatives, jnp.zeros(BINS - 1))),
    )
    return Invert(affine), Invert(spline)


def flowjax_flow(flow: str, seed: int):
    """flowjax's ``coupling_flow`` / ``masked_autoregressive_flow`` (5 layers, width 64,
    depth 2, ReLU, a ``Flip`` after each layer) on a frozen standard normal base, with
    ppgen's maps and zeroed last layers."""
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import paramax
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
        # flowjax's Normal has a trainable loc and scale: frozen, as zuko's and ppgen's base.
        base_dist=paramax.non_trainable(Normal(jnp.zeros(2))),
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


def ppgen_to_layout(weights: dict[str, np.ndarray]) -> Weights:
    """A ppgen flow's ``get_weights()`` (keys ``layers.<i>.<net>.layers.<k>.weight``, ``i``
    from the noise side) in the layout above (data side first)."""
    layers: dict[int, dict[int, dict[str, np.ndarray]]] = {}
    for key, value in weights.items():
        parts = key.split(".")
        i, k, kind = int(parts[1]), int(parts[-2]), parts[-1]
        layers.setdefault(i, {}).setdefault(k, {})[kind] = np.asarray(value)
    return [
        [(net[k]["weight"], net[k]["bias"]) for k in sorted(net)]
        for _, net in sorted(layers.items(), reverse=True)
    ]


def layout_to_ppgen(weights: Weights, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``weights`` (layout above) as a ppgen ``set_weights`` dict with the keys of ``like``
    (a ``get_weights()`` of the same flow)."""
    n = len(weights)
    out = {}
    for key, value in like.items():
        parts = key.split(".")
        i, k, kind = int(parts[1]), int(parts[-2]), parts[-1]
        out[key] = np.asarray(weights[n - 1 - i][k][kind == "bias"], dtype=value.dtype)
    return out


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
                m.weight.copy_(torch.as_tensor(np.array(w)))
                m.bias.copy_(torch.as_tensor(np.array(b)))
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

    def __init__(self, flow: str, seed: int, lr: float, schedule: str, steps: int) -> None:
        import equinox as eqx
        import jax.numpy as jnp
        import optax
        from flowjax.train.losses import MaximumLikelihoodLoss
        from flowjax.train.train_utils import step

        self.jnp, self.step, self.loss = jnp, step, MaximumLikelihoodLoss()
        # optax's cosine decay to 0 at `steps` (ppgen's "cosine"), or a constant rate.
        rate = optax.cosine_decay_schedule(lr, steps) if schedule == "cosine" else lr
        self.optimizer = optax.adam(rate)
        self._start(flowjax_flow(flow, seed))
        self.log_prob = eqx.filter_jit(lambda params, x: self._dist(params).log_prob(x))

    def _start(self, dist) -> None:
        import equinox as eqx
        import paramax

        self.params, self.static = eqx.partition(
            dist, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
        )
        self.opt_state = self.optimizer.init(self.params)

    def load(self, weights: Weights, flow: str) -> None:
        """Start from ``weights`` (shared layout), before the first step."""
        import equinox as eqx

        self._start(set_flowjax_weights(eqx.combine(self.params, self.static), weights, flow))

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


# --------------------------------------------------------------------------------------------
# ppgen: build_flow + FlowDensity, trained by ppgen's Trainer with ELBO() and the empty guide.


class PpgenRunner:
    """What a ppgen user writes: ``build_flow``, ``FlowDensity``, ``Trainer(model, guide,
    ELBO())`` and ``train_epoch`` (its minibatches are ``minibatch_indices(n, batch,
    seed=TRAIN_SEED, epoch)``, the rows the peers get too); the test NLL is the trained
    density's exact ``log_prob`` (``bind(trainer.params(state))``)."""

    def __init__(
        self,
        backend: str,
        flow: str,
        seed: int,
        lr: float,
        schedule: str,
        steps: int,
        batch: int,
        x: np.ndarray,
    ) -> None:
        if backend == "pyro":
            from ppgen.inference import pyro as inference
            from ppgen.models import pyro as models
        else:
            from ppgen.inference import numpyro as inference
            from ppgen.models import numpyro as models
        self.backend = backend
        built = models.build_flow(flow, (2,), layers=LAYERS, hidden=HIDDEN, seed=seed)
        self.density = models.FlowDensity((2,), built)
        self.trainer = inference.Trainer(
            self.density.model,
            self.density.guide,
            inference.ELBO(),
            lr=lr,
            lr_schedule=schedule,
            total_steps=steps if schedule != "constant" else None,
            batch_size=batch,
            num_data=len(x),
        )
        self.state = self.trainer.init(TRAIN_SEED, x[:batch])

    def initial_weights(self) -> Weights:
        """The flow's weights before training, in the shared layout."""
        return ppgen_to_layout(self.density.flow.get_weights())

    def epoch(self, x: np.ndarray, epoch: int) -> float:
        self.state, metrics = self.trainer.train_epoch(self.state, x, epoch)
        return float(metrics["loss"])  # float() waits for JAX's async result

    def nll(self, x: np.ndarray) -> float:
        bound = self.density.bind(self.trainer.params(self.state))
        if self.backend == "pyro":
            import torch

            with torch.no_grad():
                log_p = bound.log_prob(torch.from_numpy(x)).numpy()
        else:
            import jax

            log_p = np.asarray(jax.jit(bound.log_prob)(x))  # one compiled call, not op by op
        return float(-np.mean(log_p.astype(np.float64)))


def make_runner(library: str, flow: str, seed: int, args: argparse.Namespace, x: np.ndarray, start):
    """A runner of ``library`` for ``flow`` with initial weights from ``seed``; the peers
    start from ``start`` (shared-layout weights) when given, else from their own draws with
    the last layers zeroed."""
    steps, schedule = args.epochs * args.steps_per_epoch, args.lr_schedule
    if library in ("pyro", "numpyro"):
        return PpgenRunner(library, flow, seed, args.lr, schedule, steps, args.batch, x)
    peer = ZukoRunner if library == "zuko" else FlowjaxRunner
    runner = peer(flow, seed, args.lr, schedule, steps)
    if start is not None:
        runner.load(start, flow)
    return runner


def train_cell(density: str, flow: str, args: argparse.Namespace, libraries: tuple[str, ...]):
    """Train ``flow`` on ``density`` in every library ``args.repeats`` times (initial weights
    from seeds ``args.seed, args.seed + 1, ...``), epochs interleaved; return the cell's row:
    the median test NLL over repeats and the median milliseconds per step over all timed
    epochs, per library, with each repeat's NLL."""
    runs = [train_once(density, flow, args, libraries, args.seed + r) for r in range(args.repeats)]
    return {
        "density": density,
        "flow": flow,
        "nll": {lib: median([run["nll"][lib] for run in runs]) for lib in libraries},
        "ms_per_step": {
            lib: median([t for run in runs for t in run["ms"][lib]]) for lib in libraries
        },
        "nll_runs": {lib: [run["nll"][lib] for run in runs] for lib in libraries},
        "final_train_loss": runs[-1]["loss"],
    }


def train_once(
    density: str, flow: str, args: argparse.Namespace, libraries: tuple[str, ...], seed: int
) -> dict:
    """One training of ``flow`` on ``density`` in every library: test NLL, the timed epochs'
    milliseconds per step and the last epoch's training loss, per library."""
    from ppgen.data import minibatch_indices
    from ppgen.data.toy import sample_toy

    x = sample_toy(density, args.steps_per_epoch * args.batch, seed=TRAIN_SEED)
    x_test = sample_toy(density, args.n_test, seed=TEST_SEED)
    runners: dict = {}
    start = None
    for lib in sorted(libraries, key=lambda lib: lib not in ("pyro", "numpyro")):  # ppgen first
        runners[lib] = make_runner(lib, flow, seed, args, x, start)
        if args.init == "shared" and start is None and lib in ("pyro", "numpyro"):
            start = runners[lib].initial_weights()
    ms: dict[str, list[float]] = {lib: [] for lib in libraries}
    loss: dict[str, float] = {}
    for epoch in range(args.epochs):
        batches = minibatch_indices(len(x), args.batch, seed=TRAIN_SEED, epoch=epoch)
        for lib in libraries:
            t0 = time.perf_counter()
            if lib in ("pyro", "numpyro"):
                loss[lib] = runners[lib].epoch(x, epoch)
            else:
                loss[lib] = runners[lib].epoch(x, batches)
            dt = (time.perf_counter() - t0) * 1e3 / len(batches)
            if epoch > 0 or args.epochs == 1:
                ms[lib].append(dt)
        if args.verbose:
            print(
                f"  {density}/{flow} seed {seed} epoch {epoch + 1}/{args.epochs} "
                + " ".join(f"{lib} {loss[lib]:.3f}" for lib in libraries),
                flush=True,
            )
    return {"nll": {lib: runners[lib].nll(x_test) for lib in libraries}, "ms": ms, "loss": loss}


def summarize(cells: list[dict], libraries: tuple[str, ...]) -> dict:
    """``nll_gap_max`` per ppgen backend and the median step-time ratios over cells."""
    out: dict = {}
    peers = [p for p in ("zuko", "flowjax") if p in libraries]
    if peers:
        gaps = {
            b: max(c["nll"][b] - min(c["nll"][p] for p in peers) for c in cells)
            for b in ("pyro", "numpyro")
            if b in libraries
        }
        out["nll_gap_max"] = gaps
    for key, (ours, theirs) in {
        "numpyro_vs_flowjax": ("numpyro", "flowjax"),
        "pyro_vs_zuko": ("pyro", "zuko"),
    }.items():
        if ours in libraries and theirs in libraries:
            out[key] = median([c["ms_per_step"][ours] / c["ms_per_step"][theirs] for c in cells])
    return out


def main(argv: list[str] | None = None) -> dict:
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--densities", default=",".join(_densities()), help="comma-separated")
    parser.add_argument("--flows", default=",".join(FLOWS), help="comma-separated")
    parser.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (the first is warm-up)")
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine: annealed to 0 at the last step in all four (default)",
    )
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="trainings per cell (seeds --seed, --seed + 1, ...); the NLL is their median",
    )
    parser.add_argument(
        "--init",
        choices=("shared", "own"),
        default="shared",
        help="shared: zuko and flowjax start from ppgen's initial weights (default); own: "
        "from their own draws, last layers zeroed",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 epochs of 5 steps")
    parser.add_argument("--verbose", action="store_true", help="a line per epoch")
    parser.add_argument("--out", type=result_name, default=NAME,
                        help="name of the result file, benchmarks/results/<name>.json")  # fmt: skip
    args = parse(parser, argv)
    missing = peers_missing()
    if missing:
        print(f"{INSTALL_HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        raise SystemExit(2)
    if args.quick:
        quick = {"epochs": 2, "steps_per_epoch": 5, "n_test": 500}
        quick_settings(parser, args, quick, argv=argv)
        if "densities" not in given_options(parser, argv):
            args.densities = "two_moons"
        args.out = f"{NAME}_quick" if args.out == NAME else args.out
    densities = tuple(args.densities.split(","))
    flows = tuple(args.flows.split(","))
    libraries = tuple(args.libraries.split(","))
    clock = Stopwatch()
    cells = []
    total = len(densities) * len(flows)
    for density in densities:
        for flow in flows:
            cell = train_cell(density, flow, args, libraries)
            cells.append(cell)
            print(
                f"[{len(cells)}/{total}] {density:12s} {flow:8s} NLL "
                + " ".join(f"{lib} {cell['nll'][lib]:.4f}" for lib in libraries)
                + " | ms/step "
                + " ".join(f"{lib} {cell['ms_per_step'][lib]:.2f}" for lib in libraries)
                + f" | {clock.minutes():.1f} min",
                flush=True,
            )
    result = {
        **summarize(cells, libraries),
        "cells": cells,
        "steps": args.epochs * args.steps_per_epoch,
        "timed_steps": (args.epochs - 1) * args.steps_per_epoch,
        "batch": args.batch,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "n_train": args.steps_per_epoch * args.batch,
        "n_test": args.n_test,
        "init": args.init,
        "repeats": args.repeats,
        "quick": args.quick,
        "threads": 1,
        "wall_minutes": clock.minutes(),
        "setting": setting(args.init),
        "versions": _peer_versions(),
        "hardware": hardware(),
    }
    write_result(args.out, result)
    return result


def single_threaded() -> None:
    """One compute thread for torch and for XLA (unless ``XLA_FLAGS`` says otherwise).

    The networks are tiny (two layers of 64 on batches of 256): a second thread buys little,
    and with torch and JAX in one process their thread pools spin against each other (on a
    loaded 2-core machine torch's steps took 20x longer with 2 threads than with 1). Both
    libraries of each ratio run the same framework, so they get the same threads.
    """
    import os

    import torch

    torch.set_num_threads(1)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()


def _densities() -> tuple[str, ...]:
    """The five flow-literature densities (FFJORD's); the mode-collapse mixtures ring8 and
    grid25 of ``ppgen.data.toy`` serve benchmarks/gan_toy.py."""
    from ppgen.data.toy import TOY_DENSITIES

    return tuple(d for d in TOY_DENSITIES if d not in ("ring8", "grid25"))


def _peer_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("zuko", "flowjax", "equinox", "optax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
