"""WaveNet: dilated causal convolutions over mu-law codes, with naive and fast cached sampling.

van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio": a 1x1 input
convolution on the one-hot codes shifted by one step, ``stacks x layers`` dilated causal
convolutions (dilations ``1, 2, ..., 2**(layers - 1)`` repeated) with gated activations
``tanh(W_f * h + V_f c) * sigmoid(W_g * h + V_g c)``, residual and skip 1x1 convolutions,
and the output ``ReLU -> 1x1 -> ReLU -> 1x1`` to ``num_params`` logits per sample. Global
conditioning (a vector, e.g. the one-hot voice) and local conditioning (one feature vector
per sample) are projected into every gate. Sampling is the naive re-evaluation of the
receptive field per sample or the fast algorithm of Paine et al. 2016 ("Fast Wavenet
Generation Algorithm"): per-layer queues of past layer inputs, ``O(layers)`` per sample, one
``lax.scan`` over time with the queues in the carry. The plan (sizes, initial weights,
checks) is :mod:`ppgen.models.wavenet`, shared with ``ppgen.models.pyro.wavenet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax import lax

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import check_weights
from ppgen.models.wavenet import (
    WaveNetPlan,
    check_codes,
    naive_window,
    sample_shapes,
    split_context,
    wavenet_initial_weights,
    wavenet_plan,
)
from ppgen.models.wavenet import (
    context_batch_shape as wavenet_context_batch_shape,
)

__all__ = ["WaveNet"]


def _shift(h: jax.Array, steps: int) -> jax.Array:
    """``h[..., t - steps, :]`` along the time axis ``-2``, zeros before the start."""
    if steps == 0:
        return h
    length = h.shape[-2]
    if steps >= length:
        return jnp.zeros_like(h)
    pad = [(0, 0)] * (h.ndim - 2) + [(steps, 0), (0, 0)]
    return jnp.pad(h, pad)[..., :length, :]


class WaveNet(eqx.Module):
    """``codes (*batch, T) -> logits (*batch, T, num_params)``, output ``t`` seeing
    ``x[t - receptive_field : t]`` only.

    Per dilated layer ``l`` (dilation ``d``, kernel ``k``), on its input ``h`` ``(R,)`` per
    step: ``a_t = b + sum_j W[:, :, j] h_{t - (k - 1 - j) d} + V_g g + V_l c_t``, ``z_t =
    tanh(a_t[:R]) * sigmoid(a_t[R:])``, ``h <- h + W_res z + b_res``, ``skip += W_skip z +
    b_skip``; the input is ``h_t = W_in onehot(x_{t-1}) + b_in`` (``b_in`` at ``t = 0``).
    Weights are kept under torch's names and layouts (``Conv1d`` ``(out, in, k)``), the same
    as the Pyro twin's ``state_dict``.

    Args:
        channels: Quantisation levels of the codes (256 for 8-bit mu-law).
        residual_channels: Width of the residual stream.
        skip_channels: Width of the skip connections and the output layers.
        layers: Dilated layers per stack (dilations ``1 .. 2**(layers - 1)``).
        stacks: How many times the dilation cycle repeats.
        kernel_size: Taps of each dilated convolution (2 in the paper).
        global_dim: Width of the global conditioning vector (0: none).
        local_dim: Features per sample of the local conditioning (0: none).
        num_params: Outputs per sample (the head's ``num_params``); ``None``: ``channels``
            (a ``Categorical(channels)`` head).
        seed: Seed of the initial weights (numpy's generator, the same on both backends).

    Raises:
        ConfigError: A size that is not a positive integer, or a kernel of size 1.
    """

    weights: dict[str, jax.Array]
    plan: WaveNetPlan = eqx.field(static=True)

    def __init__(
        self,
        channels: int = 256,
        residual_channels: int = 64,
        skip_channels: int = 256,
        layers: int = 10,
        stacks: int = 1,
        kernel_size: int = 2,
        global_dim: int = 0,
        local_dim: int = 0,
        num_params: int | None = None,
        seed: int = 0,
    ) -> None:
        self.plan = wavenet_plan(
            channels,
            residual_channels,
            skip_channels,
            layers,
            stacks,
            kernel_size,
            global_dim,
            local_dim,
            num_params,
        )
        dtype = jnp.result_type(float)  # JAX's default float (float64 under x64)
        init = wavenet_initial_weights(self.plan, seed)
        self.weights = {k: jnp.asarray(v, dtype) for k, v in init.items()}

    # -- the autoregressive protocol ---------------------------------------------------------

    @property
    def event_shape(self) -> None:
        """``None``: a sequence model, events ``(T,)`` of any length."""
        return None

    @property
    def num_params(self) -> int:
        """Outputs per sample (the head's ``num_params``)."""
        return self.plan.num_params

    @property
    def channels(self) -> int:
        """Quantisation levels of the input codes."""
        return self.plan.channels

    @property
    def receptive_field(self) -> int:
        """Past samples the output at ``t`` sees, ``1 + (kernel_size - 1) * sum(dilations)``."""
        return self.plan.receptive_field

    def order_for(self, length: int) -> tuple[int, ...]:
        """The sampling order of a ``(T,)`` event: left to right."""
        return tuple(range(int(length)))

    def __call__(self, x: jax.Array, context: Any = None) -> jax.Array:
        """Teacher-forced logits in one pass.

        Args:
            x: Codes ``(*batch, T)`` in ``0..channels - 1`` (integers, or integral floats).
            context: ``None``, the global vector ``(*batch, global_dim)``, the local features
                ``(*batch, T, local_dim)``, or the pair ``(global, local)`` when the network
                has both (:func:`ppgen.models.wavenet.split_context`).

        Returns:
            ``(*batch, T, num_params)``; ``[..., t, :]`` depends on ``x[..., :t]`` only.

        Raises:
            DataError: Codes out of range (checked when ``x`` is concrete), a wrong
                conditioning shape, or local features of another length than ``x``.
            ConfigError: Conditioning missing or not expected.
        """
        if jnp.ndim(x) < 1:
            raise DataError(f"WaveNet reads sequences (*batch, T) of codes, got shape {x.shape}")
        if not isinstance(x, jax.core.Tracer):
            check_codes(np.asarray(x), self.plan.channels)
        one_hot = jax.nn.one_hot(x, self.plan.channels, dtype=self.weights["input.bias"].dtype)
        return self.from_one_hot(one_hot, context)

    def from_one_hot(self, x: jax.Array, context: Any = None) -> jax.Array:
        """The same pass on one-hot (or any real) inputs ``(*batch, T, channels)``.

        Differentiable in ``x``: the autoregressive property and the receptive field are
        measured from its gradients.

        Raises:
            DataError: ``x`` does not end in ``channels``, or a conditioning shape is wrong.
            ConfigError: Conditioning missing or not expected.
        """
        plan, w = self.plan, self.weights
        if jnp.ndim(x) < 2 or x.shape[-1] != plan.channels:
            raise DataError(
                f"WaveNet's one-hot inputs must be (*batch, T, {plan.channels}), got {x.shape}"
            )
        glob, local = split_context(plan, context, x.shape[-2])
        r = plan.residual_channels
        h = _shift(x, 1) @ w["input.weight"][:, :, 0].T + w["input.bias"]  # (*b, T, R)
        skip = 0.0
        last = len(plan.dilations) - 1
        for i, d in enumerate(plan.dilations):
            p = f"layers.{i}."
            kernel = w[p + "dilated.weight"]
            a = w[p + "dilated.bias"]
            for j in range(plan.kernel_size):
                a = a + _shift(h, (plan.kernel_size - 1 - j) * d) @ kernel[:, :, j].T
            if glob is not None:
                a = a + (glob @ w[p + "global_cond.weight"].T)[..., None, :]
            if local is not None:
                a = a + local @ w[p + "local_cond.weight"][:, :, 0].T
            z = jnp.tanh(a[..., :r]) * jax.nn.sigmoid(a[..., r:])  # (*b, T, R)
            skip = skip + z @ w[p + "skip.weight"][:, :, 0].T + w[p + "skip.bias"]
            if i < last:
                h = h + z @ w[p + "residual.weight"][:, :, 0].T + w[p + "residual.bias"]
        return self._output(skip)

    def _output(self, skip: jax.Array) -> jax.Array:
        w = self.weights
        out = jax.nn.relu(skip) @ w["output.0.weight"][:, :, 0].T + w["output.0.bias"]
        return jax.nn.relu(out) @ w["output.1.weight"][:, :, 0].T + w["output.1.bias"]

    # -- sampling ------------------------------------------------------------------------

    def _step_weights(self, glob: jax.Array | None) -> list[tuple[jax.Array, ...]]:
        """Per layer, the weights of one cached step, fused: the taps as one ``(k R, 2R)``
        matrix (oldest tap first, the current input last), the gate bias with the global
        term added, the local projection ``(L, 2R)`` or ``None``, and the residual and skip
        1x1 convolutions as one ``(R, R + S)`` matrix (``(R, S)`` for the last layer) with
        its bias."""
        plan, w = self.plan, self.weights
        last = len(plan.dilations) - 1
        out = []
        for i in range(len(plan.dilations)):
            p = f"layers.{i}."
            kernel = w[p + "dilated.weight"]  # (2R, R, k) -> (k R, 2R), tap-major
            taps = jnp.transpose(kernel, (2, 1, 0)).reshape(-1, kernel.shape[0])
            bias = w[p + "dilated.bias"]
            if glob is not None:
                bias = bias + glob @ w[p + "global_cond.weight"].T
            local = w[p + "local_cond.weight"][:, :, 0].T if plan.local_dim else None
            names = ["skip"] if i == last else ["residual", "skip"]
            proj = jnp.concatenate([w[p + n + ".weight"][:, :, 0] for n in names], 0).T
            proj_bias = jnp.concatenate([w[p + n + ".bias"] for n in names], 0)
            out.append((taps, bias, local, proj, proj_bias))
        return out

    def _step(
        self,
        queues: tuple[jax.Array, ...],
        prev: jax.Array,
        t: jax.Array,
        layers: list[tuple[jax.Array, ...]],
        local_t: jax.Array | None,
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """One sample of Paine et al.'s algorithm: ``prev`` is the code ``x_{t-1}`` (any
        code at ``t = 0``, where the input is the bias alone), ``queues[l]`` ``(*batch,
        (k-1) d_l, R)`` holds layer ``l``'s inputs at ``t - (k-1) d_l .. t - 1`` in a ring
        (slot ``s mod size``); ``layers`` from :meth:`_step_weights`. Returns the params at
        ``t`` and the queues with ``h_t`` pushed."""
        plan, w = self.plan, self.weights
        k, r = plan.kernel_size, plan.residual_channels
        # The 1x1 convolution of a one-hot code is a column of its weight.
        column = jnp.take(w["input.weight"][:, :, 0].T, prev, axis=0)
        h = w["input.bias"] + jnp.where((t > 0)[..., None], column, 0.0)
        skip = 0.0
        new_queues = []
        for d, queue, (taps, bias, local, proj, proj_bias) in zip(
            plan.dilations, queues, layers, strict=True
        ):
            size, axis = queue.shape[-2], queue.ndim - 2
            past = [
                lax.dynamic_index_in_dim(queue, (t - (k - 1 - j) * d) % size, axis, False)
                for j in range(k - 1)
            ]
            a = jnp.concatenate([*past, h], -1) @ taps + bias
            new_queues.append(lax.dynamic_update_index_in_dim(queue, h, t % size, axis))
            if local is not None:
                a = a + local_t @ local
            z = jnp.tanh(a[..., :r]) * jax.nn.sigmoid(a[..., r:])
            out = z @ proj + proj_bias
            if out.shape[-1] > plan.skip_channels:  # residual, then skip
                h, out = h + out[..., :r], out[..., r:]
            skip = skip + out
        return self._output(skip), tuple(new_queues)

    def sample(
        self,
        noise: jax.Array,
        head: Any,
        context: Any = None,
        cached: bool = True,
        prefix: jax.Array | None = None,
    ) -> jax.Array:
        """Draw ``(*batch, T)`` codes one sample at a time, ``x_t = head.draw(params_t,
        noise[..., t, ...])``; jit-friendly (one ``lax.scan`` or ``lax.fori_loop`` over time,
        traced once whatever ``T``).

        Args:
            noise: ``(*batch, T, *head.noise_shape)`` (``head.noise(key, (*batch, T))``); its
                shape sets the batch and the length ``T``.
            head: The conditional family (``Categorical(channels)``), with ``num_params``
                equal to the network's.
            context: As :meth:`__call__`'s, for the ``T`` samples drawn.
            cached: ``True``: Paine et al.'s queues, ``O(layers)`` per sample. ``False``: the
                naive sampler, a teacher-forced pass over the receptive field (``min(T,
                receptive_field + 1)`` steps) per sample. Both give the same codes for the
                same noise.
            prefix: Codes ``(*batch, P)``, ``P <= T``, kept as ``x[..., :P]`` (priming: the
                draw continues the waveform); ``None``: draw from the start.

        Returns:
            ``(*batch, T)`` int32 codes.

        Raises:
            ConfigError: A head with another ``num_params``.
            DataError: Noise of the wrong shape, a prefix longer than ``T`` or with codes
                out of range, or wrong conditioning shapes.
        """
        plan = self.plan
        if head.num_params != plan.num_params:
            raise ConfigError(
                f"this WaveNet outputs {plan.num_params} parameters per sample, the head "
                f"needs {head.num_params}"
            )
        prefix_shape = None if prefix is None else jnp.shape(prefix)
        batch, length, num_fixed = sample_shapes(
            jnp.shape(noise), tuple(head.noise_shape), prefix_shape
        )
        glob, local = split_context(plan, context, length)
        x = jnp.zeros((*batch, length), jnp.int32)
        if prefix is not None:
            if not isinstance(prefix, jax.core.Tracer):
                check_codes(np.asarray(prefix), plan.channels)
            fixed = jnp.broadcast_to(jnp.asarray(prefix, jnp.int32), (*batch, num_fixed))
            x = x.at[..., :num_fixed].set(fixed)
        if local is not None:
            local = jnp.broadcast_to(local, (*batch, length, plan.local_dim))
        if glob is not None:
            glob = jnp.broadcast_to(glob, (*batch, plan.global_dim))
        if cached:
            return self._sample_cached(noise, head, glob, local, x, num_fixed)
        return self._sample_naive(noise, head, glob, local, x, num_fixed)

    def _sample_cached(self, noise, head, glob, local, x, num_fixed):
        plan, w = self.plan, self.weights
        batch, length = x.shape[:-1], x.shape[-1]
        dtype = w["input.bias"].dtype
        queues = tuple(
            jnp.zeros((*batch, size, plan.residual_channels), dtype) for size in plan.queue_sizes()
        )
        layers = self._step_weights(glob)  # computed once, outside the loop
        axis = len(batch)
        xs = (
            jnp.arange(length),
            jnp.moveaxis(noise, axis, 0),
            jnp.moveaxis(x, -1, 0),
            None if local is None else jnp.moveaxis(local, -2, 0),
        )

        def step(carry, inputs):
            queues, prev = carry
            t, noise_t, fixed_t, local_t = inputs
            params, queues = self._step(queues, prev, t, layers, local_t)
            x_t = jnp.where(t < num_fixed, fixed_t, head.draw(params, noise_t).astype(jnp.int32))
            return (queues, x_t), x_t

        init = (queues, jnp.zeros(batch, jnp.int32))
        _, codes = lax.scan(step, init, xs)
        return jnp.moveaxis(codes, 0, -1)

    def _sample_naive(self, noise, head, glob, local, x, num_fixed):
        batch, length = x.shape[:-1], x.shape[-1]
        window = naive_window(self.plan, length)
        axis = len(batch)

        def step(t, x):
            start = jnp.clip(t - window + 1, 0, length - window)
            x_w = lax.dynamic_slice_in_dim(x, start, window, axis=x.ndim - 1)
            local_w = None
            if local is not None:
                local_w = lax.dynamic_slice_in_dim(local, start, window, axis=local.ndim - 2)
            context = self._context(glob, local_w)
            params = self(x_w, context)  # (*batch, window, num_params)
            params_t = lax.dynamic_index_in_dim(params, t - start, axis=axis, keepdims=False)
            noise_t = lax.dynamic_index_in_dim(noise, t, axis=axis, keepdims=False)
            x_t = head.draw(params_t, noise_t).astype(jnp.int32)
            return lax.dynamic_update_index_in_dim(x, x_t, t, axis=x.ndim - 1)

        return lax.fori_loop(num_fixed, length, step, x)

    def context_batch_shape(self, context: Any) -> tuple[int, ...]:
        """The batch shape of ``context`` (the global vector's leading axes, or the local
        features' before ``(T, local_dim)``); what ``AutoregressiveDistribution`` reads.

        Raises:
            ConfigError, DataError: A context this network does not take.
        """
        return wavenet_context_batch_shape(self.plan, context)

    def _context(self, glob: Any, local: Any) -> Any:
        """The ``context`` argument of :meth:`__call__` for these parts."""
        if self.plan.global_dim and self.plan.local_dim:
            return glob, local
        return glob if self.plan.global_dim else local

    # -- the plated-conditional form ----------------------------------------------------------

    def plated(
        self, x: jax.Array | None, head: Any, context: Any = None, length: int | None = None
    ) -> jax.Array:
        """The model as the paper writes it: one sample site ``x_{t}`` per time step,
        ``x_t ~ head.distribution(params_t)`` with ``params_t`` from the layers' past
        inputs ``h^l_{t - (k-1-j) d_l}`` (Paine et al.'s recursion, every past input kept
        in a list). Call it inside the ``"data"`` plate; observed at ``x[..., t]``, or
        sampled where ``x`` is ``None`` (a generative program). A readable reference with
        ``T`` sites: use the efficient form (``__call__`` with ``head.log_prob``) to train.

        Args:
            x: Codes ``(*batch, T)`` or ``None``.
            head: The conditional family.
            context: As :meth:`__call__`'s.
            length: ``T`` when ``x`` is ``None``.

        Returns:
            The codes ``(*batch, T)`` (observed or drawn).

        Raises:
            ConfigError: Neither ``x`` nor ``length`` given.
            DataError: As :meth:`__call__`.
        """
        plan, w = self.plan, self.weights
        if x is None and length is None:
            raise ConfigError("WaveNet.plated needs x or, to sample, length")
        if x is not None:
            if not isinstance(x, jax.core.Tracer):
                check_codes(np.asarray(x), plan.channels)
            length = x.shape[-1]
        glob, local = split_context(plan, context, length)
        k, r = plan.kernel_size, plan.residual_channels
        dtype = w["input.bias"].dtype
        history: list[list[jax.Array]] = [[] for _ in plan.dilations]  # h^l_0, h^l_1, ...
        codes = []
        for t in range(length):
            h = w["input.bias"]
            if t > 0:
                h = h + jax.nn.one_hot(codes[-1], plan.channels, dtype=dtype) @ (
                    w["input.weight"][:, :, 0].T
                )
            skip = 0.0
            for i, d in enumerate(plan.dilations):
                p = f"layers.{i}."
                history[i].append(h)
                a = w[p + "dilated.bias"]
                for j in range(k):
                    s = t - (k - 1 - j) * d
                    if s >= 0:
                        a = a + history[i][s] @ w[p + "dilated.weight"][:, :, j].T
                if glob is not None:
                    a = a + glob @ w[p + "global_cond.weight"].T
                if local is not None:
                    a = a + local[..., t, :] @ w[p + "local_cond.weight"][:, :, 0].T
                z = jnp.tanh(a[..., :r]) * jax.nn.sigmoid(a[..., r:])
                skip = skip + z @ w[p + "skip.weight"][:, :, 0].T + w[p + "skip.bias"]
                if i < len(plan.dilations) - 1:
                    h = h + z @ w[p + "residual.weight"][:, :, 0].T + w[p + "residual.bias"]
            obs = None if x is None else x[..., t]
            codes.append(numpyro.sample(f"x_{t}", head.distribution(self._output(skip)), obs=obs))
        return jnp.stack(codes, -1)

    # -- weights --------------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """Weights as numpy under torch's names and layouts (``input.weight`` ``(R, channels,
        1)``, ``layers.{l}.dilated.weight`` ``(2R, R, k)``, ...; see
        :meth:`ppgen.models.wavenet.WaveNetPlan.weight_shapes`)."""
        return {k: np.asarray(v) for k, v in self.weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> WaveNet:
        """A copy holding ``weights`` (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.weights, weights)
        new = {k: jnp.asarray(weights[k], v.dtype) for k, v in self.weights.items()}
        return eqx.tree_at(lambda m: m.weights, self, new)
