"""char-RNN: stacked LSTMs over characters, an autoregressive model of token sequences.

Karpathy 2015, "The Unreasonable Effectiveness of Recurrent Neural Networks" (char-rnn):
``p(x) = prod_t p(x_t | x_<t)``, each conditional a categorical whose logits are a linear
read-out of the top LSTM layer's state after reading ``x_<t``. At ``t = 0`` the LSTM reads a
learned initial input ``start`` (not a token), so ``x_0`` is modelled too and every id
``0..V-1`` stays a character. An LSTM has no context window: any length works, in training,
scoring and sampling. Mirrors ``ppgen.models.pyro.charrnn``; the weights are torch's
``nn.LSTM`` state dict on both backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from ppgen.errors import ConfigError, DataError
from ppgen.models.charrnn import (
    charrnn_initial_weights,
    check_charrnn,
    check_prefix,
    check_temperature,
    check_tokens,
)
from ppgen.models.conventions import check_weights

__all__ = ["CharRNN"]

State = tuple[jax.Array, jax.Array]


def _concrete(a: Any) -> bool:
    return not isinstance(a, jax.core.Tracer)


class CharRNN(eqx.Module):
    """Token ids ``(*batch, T)`` -> logits ``(*batch, T, V)``, causal in time (char-rnn).

    ``u_t = embed(x_{t-1})`` (``u_0 = start``, a learned vector), ``(h_t, c_t) =
    LSTM(u_t, (h_{t-1}, c_{t-1}))`` through ``layers`` stacked Equinox ``LSTMCell``s (gates
    ``i, f, g, o``, the order of torch's ``nn.LSTM``), logits ``W h_t + b``. The
    teacher-forced pass runs layer by layer as ``nn.LSTM`` does: each layer's input projection
    for all positions in one product, then a ``lax.scan`` over time of the recurrent part;
    stepping (sampling, the plated form) runs every layer per position.
    ``logits[..., t, :]`` depends on ``x[..., :t]`` only. The embedding is learned
    (``embedding=E``) or the one-hot code (``embedding=None``, Karpathy's char-rnn). No
    dropout. Each cell holds torch's ``bias_ih``; ``bias_hh`` is kept beside it and added
    at call time, so torch's weights load and come back unchanged.

    The autoregressive-network protocol of ``ppgen.models.numpyro.ar``: ``event_shape =
    None`` (sequences of any length ``T``), ``num_params = V`` (a ``Categorical(V)`` head),
    ``order_for(T)``, teacher-forced ``__call__``, ``sample`` (cached: the LSTM state is
    carried; naive: a full pass per position; both jit-friendly), the plated form
    ``plated`` (one site ``x_{t}`` per position, the state carried from each to the next)
    and the carried-state API ``initial_state`` / ``step``.

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

    embedding: eqx.nn.Embedding | None
    start: jax.Array
    cells: list[eqx.nn.LSTMCell]
    bias_hh: list[jax.Array]
    output: eqx.nn.Linear
    vocab_size: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    layers: int = eqx.field(static=True)
    embedding_dim: int | None = eqx.field(static=True)
    event_shape = None

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 128,
        layers: int = 2,
        embedding: int | None = None,
        seed: int = 0,
    ) -> None:
        vocab_size, hidden, layers, embedding = check_charrnn(vocab_size, hidden, layers, embedding)
        self.vocab_size, self.hidden, self.layers = vocab_size, hidden, layers
        self.embedding_dim = embedding
        input_size = embedding or vocab_size
        dtype = jnp.result_type(float)  # JAX's default float (float64 under x64)

        def skeleton():  # shapes and dtypes only (nothing is drawn): the weights are set below
            key = jax.random.key(0)
            cells = [
                eqx.nn.LSTMCell(input_size if k == 0 else hidden, hidden, dtype=dtype, key=key)
                for k in range(layers)
            ]
            emb = (
                eqx.nn.Embedding(vocab_size, embedding, dtype=dtype, key=key) if embedding else None
            )
            return emb, cells, eqx.nn.Linear(hidden, vocab_size, dtype=dtype, key=key)

        self.embedding, self.cells, self.output = jax.eval_shape(skeleton)
        self.start = jnp.zeros(input_size, dtype)
        self.bias_hh = [jnp.zeros(4 * hidden, dtype) for _ in range(layers)]
        weights = charrnn_initial_weights(vocab_size, hidden, layers, embedding, seed)
        self.embedding, self.start, self.cells, self.bias_hh, self.output = _assigned(self, weights)

    @property
    def num_params(self) -> int:
        """``V``: logits per position (a ``Categorical(V)`` head)."""
        return self.vocab_size

    def order_for(self, length: int) -> tuple[int, ...]:
        """The sampling order of a sequence of ``length`` positions: left to right."""
        return tuple(range(length))

    # -- inputs --------------------------------------------------------------------------

    def embed(self, x: jax.Array) -> jax.Array:
        """Token ids ``(*batch, T)`` -> LSTM inputs ``(*batch, T, E)`` (``E = V`` one-hot).

        Concrete ids are checked; under ``jit`` an id outside the vocabulary embeds as NaN
        (never as another token), so the log-likelihood it reaches is NaN.

        Raises:
            DataError: Ids outside ``0..V-1``, non-integers, or no time axis (concrete ids).
        """
        if _concrete(x):
            x = check_tokens(np.asarray(x), self.vocab_size)
        ids = jnp.asarray(x).astype(jnp.int32)
        if self.embedding is not None:
            return jnp.take(self.embedding.weight, ids, axis=0, mode="fill", fill_value=jnp.nan)
        inside = ((ids >= 0) & (ids < self.vocab_size))[..., None]
        return jnp.where(
            inside, jax.nn.one_hot(ids, self.vocab_size, dtype=self.start.dtype), jnp.nan
        )

    def logits_from_inputs(
        self, inputs: jax.Array, state: State | None = None
    ) -> tuple[jax.Array, State]:
        """Teacher forcing on embedded tokens: ``u (*batch, T, E)`` (``embed(x)``) ->
        ``(logits (*batch, T, V), state)``.

        Position ``t`` reads ``start`` then ``u[..., :t, :]``, so ``logits[..., t, :]``
        depends on ``u[..., s, :]`` for ``s < t`` only (the gradient test differentiates
        here). ``state`` (default: zeros) is the LSTM state before ``start``; the returned
        one is after reading ``u[..., T-2, :]`` (the last input is never read).
        """
        batch = inputs.shape[:-2]
        start = jnp.broadcast_to(self.start, (*batch, 1, self.start.shape[-1]))
        u = jnp.concatenate([start, inputs[..., :-1, :]], axis=-2)
        if state is None:
            state = self.initial_state(batch)
        return _teacher_forced(self, state, u)

    def _broadcast_state(self, state: State, batch: tuple[int, ...]) -> State:
        """``(h, c)``, each ``(layers, *state batch, H)``, broadcast to ``(layers, *batch, H)``
        in the weights' float type or wider (a scan's carry keeps one type, so a float32 state
        given to a float64 net is promoted here rather than after the first step)."""
        return tuple(
            jnp.moveaxis(
                jnp.broadcast_to(jnp.moveaxis(s, 0, -2), (*batch, self.layers, self.hidden)), -2, 0
            ).astype(jnp.result_type(s, self.start))
            for s in state
        )

    def _advance(self, state: State, u: jax.Array) -> tuple[State, jax.Array]:
        """One time step of every layer: input ``u (*batch, E)`` -> (state, logits)."""
        batch = u.shape[:-1]
        h, c = self._broadcast_state(state, batch)
        new_h, new_c = [], []
        for k, (cell, b_hh) in enumerate(zip(self.cells, self.bias_hh, strict=True)):
            cell = eqx.tree_at(lambda m: m.bias, cell, cell.bias + b_hh)
            run = cell
            for _ in batch:  # the cell reads one vector; map it over the batch axes
                run = jax.vmap(run)
            hk, ck = run(u, (h[k], c[k]))
            new_h.append(hk)
            new_c.append(ck)
            u = hk
        logits = u @ self.output.weight.T + self.output.bias
        return (jnp.stack(new_h), jnp.stack(new_c)), logits

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """Teacher-forced logits: ids ``(*batch, T)`` -> ``(*batch, T, V)`` in one pass;
        ``logits[..., t, :]`` parametrise ``p(x_t | x_<t)``.

        Raises:
            DataError: Ids outside the vocabulary, non-integers, or an empty sequence.
            ConfigError: A context (this char-RNN is unconditional).
        """
        _check_context(context)
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] < 1:
            raise DataError(f"CharRNN needs sequences (..., T) with T >= 1, got {jnp.shape(x)}")
        return self.logits_from_inputs(self.embed(x))[0]

    # -- the carried state ----------------------------------------------------------------

    def initial_state(self, batch: int | tuple[int, ...] = ()) -> State:
        """The LSTM state before anything is read: zeros ``(h, c)``, each
        ``(layers, *batch, hidden)``."""
        batch = (batch,) if isinstance(batch, int) else tuple(batch)
        zeros = jnp.zeros((self.layers, *batch, self.hidden), self.start.dtype)
        return zeros, zeros

    def step(self, state: State, token: jax.Array | None) -> tuple[jax.Array, State]:
        """Read one token: ``(logits (*batch, V), state)`` for the next position.

        Args:
            state: ``(h, c)``, each ``(layers, *batch, hidden)`` (from :meth:`initial_state`
                or a previous step; a state with batch ``()`` broadcasts to the token's).
            token: Ids ``(*batch,)``, or ``None`` for the learned ``start`` input (the first
                step: its logits are those of ``x_0``).

        Raises:
            DataError: Ids outside the vocabulary (concrete ids).
        """
        if token is None:
            batch = state[0].shape[1:-1]
            u = jnp.broadcast_to(self.start, (*batch, self.start.shape[-1]))
        else:
            u = self.embed(jnp.asarray(token)[..., None])[..., 0, :]
        state, logits = _advance(self, state, u)
        return logits, state

    # -- sampling -------------------------------------------------------------------------

    def sample(
        self,
        noise: jax.Array,
        head: Any,
        context: jax.Array | None = None,
        cached: bool = True,
        prefix: jax.Array | None = None,
        temperature: float = 1.0,
    ) -> jax.Array:
        """Draw sequences one position at a time, ``x_t = head.draw(logits_t / T, noise_t)``.

        Jit-friendly: ``lax.scan`` over positions (cached) or ``lax.fori_loop`` (naive);
        ``cached``, the prefix's shape and ``temperature`` are static.

        Args:
            noise: ``(*batch, L, *head.noise_shape)`` (Gumbel ``(*batch, L, V)`` for
                ``Categorical``): one draw's noise per position; ``L`` is the whole length,
                prompt included.
            head: The conditional family (``num_params`` must be ``V``).
            context: Must be ``None`` (unconditional).
            cached: ``True``: carry the LSTM state (one step per position, the prompt read
                in one pass); ``False``: the naive sampler, a full teacher-forced pass over
                the sequence for every position. Both give the same ids for the same noise.
            prefix: Priming ids ``(*batch, P)``, ``P <= L``: positions ``0..P-1`` are the
                prompt (their noise is unused), the rest continue it.
            temperature: The logits are divided by it (``< 1`` sharper, ``> 1`` flatter).

        Returns:
            Ids ``(*batch, L)`` (int32), starting with the prefix.

        Raises:
            ConfigError: ``temperature <= 0``, a head of another size, a context, or a
                prefix longer than ``L``.
            DataError: A prefix with ids outside the vocabulary (concrete) or another batch
                shape.
        """
        temperature = check_temperature(temperature)
        _check_context(context)
        self._check_head(head)
        k = len(tuple(head.noise_shape))
        shape = tuple(noise.shape[: noise.ndim - k])
        if not shape:
            raise DataError(
                f"noise must be (*batch, L, *{tuple(head.noise_shape)}), got {noise.shape}"
            )
        batch, length = shape[:-1], shape[-1]
        x = jnp.zeros((*batch, length), jnp.int32)
        p = 0
        if prefix is not None:
            p = check_prefix(tuple(jnp.shape(prefix)), batch, length)
            if _concrete(prefix):
                prefix = check_tokens(np.asarray(prefix), self.vocab_size)
            x = x.at[..., :p].set(jnp.asarray(prefix).astype(jnp.int32))
        if p == length:
            return x
        if cached:
            return self._sample_cached(x, p, noise, head, temperature)

        def body(t, x):
            logits = jnp.take(self.logits_from_inputs(self.embed(x))[0], t, axis=-2)
            draw = head.draw(logits / temperature, jnp.take(noise, t, axis=len(batch)))
            return x.at[..., t].set(draw.astype(x.dtype))

        # Positions >= t of x are still 0 when position t is drawn; the logits of t never
        # read them (the autoregressive property), so this is the naive re-evaluation.
        return jax.lax.fori_loop(p, length, body, x)

    def _sample_cached(self, x, p, noise, head, temperature) -> jax.Array:
        """``x`` with positions ``p:`` drawn, the LSTM state carried (the prompt in one pass)."""
        batch = x.shape[:-1]
        if p:  # read start and the whole prompt (plus an unread last input): logits of x_p
            u = self.embed(x[..., :p])
            logits, state = self.logits_from_inputs(jnp.concatenate([u, u[..., :1, :]], -2))
            logits = logits[..., -1, :]
        else:
            logits, state = self.step(self.initial_state(batch), None)

        def draw_and_read(carry, noise_t):
            logits, state = carry
            x_t = head.draw(logits / temperature, noise_t).astype(x.dtype)
            logits, state = self.step(state, x_t)
            return (logits, state), x_t

        # The last step's read is wasted work; it keeps the loop body uniform.
        _, drawn = jax.lax.scan(
            draw_and_read, (logits, state), jnp.moveaxis(noise, len(batch), 0)[p:]
        )
        return x.at[..., p:].set(jnp.moveaxis(drawn, 0, -1))

    def _check_head(self, head: Any) -> None:
        if int(head.num_params) != self.vocab_size:
            raise ConfigError(
                f"the head takes {head.num_params} parameters per position but this CharRNN "
                f"outputs {self.vocab_size} logits; use Categorical({self.vocab_size})"
            )

    # -- the plated form -------------------------------------------------------------------

    def plated(
        self,
        x: jax.Array | None,
        head: Any,
        context: jax.Array | None = None,
        length: int | None = None,
    ) -> jax.Array:
        """The model as the paper writes it: one site ``x_{t}`` per position, the LSTM state
        carried from each to the next.

        Call it inside a model, within the ``"data"`` plate. Each ``x_{t} ~
        head.distribution(logits_t)``, observed at ``x[..., t]`` or, when ``x`` is ``None``,
        sampled (a generative program of ``length`` positions). A Python loop, not
        ``numpyro.contrib.control_flow.scan``: a scan would make one site ``x`` with a time
        axis, and the sites are named ``x_{t}`` as on Pyro.

        Returns:
            The ids ``(*batch, T)`` (observed or drawn).

        Raises:
            DataError: Ids outside the vocabulary (concrete ids).
            ConfigError: A context, a head of another size, or ``x`` and ``length`` both
                missing.
        """
        _check_context(context)
        self._check_head(head)
        if x is None and length is None:
            raise ConfigError("plated needs the observed ids x or, to sample, a length")
        if x is not None:
            if _concrete(x):
                x = check_tokens(np.asarray(x), self.vocab_size)
            x = jnp.asarray(x)
            length = x.shape[-1]
            state = self.initial_state(x.shape[:-1])
        else:
            state = self.initial_state(())
        token, drawn = None, []
        for t in range(length):
            logits, state = self.step(state, token)
            obs = None if x is None else x[..., t]
            token = numpyro.sample(f"x_{t}", head.distribution(logits), obs=obs)
            drawn.append(token)
        return jnp.stack(drawn, -1)

    # -- weights --------------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters as numpy, torch's state-dict keys and layouts: ``start``,
        ``embedding.weight (V, E)``, ``lstm.weight_ih_l0 (4H, E)``, ``lstm.weight_hh_l0
        (4H, H)``, ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0`` (gates ``i, f, g, o``), ...,
        ``output.weight (V, H)``, ``output.bias``."""
        out = {}
        if self.embedding is not None:
            out["embedding.weight"] = np.asarray(self.embedding.weight)
        out["start"] = np.asarray(self.start)
        for k, (cell, b_hh) in enumerate(zip(self.cells, self.bias_hh, strict=True)):
            out[f"lstm.weight_ih_l{k}"] = np.asarray(cell.weight_ih)
            out[f"lstm.weight_hh_l{k}"] = np.asarray(cell.weight_hh)
            out[f"lstm.bias_ih_l{k}"] = np.asarray(cell.bias)
            out[f"lstm.bias_hh_l{k}"] = np.asarray(b_hh)
        out["output.weight"] = np.asarray(self.output.weight)
        out["output.bias"] = np.asarray(self.output.bias)
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> CharRNN:
        """A copy holding ``weights`` (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        return eqx.tree_at(
            lambda m: (m.embedding, m.start, m.cells, m.bias_hh, m.output),
            self,
            _assigned(self, weights),
            is_leaf=lambda v: v is None,
        )


# Compiled once per network structure and input shape, so that eager calls (scoring, the
# plated form's steps) do not dispatch every small operation; inlined under an outer jit.
@eqx.filter_jit
def _teacher_forced(net: CharRNN, state: State, u: jax.Array) -> tuple[jax.Array, State]:
    """The LSTM over ``u (*batch, T, E)`` from ``state``: ``(logits (*batch, T, V), last
    state)``, one layer at a time as cuDNN and torch's ``nn.LSTM`` do it: each layer's input
    projection ``W_ih u_t + b`` for every position in one matrix product, then a
    ``lax.scan`` over time of the recurrent part ``W_hh h_{t-1}`` only, and the read-out for
    every position in one product after the last layer. The same function as stepping
    :meth:`CharRNN._advance` through time (the plated form and the samplers do that), with
    the input projections and the read-out taken out of the sequential loop."""
    h0, c0 = net._broadcast_state(state, u.shape[:-2])
    x = u
    last_h, last_c = [], []
    for k, (cell, b_hh) in enumerate(zip(net.cells, net.bias_hh, strict=True)):
        projected = x @ cell.weight_ih.T + (cell.bias + b_hh)  # (*batch, T, 4H)
        w_hh = cell.weight_hh.T

        def recur(carry, p_t, w_hh=w_hh):
            h, c = carry
            i, f, g, o = jnp.split(p_t + h @ w_hh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        (h, c), hs = jax.lax.scan(recur, (h0[k], c0[k]), jnp.moveaxis(projected, -2, 0))
        x = jnp.moveaxis(hs, 0, -2)  # (*batch, T, H)
        last_h.append(h)
        last_c.append(c)
    logits = x @ net.output.weight.T + net.output.bias
    return logits, (jnp.stack(last_h), jnp.stack(last_c))


@eqx.filter_jit
def _advance(net: CharRNN, state: State, u: jax.Array) -> tuple[State, jax.Array]:
    return net._advance(state, u)


def _check_context(context: Any) -> None:
    if context is not None:
        raise ConfigError("CharRNN is unconditional; it takes no context (pass None)")


def _assigned(net: CharRNN, weights: Mapping[str, Any]) -> tuple:
    """``net``'s trainable parts holding ``weights`` (torch layout), in its dtype."""
    dtype = net.start.dtype

    def a(key):
        return jnp.asarray(np.asarray(weights[key]), dtype)

    embedding = net.embedding
    if embedding is not None:
        embedding = eqx.tree_at(lambda e: e.weight, embedding, a("embedding.weight"))
    cells = [
        eqx.tree_at(
            lambda c: (c.weight_ih, c.weight_hh, c.bias),
            cell,
            (a(f"lstm.weight_ih_l{k}"), a(f"lstm.weight_hh_l{k}"), a(f"lstm.bias_ih_l{k}")),
        )
        for k, cell in enumerate(net.cells)
    ]
    bias_hh = [a(f"lstm.bias_hh_l{k}") for k in range(net.layers)]
    output = eqx.tree_at(
        lambda o: (o.weight, o.bias), net.output, (a("output.weight"), a("output.bias"))
    )
    return embedding, a("start"), cells, bias_hh, output
