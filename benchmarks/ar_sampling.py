"""Cached against naive sampling of the autoregressive models, per CPU core, on both backends:
WaveNet (one second of 16 kHz audio), Gated PixelCNN (one 28 x 28 binary image), NADE (one
784-pixel binary image) and char-RNN (one sequence of 200 characters).

Every model has the size its recipe trains by default, with its seeded initial weights
(sampling speed does not depend on the weights): WaveNet 1 stack of 10 dilated layers,
32 residual and 128 skip channels, a ``Categorical(256)`` head (``ppgen train wavenet``);
Gated PixelCNN 7 layers of 32 channels, kernel 3, a Bernoulli head (``ppgen train
pixelcnn``); NADE with 500 hidden units (``ppgen train nade``); char-RNN two LSTM layers of
256 on a 65-character vocabulary (Tiny Shakespeare's), one-hot inputs (``ppgen train
charrnn``). One sample (batch 1) is drawn from fixed uniform noise (numpy, seed 0, the
same on both backends) by ``net.sample(noise, head, cached=True)`` and by
``net.sample(noise, head, cached=False)``:

- cached: WaveNet's per-layer queues (Paine et al. 2016), PixelCNN's row cache, NADE's
  running pre-activation (Larochelle & Murray 2011, algorithm 1), the LSTM state;
- naive: a full network pass per dimension (WaveNet: over its receptive field plus one,
  1025 samples, for every sample; char-RNN: over the sequence so far on Pyro, over the whole
  ``--charrnn-length`` on NumPyro, whose loop has a fixed shape, so its naive cost grows as
  the length squared: 200 characters keep it to minutes).

Times are the median of ``--repeats`` runs (each a whole sample) on one thread:
``torch.set_num_threads(1)`` and XLA's CPU client single-threaded (``XLA_FLAGS`` set
before jax is imported), so the comparison is per core. NumPyro's samplers are
``jax.jit``-compiled; the first call (compile plus one run) is not counted in the median,
and its compile time (first call minus the median) is reported separately. Where a naive
draw of the whole sample would take too long (WaveNet: 16,000 full passes), the naive
sampler draws only the last ``--naive-steps`` dimensions, the rest given as a prefix from
the cached draw (``prefix=``): a naive step costs the same whatever its position (the
window is fixed for WaveNet, the whole image for PixelCNN), so its seconds for the whole
sample are the timed steps' scaled linearly, and the JSON says how many steps were timed.
The speedup is naive over cached seconds per dimension.

The identity bar: on a short run (``--check-steps`` dimensions of every model, and the
naive prefix runs above, which continue the cached draw), cached and naive must give the
same samples for the same noise, on both backends; ``identical`` is true when they all do.

    python benchmarks/ar_sampling.py             # about 10 minutes on one core
    python benchmarks/ar_sampling.py --quick     # seconds: checks the script

JSON keys (last line, and ``benchmarks/results/ar_sampling.json``):

- ``wavenet_speedup``: the smaller of the two backends' WaveNet speedups (the bar: >= 10);
- ``<model>_<backend>_speedup``: naive over cached seconds per dimension;
- ``<model>_<backend>_cached_s``, ``<model>_<backend>_naive_s``: median seconds to draw the
  whole sample (naive: scaled from the timed steps when fewer than all);
- ``<model>_<backend>_naive_steps``: dimensions the naive sampler drew in its timed runs;
- ``<model>_<backend>_compile_s``: NumPyro's jit compile time, cached and naive (null on
  Pyro);
- ``identical``: cached and naive gave the same samples on every check;
- ``<model>_<backend>_dims``: dimensions per sample; ``hardware``, ``threads``, ``repeats``.

``<model>`` is ``wavenet``, ``pixelcnn`` (Gated PixelCNN), ``nade`` or ``charrnn``;
``<backend>`` ``pyro`` or ``numpyro``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

MODELS = ("wavenet", "pixelcnn", "nade", "charrnn")
BACKEND_NAMES = ("pyro", "numpyro")
VOCAB = 65  # Tiny Shakespeare's characters


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    p.add_argument("--backends", default=",".join(BACKEND_NAMES), help="comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (median) per sampler")
    p.add_argument("--wavenet-seconds", type=float, default=1.0, help="audio per WaveNet draw")
    p.add_argument("--charrnn-length", type=int, default=200, help="characters per draw")
    p.add_argument(
        "--naive-steps",
        type=int,
        default=400,
        help="naive WaveNet and PixelCNN steps timed (the rest a prefix; 0: all)",
    )
    p.add_argument(
        "--check-steps", type=int, default=64, help="dimensions of the short identity check"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch and XLA threads (1: per-core figures)"
    )
    p.add_argument("--quick", action="store_true", help="seconds: tiny sizes, one repeat")
    args = parse(p)
    args.models = comma_names(p, "--models", args.models, MODELS, "model")
    args.backends = comma_names(p, "--backends", args.backends, BACKEND_NAMES, "backend")
    if args.repeats < 1 or args.naive_steps < 0 or args.check_steps < 1:
        p.error("--repeats and --check-steps must be positive, --naive-steps non-negative")
    if args.quick:
        quick_settings(
            p,
            args,
            {
                "repeats": 1,
                "wavenet_seconds": 0.1,
                "charrnn_length": 40,
                "naive_steps": 20,
                "check_steps": 16,
            },
        )
    return args


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    comma_names,
    hardware,
    limit_threads,
    median,
    parse,
    quick_settings,
    write_result,
)

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    limit_threads(ARGS.threads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ppgen import data as ppdata  # noqa: E402
from ppgen.models import numpyro as nmodels  # noqa: E402
from ppgen.models import pyro as pmodels  # noqa: E402
from ppgen.models.numpyro import ar as nar  # noqa: E402
from ppgen.models.pyro import ar as par  # noqa: E402
from ppgen.recipes.charrnn import open_uniform  # noqa: E402

NAME = "ar_sampling"


def build(model: str, backend: str, quick: bool):
    """``(net, head)`` of ``model`` at its recipe's default size (tiny when ``quick``)."""
    models, heads = (pmodels, par) if backend == "pyro" else (nmodels, nar)
    if model == "wavenet":
        size = {"layers": 4, "residual_channels": 8, "skip_channels": 16} if quick else {}
        kw = {"residual_channels": 32, "skip_channels": 128, "layers": 10, **size}
        net = models.WaveNet(channels=ppdata.MU_LAW_CHANNELS, seed=0, **kw)
        return net, heads.Categorical(ppdata.MU_LAW_CHANNELS)
    if model == "pixelcnn":
        side = 8 if quick else 28
        net = models.GatedPixelCNN(
            (side, side), channels=8 if quick else 32, layers=2 if quick else 7
        )
        return net, heads.Bernoulli()
    if model == "nade":
        dim = 64 if quick else 784
        return models.NADE(dim, 16 if quick else 500, seed=0), heads.Bernoulli()
    net = models.CharRNN(VOCAB, hidden=16 if quick else 256, layers=2, seed=0)
    return net, heads.Categorical(VOCAB)


def event_shape(model: str, net, args: argparse.Namespace) -> tuple[int, ...]:
    if model == "wavenet":
        return (max(1, round(args.wavenet_seconds * ppdata.SPEECH_RATE)),)
    if model == "charrnn":
        return (args.charrnn_length,)
    return tuple(net.event_shape)


def prefix_of(model: str, x: np.ndarray, steps: int) -> tuple[object, int]:
    """A prefix that leaves about ``steps`` dimensions of the sample ``x (1, *event)`` to
    draw, in the form the model's ``sample(prefix=)`` takes; and the dimensions drawn."""
    if model == "pixelcnn":  # whole rows given
        width = x.shape[-1]
        rows = x.shape[-2] - max(1, -(-steps // width))
        return x[:, :rows], x[0].size - rows * width
    return x[..., : x.shape[-1] - steps], steps


class Sampler:
    """``net.sample`` on one backend, numpy in and out; NumPyro's jit-compiled per form."""

    def __init__(self, backend: str, net, head) -> None:
        self.backend, self.net, self.head = backend, net, head
        self.compiled: dict = {}

    def __call__(self, noise: np.ndarray, cached: bool, prefix=None) -> np.ndarray:
        count = None
        if isinstance(prefix, tuple):  # NADE's (x_given, count): the count is static
            prefix, count = prefix
        if self.backend == "pyro":
            p = None if prefix is None else torch.as_tensor(prefix)
            p = p if count is None else (p, count)
            with torch.no_grad():
                return self.net.sample(torch.as_tensor(noise), self.head, cached=cached, prefix=p)
        key = (cached, None if prefix is None else np.shape(prefix), count)
        if key not in self.compiled:
            net, head = self.net, self.head

            def draw(noise, prefix):
                given = prefix if count is None else (prefix, count)
                return net.sample(noise, head, cached=cached, prefix=given)

            self.compiled[key] = jax.jit(draw)
        p = None if prefix is None else jnp.asarray(prefix)
        return self.compiled[key](jnp.asarray(noise), p).block_until_ready()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """``(first call's seconds, median of `repeats` further calls, last output)``."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, median(times), out


def noise_for(head, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return open_uniform(np.random.default_rng(seed), (1, *shape, *head.noise_shape))


def identity_check(model: str, sample: Sampler, head, shape, steps: int) -> bool:
    """Cached and naive draws of the first ``steps`` dimensions (a short sequence, or the
    top rows of an image and NADE's first entries kept by a prefix) agree exactly."""
    if model in ("wavenet", "charrnn"):
        noise = noise_for(head, (min(steps, shape[0]),), seed=1)
        a, b = sample(noise, True), sample(noise, False)
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    noise = noise_for(head, shape, seed=1)
    x = np.asarray(sample(noise, True))
    prefix, _ = prefix_of(model, x, steps)
    b = np.asarray(sample(noise, False, prefix_arg(model, prefix, x)))
    return bool(np.array_equal(x, b))


def prefix_arg(model: str, prefix: np.ndarray, x: np.ndarray):
    """NADE takes its prefix as ``(x_given, count)``."""
    if model == "nade":
        return (x, prefix.shape[-1])
    return prefix


def bench(model: str, backend: str, args: argparse.Namespace) -> tuple[dict, bool]:
    net, head = build(model, backend, args.quick)
    if backend == "pyro":
        net = net.float()
    shape = event_shape(model, net, args)
    dims = int(np.prod(shape))
    sample = Sampler(backend, net, head)
    noise = noise_for(head, shape)
    c_first, cached_s, x = timed(lambda: sample(noise, True), args.repeats)
    x = np.asarray(x)
    steps = dims
    if model in ("wavenet", "pixelcnn") and 0 < args.naive_steps < dims:
        prefix, steps = prefix_of(model, x, args.naive_steps)
        n_first, naive_part, y = timed(lambda: sample(noise, False, prefix), args.repeats)
        naive_s = naive_part * dims / steps
    else:
        n_first, naive_s, y = timed(lambda: sample(noise, False), args.repeats)
        naive_part = naive_s
    same = bool(np.array_equal(x, np.asarray(y)))  # the naive continues the cached draw
    ok = identity_check(model, sample, head, shape, args.check_steps)  # after: compile timed
    compile_s = None
    if backend == "numpyro":
        compile_s = {
            "cached": max(0.0, c_first - cached_s),
            "naive": max(0.0, n_first - naive_part),
        }
    speedup = naive_s / cached_s
    print(
        f"{model} {backend}: cached {cached_s:.3f} s, naive {naive_s:.3f} s "
        f"({steps} of {dims} steps timed), speedup {speedup:.1f}x, identical {ok and same}"
        + (
            f", compile {compile_s['cached']:.1f} + {compile_s['naive']:.1f} s" if compile_s else ""
        ),
        flush=True,
    )
    key = f"{model}_{backend}"
    return {
        f"{key}_speedup": speedup,
        f"{key}_cached_s": cached_s,
        f"{key}_naive_s": naive_s,
        f"{key}_naive_steps": steps,
        f"{key}_compile_s": compile_s,
        f"{key}_dims": dims,
    }, ok and same


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    results: dict = {}
    identical = True
    for model in args.models:
        for backend in args.backends:
            out, ok = bench(model, backend, args)
            results.update(out)
            identical = identical and ok
    wavenet = [results[f"wavenet_{b}_speedup"] for b in args.backends if "wavenet" in args.models]
    write_result(
        f"{NAME}_quick" if args.quick else NAME,
        {
            "wavenet_speedup": min(wavenet) if wavenet else None,
            **results,
            "identical": identical,
            "threads": args.threads,
            "repeats": args.repeats,
            "wavenet_seconds": args.wavenet_seconds,
            "charrnn_length": args.charrnn_length,
            "jax_devices": [str(d) for d in jax.devices()],
            "quick": args.quick,
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main(ARGS)
