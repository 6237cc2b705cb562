"""char-RNN: stacked LSTMs over characters, an autoregressive model of token sequences.

Karpathy 2015, "The Unreasonable Effectiveness of Recurrent Neural Networks" (char-rnn):
``p(x) = prod_t p(x_t | x_<t)``, each conditional a categorical whose logits are a linear
read-out of the top LSTM layer's state after reading ``x_<t``. At ``t = 0`` the LSTM reads a
learned initial input ``start`` (not a token), so ``x_0`` is modelled too and every id
``0..V-1`` stays a character. An LSTM has no context window: any length works, in training,
scoring and sampling. Mirrors ``ppgen.models.numpyro.charrnn``; the weights are torch's
``nn.LSTM`` state dict on both backends.
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from ppgen.errors import ConfigError, DataError
from ppgen.models.charrnn import (
    charrnn_initial_weights,
    check_charrnn,
    check_prefix,
    check_temperature,
    check_tokens,
)
from ppgen.models.pyro.params import ModuleWeights, set_weights

__all__ = ["CharRNN"]

State = tuple[torch.Tensor, torch.Tensor]


class CharRNN(ModuleWeights, nn.Module):
    """Token ids ``(*batch, T)`` -> logits ``(*batch, T, V)``, causal in time (char-rnn).

    ``u_t = embed(x_{t-1})`` (``u_0 = start``, a learned vector), ``(h_t, c_t) =
    LSTM(u_t, (h_{t-1}, c_{t-1}))`` through ``layers`` stacked ``torch.nn.LSTM`` layers
    (batch first; gates ``i, f, g, o``), logits ``W h_t + b``: ``logits[..., t, :]``
    depends on ``x[..., :t]`` only. The embedding is learned (``embedding=E``) or the
    one-hot code (``embedding=None``, Karpathy's char-rnn). No dropout.

    The autoregressive-network protocol of ``ppgen.models.pyro.ar``: ``event_shape = None``
    (sequences of any length ``T``), ``num_params = V`` (a ``Categorical(V)`` head),
    ``order_for(T)``, teacher-forced ``forward``, ``sample`` (cached: the LSTM state is
    carried; naive: a full pass per position), the plated form ``plated`` (one site
    ``x_{t}`` per position, the state carried through ``pyro.markov``) and the carried-state
    API ``initial_state`` / ``step``. Weights (``get_weights``): torch's state-dict keys and
    layouts, ``start``, ``embedding.weight (V, E)``, ``lstm.weight_ih_l0 (4H, E)``,
    ``lstm.weight_hh_l0 (4H, H)``, ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0``, ...,
    ``output.weight (V, H)``, ``output.bias``.

    Args:
        vocab_size: ``V``, the number of token ids.
        hidden: LSTM units per layer.
        layers: Stacked LSTM layers.
        embedding: Width of a learned embedding, or ``None`` for one-hot inputs.
        seed: Seed of the initial weights (numpy's generator, the same on both backends:
            :func:`ppgen.models.charrnn.charrnn_initial_weights`).

    Raises:
        ConfigError: A size that is not a positive integer, or ``vocab_size < 2``.
    """

    event_shape = None

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 128,
        layers: int = 2,
        embedding: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        vocab_size, hidden, layers, embedding = check_charrnn(vocab_size, hidden, layers, embedding)
        self.vocab_size, self.hidden, self.layers = vocab_size, hidden, layers
        self.embedding_dim = embedding
        input_size = embedding or vocab_size
        # skip_init: allocate without touching torch's global generator; filled below.
        if embedding:
            self.embedding = nn.utils.skip_init(nn.Embedding, vocab_size, embedding)
        self.start = nn.Parameter(torch.empty(input_size))
        with torch.random.fork_rng(devices=[]):  # nn.LSTM has no skip_init; keep the stream
            self.lstm = nn.LSTM(input_size, hidden, layers, batch_first=True)
        self.output = nn.utils.skip_init(nn.Linear, hidden, vocab_size)
        set_weights(self, charrnn_initial_weights(vocab_size, hidden, layers, embedding, seed))

    @property
    def num_params(self) -> int:
        """``V``: logits per position (a ``Categorical(V)`` head)."""
        return self.vocab_size

    def order_for(self, length: int) -> tuple[int, ...]:
        """The sampling order of a sequence of ``length`` positions: left to right."""
        return tuple(range(length))

    # -- inputs --------------------------------------------------------------------------

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``(*batch, T)`` -> LSTM inputs ``(*batch, T, E)`` (``E = V`` one-hot).

        Raises:
            DataError: Ids outside ``0..V-1``, non-integers, or no time axis.
        """
        ids = torch.as_tensor(check_tokens(x.detach().cpu().numpy(), self.vocab_size))
        ids = ids.to(self.start.device)
        if self.embedding_dim:
            return self.embedding(ids)
        return F.one_hot(ids, self.vocab_size).to(self.start.dtype)

    def logits_from_inputs(
        self, inputs: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Teacher forcing on embedded tokens: ``u (*batch, T, E)`` (``embed(x)``) ->
        ``(logits (*batch, T, V), state)``.

        Position ``t`` reads ``start`` then ``u[..., :t, :]``, so ``logits[..., t, :]``
        depends on ``u[..., s, :]`` for ``s < t`` only (the gradient test differentiates
        here). ``state`` (default: zeros) is the LSTM state before ``start``; the returned
        one is after reading ``u[..., T-2, :]`` (the last input is never read).
        """
        batch, length = inputs.shape[:-2], inputs.shape[-2]
        u = torch.cat([self.start.expand(*batch, 1, -1), inputs[..., :-1, :]], dim=-2)
        return self._run(u.reshape(-1, length, u.shape[-1]), batch, state)

    def _run(self, u: torch.Tensor, batch: tuple[int, ...], state: State | None):
        """LSTM over ``u (N, T, E)`` from ``state`` (layers, *batch, H) -> logits, state."""
        n = u.shape[0]
        if state is None:
            state = self.initial_state(batch)
        # (layers, *state batch, H) broadcast to (layers, *batch, H), then batch flattened
        h0, c0 = (
            s.movedim(0, -2).expand(*batch, self.layers, self.hidden).reshape(n, self.layers, -1)
            for s in state
        )
        h0, c0 = h0.transpose(0, 1), c0.transpose(0, 1)
        out, (h, c) = self.lstm(u, (h0.contiguous(), c0.contiguous()))
        logits = self.output(out).reshape(*batch, u.shape[1], self.vocab_size)
        return logits, (h.reshape(self.layers, *batch, -1), c.reshape(self.layers, *batch, -1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits: ids ``(*batch, T)`` -> ``(*batch, T, V)`` in one pass;
        ``logits[..., t, :]`` parametrise ``p(x_t | x_<t)``.

        Raises:
            DataError: Ids outside the vocabulary, non-integers, or an empty sequence.
            ConfigError: A context (this char-RNN is unconditional).
        """
        _check_context(context)
        if x.dim() < 1 or x.shape[-1] < 1:
            raise DataError(f"CharRNN needs sequences (..., T) with T >= 1, got {tuple(x.shape)}")
        return self.logits_from_inputs(self.embed(x))[0]

    # -- the carried state ----------------------------------------------------------------

    def initial_state(self, batch: int | tuple[int, ...] = ()) -> State:
        """The LSTM state before anything is read: zeros ``(h, c)``, each
        ``(layers, *batch, hidden)``."""
        batch = (batch,) if isinstance(batch, int) else tuple(batch)
        zeros = self.start.new_zeros(self.layers, *batch, self.hidden)
        return zeros, zeros.clone()

    def step(self, state: State, token: torch.Tensor | None) -> tuple[torch.Tensor, State]:
        """Read one token: ``(logits (*batch, V), state)`` for the next position.

        Args:
            state: ``(h, c)``, each ``(layers, *batch, hidden)`` (from :meth:`initial_state`
                or a previous step; a state with batch ``()`` broadcasts to the token's).
            token: Ids ``(*batch,)``, or ``None`` for the learned ``start`` input (the first
                step: its logits are those of ``x_0``).

        Raises:
            DataError: Ids outside the vocabulary.
        """
        if token is None:
            batch = tuple(state[0].shape[1:-1])
            u = self.start.expand(*batch, 1, self.start.shape[-1])
        else:
            token = torch.as_tensor(token)
            batch = tuple(token.shape)
            u = self.embed(token[..., None])
        logits, state = self._run(u.reshape(-1, 1, u.shape[-1]), batch, state)
        return logits[..., 0, :], state

    # -- sampling -------------------------------------------------------------------------

    def sample(
        self,
        noise: torch.Tensor,
        head: Any,
        context: torch.Tensor | None = None,
        cached: bool = True,
        prefix: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Draw sequences one position at a time, ``x_t = head.draw(logits_t / T, noise_t)``.

        Args:
            noise: ``(*batch, L, *head.noise_shape)`` (Gumbel ``(*batch, L, V)`` for
                ``Categorical``): one draw's noise per position; ``L`` is the whole length,
                prompt included.
            head: The conditional family (``num_params`` must be ``V``).
            context: Must be ``None`` (unconditional).
            cached: ``True``: carry the LSTM state (one step per position, the prompt read
                in one pass); ``False``: the naive sampler, a full teacher-forced pass over
                the sequence so far for every position. Both give the same ids for the same
                noise.
            prefix: Priming ids ``(*batch, P)``, ``P <= L``: positions ``0..P-1`` are the
                prompt (their noise is unused), the rest continue it.
            temperature: The logits are divided by it (``< 1`` sharper, ``> 1`` flatter).

        Returns:
            Ids ``(*batch, L)`` (int64), starting with the prefix.

        Raises:
            ConfigError: ``temperature <= 0``, a head of another size, a context, or a
                prefix longer than ``L``.
            DataError: A prefix with ids outside the vocabulary or another batch shape.
        """
        temperature = check_temperature(temperature)
        _check_context(context)
        self._check_head(head)
        k = len(tuple(head.noise_shape))
        shape = tuple(noise.shape[: noise.dim() - k])
        if not shape:
            raise DataError(
                f"noise must be (*batch, L, *{tuple(head.noise_shape)}), got {tuple(noise.shape)}"
            )
        batch, length = shape[:-1], shape[-1]
        with torch.no_grad():
            x = torch.zeros(*batch, length, dtype=torch.long, device=self.start.device)
            p = 0
            if prefix is not None:
                p = check_prefix(tuple(prefix.shape), batch, length)
                x[..., :p] = torch.as_tensor(
                    check_tokens(prefix.detach().cpu().numpy(), self.vocab_size)
                )
            if cached:
                self._sample_cached(x, p, noise, head, temperature)
            else:
                for t in range(p, length):
                    logits = self.logits_from_inputs(self.embed(x[..., : t + 1]))[0][..., t, :]
                    x[..., t] = head.draw(logits / temperature, noise.select(x.dim() - 1, t)).long()
        return x

    def _sample_cached(self, x, p, noise, head, temperature) -> None:
        """Fill ``x[..., p:]`` in place, carrying the LSTM state (the prompt in one pass)."""
        length = x.shape[-1]
        if p == length:
            return
        if p:  # start, the prompt and an unread last input: the last logits are those of x_p
            prompt = torch.cat(
                [self.embed(x[..., :p]), self.start.expand(*x.shape[:-1], 1, -1)], -2
            )
            logits, state = self.logits_from_inputs(prompt)
            logits = logits[..., -1, :]
        else:
            logits, state = self.step(self.initial_state(tuple(x.shape[:-1])), None)
        for t in range(p, length):
            x[..., t] = head.draw(logits / temperature, noise.select(x.dim() - 1, t)).long()
            if t + 1 < length:
                logits, state = self.step(state, x[..., t])

    def _check_head(self, head: Any) -> None:
        if int(head.num_params) != self.vocab_size:
            raise ConfigError(
                f"the head takes {head.num_params} parameters per position but this CharRNN "
                f"outputs {self.vocab_size} logits; use Categorical({self.vocab_size})"
            )

    # -- the plated form -------------------------------------------------------------------

    def plated(
        self,
        x: torch.Tensor | None,
        head: Any,
        context: torch.Tensor | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """The model as the paper writes it: one site ``x_{t}`` per position, the LSTM state
        carried from each to the next through ``pyro.markov``.

        Call it inside a model, within the ``"data"`` plate. Each ``x_{t} ~
        head.distribution(logits_t)``, observed at ``x[..., t]`` or, when ``x`` is ``None``,
        sampled (a generative program of ``length`` positions).

        Returns:
            The ids ``(*batch, T)`` (observed or drawn).

        Raises:
            DataError: Ids outside the vocabulary.
            ConfigError: A context, a head of another size, or ``x`` and ``length`` both
                missing.
        """
        _check_context(context)
        self._check_head(head)
        if x is None and length is None:
            raise ConfigError("plated needs the observed ids x or, to sample, a length")
        if x is not None:
            ids = check_tokens(x.detach().cpu().numpy(), self.vocab_size)
            x = torch.as_tensor(ids, device=self.start.device)
            length = x.shape[-1]
            state = self.initial_state(tuple(x.shape[:-1]))
        else:
            state = self.initial_state(())
        token, drawn = None, []
        for t in pyro.markov(range(length)):
            logits, state = self.step(state, token)
            obs = None if x is None else x[..., t]
            token = pyro.sample(f"x_{t}", head.distribution(logits), obs=obs)
            drawn.append(token)
        return torch.stack(drawn, -1)


def _check_context(context: Any) -> None:
    if context is not None:
        raise ConfigError("CharRNN is unconditional; it takes no context (pass None)")
