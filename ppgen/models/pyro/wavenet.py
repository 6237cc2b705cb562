"""WaveNet: dilated causal convolutions over mu-law codes, with naive and fast cached sampling.

van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio": a 1x1 input
convolution on the one-hot codes shifted by one step, ``stacks x layers`` dilated causal
convolutions (dilations ``1, 2, ..., 2**(layers - 1)`` repeated) with gated activations
``tanh(W_f * h + V_f c) * sigmoid(W_g * h + V_g c)``, residual and skip 1x1 convolutions,
and the output ``ReLU -> 1x1 -> ReLU -> 1x1`` to ``num_params`` logits per sample. Global
conditioning (a vector, e.g. the one-hot voice) and local conditioning (one feature vector
per sample) are projected into every gate. Sampling is the naive re-evaluation of the
receptive field per sample or the fast algorithm of Paine et al. 2016 ("Fast Wavenet
Generation Algorithm"): per-layer queues of past layer inputs, ``O(layers)`` per sample.
The plan (sizes, initial weights, checks) is :mod:`ppgen.models.wavenet`, shared with
``ppgen.models.numpyro.wavenet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from torch import nn

from ppgen.errors import ConfigError, DataError
from ppgen.models.pyro.params import get_weights, set_weights
from ppgen.models.wavenet import (
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


def _conv1x1(h: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 ``Conv1d`` applied to channels-last ``h`` ``(..., in) -> (..., out)``."""
    return F.linear(h, conv.weight[:, :, 0], conv.bias)


class _Layer(nn.Module):
    """One dilated layer's convolutions (torch names: ``dilated``, ``global_cond``,
    ``local_cond``, ``residual``, ``skip``)."""

    def __init__(self, plan: Any, dilation: int, last: bool) -> None:
        super().__init__()
        r, s, k = plan.residual_channels, plan.skip_channels, plan.kernel_size
        self.dilation = dilation
        # skip_init: allocate without touching torch's global generator; filled by WaveNet.
        self.dilated = nn.utils.skip_init(nn.Conv1d, r, 2 * r, k, dilation=dilation)
        if plan.global_dim:
            self.global_cond = nn.utils.skip_init(nn.Linear, plan.global_dim, 2 * r, bias=False)
        if plan.local_dim:
            self.local_cond = nn.utils.skip_init(nn.Conv1d, plan.local_dim, 2 * r, 1, bias=False)
        self.residual = None if last else nn.utils.skip_init(nn.Conv1d, r, r, 1)
        self.skip = nn.utils.skip_init(nn.Conv1d, r, s, 1)


class WaveNet(nn.Module):
    """``codes (*batch, T) -> logits (*batch, T, num_params)``, output ``t`` seeing
    ``x[t - receptive_field : t]`` only.

    Per dilated layer ``l`` (dilation ``d``, kernel ``k``), on its input ``h`` ``(R,)`` per
    step: ``a_t = b + sum_j W[:, :, j] h_{t - (k - 1 - j) d} + V_g g + V_l c_t``, ``z_t =
    tanh(a_t[:R]) * sigmoid(a_t[R:])``, ``h <- h + W_res z + b_res``, ``skip += W_skip z +
    b_skip``; the input is ``h_t = W_in onehot(x_{t-1}) + b_in`` (``b_in`` at ``t = 0``).
    Torch ``Conv1d`` modules (``input``, ``layers.{l}.dilated``, ..., ``output.{0,1}``), the
    same names and layouts as the NumPyro twin's weights.

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
        super().__init__()
        plan = wavenet_plan(
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
        self.plan = plan
        self.input = nn.utils.skip_init(nn.Conv1d, plan.channels, plan.residual_channels, 1)
        last = len(plan.dilations) - 1
        self.layers = nn.ModuleList(
            _Layer(plan, d, i == last) for i, d in enumerate(plan.dilations)
        )
        s = plan.skip_channels
        self.output = nn.ModuleList(
            [
                nn.utils.skip_init(nn.Conv1d, s, s, 1),
                nn.utils.skip_init(nn.Conv1d, s, plan.num_params, 1),
            ]
        )
        set_weights(self, wavenet_initial_weights(plan, seed))

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

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Teacher-forced logits in one pass.

        Args:
            x: Codes ``(*batch, T)`` in ``0..channels - 1`` (integers, or integral floats).
            context: ``None``, the global vector ``(*batch, global_dim)``, the local features
                ``(*batch, T, local_dim)``, or the pair ``(global, local)`` when the network
                has both (:func:`ppgen.models.wavenet.split_context`).

        Returns:
            ``(*batch, T, num_params)``; ``[..., t, :]`` depends on ``x[..., :t]`` only.

        Raises:
            DataError: Codes out of range, a wrong conditioning shape, or local features of
                another length than ``x``.
            ConfigError: Conditioning missing or not expected.
        """
        x = torch.as_tensor(x)
        check_codes(x.detach().cpu().numpy(), self.plan.channels)
        one_hot = F.one_hot(x.long(), self.plan.channels).to(self.input.weight.dtype)
        return self.from_one_hot(one_hot, context)

    def from_one_hot(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """The same pass on one-hot (or any real) inputs ``(*batch, T, channels)``.

        Differentiable in ``x``: the autoregressive property and the receptive field are
        measured from its gradients.

        Raises:
            DataError: ``x`` does not end in ``channels``, or a conditioning shape is wrong.
            ConfigError: Conditioning missing or not expected.
        """
        plan = self.plan
        if x.dim() < 2 or x.shape[-1] != plan.channels:
            raise DataError(
                f"WaveNet's one-hot inputs must be (*batch, T, {plan.channels}), got "
                f"{tuple(x.shape)}"
            )
        length = x.shape[-2]
        glob, local = split_context(plan, context, length)
        batch = torch.broadcast_shapes(
            x.shape[:-2],
            () if glob is None else glob.shape[:-1],
            () if local is None else local.shape[:-2],
        )
        # torch's Conv1d layout: (N, C, T), the batch dimensions flattened into N.
        h = x.expand(*batch, *x.shape[-2:]).reshape(-1, length, plan.channels).transpose(1, 2)
        h = self.input(F.pad(h, (1, 0))[..., :length])  # sees x[t - 1]
        if glob is not None:
            glob = glob.expand(*batch, plan.global_dim).reshape(-1, plan.global_dim)
        if local is not None:
            local = local.expand(*batch, length, plan.local_dim)
            local = local.reshape(-1, length, plan.local_dim).transpose(1, 2)
        r = plan.residual_channels
        skip = 0.0
        for layer in self.layers:
            a = layer.dilated(F.pad(h, ((plan.kernel_size - 1) * layer.dilation, 0)))
            if glob is not None:
                a = a + layer.global_cond(glob)[..., None]
            if local is not None:
                a = a + layer.local_cond(local)
            z = torch.tanh(a[:, :r]) * torch.sigmoid(a[:, r:])
            skip = skip + layer.skip(z)
            if layer.residual is not None:
                h = h + layer.residual(z)
        out = self.output[1](F.relu(self.output[0](F.relu(skip))))
        return out.transpose(1, 2).reshape(*batch, length, plan.num_params)

    def _output(self, skip: torch.Tensor) -> torch.Tensor:
        """The output layers on channels-last skip sums ``(..., S) -> (..., num_params)``."""
        return _conv1x1(F.relu(_conv1x1(F.relu(skip), self.output[0])), self.output[1])

    # -- sampling ------------------------------------------------------------------------

    def _step_weights(self, glob: torch.Tensor | None) -> list[tuple[torch.Tensor, ...]]:
        """Per layer, the weights of one cached step, fused: the taps as one ``(2R, k R)``
        matrix (oldest tap first, the current input last), the gate bias with the global
        term added, the local projection ``(2R, L)`` or ``None``, and the residual and skip
        1x1 convolutions as one ``(R + S, R)`` matrix (``(S, R)`` for the last layer) with
        its bias."""
        out = []
        for layer in self.layers:
            kernel = layer.dilated.weight  # (2R, R, k) -> (2R, k R), tap-major
            taps = kernel.permute(0, 2, 1).reshape(kernel.shape[0], -1)
            bias = layer.dilated.bias
            if glob is not None:
                bias = bias + layer.global_cond(glob)
            local = layer.local_cond.weight[:, :, 0] if self.plan.local_dim else None
            convs = [layer.skip] if layer.residual is None else [layer.residual, layer.skip]
            proj = torch.cat([c.weight[:, :, 0] for c in convs], 0)
            proj_bias = torch.cat([c.bias for c in convs], 0)
            out.append((taps, bias, local, proj, proj_bias))
        return out

    def _step(
        self,
        queues: list[torch.Tensor],
        prev: torch.Tensor | None,
        t: int,
        layers: list[tuple[torch.Tensor, ...]],
        local_t: torch.Tensor | None,
    ) -> torch.Tensor:
        """One sample of Paine et al.'s algorithm: ``prev`` is the code ``x_{t-1}`` (``None``
        at ``t = 0``, where the input is the bias alone), ``queues[l]`` ``(*batch, (k-1)
        d_l, R)`` holds layer ``l``'s inputs at ``t - (k-1) d_l .. t - 1`` in a ring (slot
        ``s mod size``), updated in place with ``h_t``; ``layers`` from
        :meth:`_step_weights`. Returns the params at ``t``."""
        k, r = self.plan.kernel_size, self.plan.residual_channels
        h = self.input.bias
        if prev is not None:  # the 1x1 convolution of a one-hot code is a column of its weight
            h = h + self.input.weight[:, :, 0].T[prev]
        skip = 0.0
        for layer, queue, (taps, bias, local, proj, proj_bias) in zip(
            self.layers, queues, layers, strict=True
        ):
            d, size = layer.dilation, queue.shape[-2]
            past = [queue[..., (t - (k - 1 - j) * d) % size, :] for j in range(k - 1)]
            a = F.linear(torch.cat([*past, h.expand_as(past[0])], -1), taps, bias)
            queue[..., t % size, :] = h
            if local is not None:
                a = a + F.linear(local_t, local)
            z = torch.tanh(a[..., :r]) * torch.sigmoid(a[..., r:])
            out = F.linear(z, proj, proj_bias)
            if layer.residual is not None:  # residual, then skip
                h, out = h + out[..., :r], out[..., r:]
            skip = skip + out
        return self._output(skip)

    @torch.no_grad()
    def sample(
        self,
        noise: torch.Tensor,
        head: Any,
        context: Any = None,
        cached: bool = True,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``(*batch, T)`` codes one sample at a time, ``x_t = head.draw(params_t,
        noise[..., t, ...])``, under ``torch.no_grad()``.

        Args:
            noise: ``(*batch, T, *head.noise_shape)`` (``head.noise(None, (*batch, T))``); its
                shape sets the batch and the length ``T``.
            head: The conditional family (``Categorical(channels)``), with ``num_params``
                equal to the network's.
            context: As :meth:`forward`'s, for the ``T`` samples drawn.
            cached: ``True``: Paine et al.'s queues, ``O(layers)`` per sample. ``False``: the
                naive sampler, a teacher-forced pass over the receptive field (``min(T,
                receptive_field + 1)`` steps) per sample. Both give the same codes for the
                same noise.
            prefix: Codes ``(*batch, P)``, ``P <= T``, kept as ``x[..., :P]`` (priming: the
                draw continues the waveform); ``None``: draw from the start.

        Returns:
            ``(*batch, T)`` int64 codes.

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
        noise = torch.as_tensor(noise)
        prefix_shape = None if prefix is None else tuple(torch.as_tensor(prefix).shape)
        batch, length, num_fixed = sample_shapes(
            tuple(noise.shape), tuple(head.noise_shape), prefix_shape
        )
        glob, local = split_context(plan, context, length)
        x = torch.zeros((*batch, length), dtype=torch.long)
        if prefix is not None:
            prefix = torch.as_tensor(prefix)
            check_codes(prefix.cpu().numpy(), plan.channels)
            x[..., :num_fixed] = prefix.long().expand(*batch, num_fixed)
        if local is not None:
            local = local.expand(*batch, length, plan.local_dim)
        if glob is not None:
            glob = glob.expand(*batch, plan.global_dim)
        if cached:
            return self._sample_cached(noise, head, glob, local, x, num_fixed)
        return self._sample_naive(noise, head, glob, local, x, num_fixed)

    def _sample_cached(self, noise, head, glob, local, x, num_fixed):
        plan = self.plan
        batch, length = x.shape[:-1], x.shape[-1]
        dtype = self.input.weight.dtype
        queues = [
            torch.zeros((*batch, size, plan.residual_channels), dtype=dtype)
            for size in plan.queue_sizes()
        ]
        layers = self._step_weights(glob)  # computed once, outside the loop
        prev = None
        for t in range(length):
            params = self._step(
                queues, prev, t, layers, None if local is None else local[..., t, :]
            )
            if t >= num_fixed:
                x[..., t] = head.draw(params, noise[..., t, :])
            prev = x[..., t]
        return x

    def _sample_naive(self, noise, head, glob, local, x, num_fixed):
        length = x.shape[-1]
        window = naive_window(self.plan, length)
        for t in range(num_fixed, length):
            start = min(max(t - window + 1, 0), length - window)
            local_w = None if local is None else local[..., start : start + window, :]
            params = self(x[..., start : start + window], self._context(glob, local_w))
            x[..., t] = head.draw(params[..., t - start, :], noise[..., t, :])
        return x

    def context_batch_shape(self, context: Any) -> tuple[int, ...]:
        """The batch shape of ``context`` (the global vector's leading axes, or the local
        features' before ``(T, local_dim)``); what ``AutoregressiveDistribution`` reads.

        Raises:
            ConfigError, DataError: A context this network does not take.
        """
        return wavenet_context_batch_shape(self.plan, context)

    def _context(self, glob: Any, local: Any) -> Any:
        """The ``context`` argument of :meth:`forward` for these parts."""
        if self.plan.global_dim and self.plan.local_dim:
            return glob, local
        return glob if self.plan.global_dim else local

    # -- the plated-conditional form ----------------------------------------------------------

    def plated(
        self, x: torch.Tensor | None, head: Any, context: Any = None, length: int | None = None
    ) -> torch.Tensor:
        """The model as the paper writes it: one sample site ``x_{t}`` per time step,
        ``x_t ~ head.distribution(params_t)`` with ``params_t`` from the layers' past
        inputs ``h^l_{t - (k-1-j) d_l}`` (Paine et al.'s recursion, every past input kept
        in a list), under ``pyro.markov`` with the receptive field as its history. Call it
        inside the ``"data"`` plate; observed at ``x[..., t]``, or sampled where ``x`` is
        ``None`` (a generative program). A readable reference with ``T`` sites: use the
        efficient form (``forward`` with ``head.log_prob``) to train.

        Args:
            x: Codes ``(*batch, T)`` or ``None``.
            head: The conditional family.
            context: As :meth:`forward`'s.
            length: ``T`` when ``x`` is ``None``.

        Returns:
            The codes ``(*batch, T)`` (observed or drawn).

        Raises:
            ConfigError: Neither ``x`` nor ``length`` given.
            DataError: As :meth:`forward`.
        """
        plan = self.plan
        if x is None and length is None:
            raise ConfigError("WaveNet.plated needs x or, to sample, length")
        if x is not None:
            x = torch.as_tensor(x)
            check_codes(x.detach().cpu().numpy(), plan.channels)
            length = x.shape[-1]
        glob, local = split_context(plan, context, length)
        k, r = plan.kernel_size, plan.residual_channels
        dtype = self.input.weight.dtype
        history: list[list[torch.Tensor]] = [[] for _ in self.layers]  # h^l_0, h^l_1, ...
        codes = []
        for t in pyro.markov(range(length), history=plan.receptive_field):
            h = self.input.bias
            if t > 0:
                h = h + F.linear(
                    F.one_hot(codes[-1].long(), plan.channels).to(dtype), self.input.weight[:, :, 0]
                )
            skip = 0.0
            for i, layer in enumerate(self.layers):
                history[i].append(h)
                a = layer.dilated.bias
                for j in range(k):
                    s = t - (k - 1 - j) * layer.dilation
                    if s >= 0:
                        a = a + F.linear(history[i][s], layer.dilated.weight[:, :, j])
                if glob is not None:
                    a = a + layer.global_cond(glob)
                if local is not None:
                    a = a + F.linear(local[..., t, :], layer.local_cond.weight[:, :, 0])
                z = torch.tanh(a[..., :r]) * torch.sigmoid(a[..., r:])
                skip = skip + _conv1x1(z, layer.skip)
                if layer.residual is not None:
                    h = h + _conv1x1(z, layer.residual)
            obs = None if x is None else x[..., t]
            codes.append(pyro.sample(f"x_{t}", head.distribution(self._output(skip)), obs=obs))
        return torch.stack(codes, -1)

    # -- weights --------------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """Weights as numpy under torch's names and layouts (``input.weight`` ``(R, channels,
        1)``, ``layers.{l}.dilated.weight`` ``(2R, R, k)``, ...; see
        :meth:`ppgen.models.wavenet.WaveNetPlan.weight_shapes`)."""
        return get_weights(self)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> WaveNet:
        """Copy ``weights`` (as :meth:`get_weights`) in place; return ``self``.

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        set_weights(self, weights)
        return self
