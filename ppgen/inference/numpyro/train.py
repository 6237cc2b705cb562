"""Stochastic variational inference for any NumPyro model/guide: ``init``, ``step``, epochs.

The update is ``numpyro.infer.SVI`` with an ``optax`` optimiser: parameters are optimised
unconstrained (``biject_to`` of each ``numpyro.param`` constraint), the loss is any ppgen
objective (``loss(rng_key, model, guide, *args, **kwargs)``). A whole epoch is one jitted
``lax.scan`` over the update with the dataset on the device, so the Python tracing of
model and guide happens once per compile, never per step.

Randomness is explicit: epoch ``e`` draws its shuffle, its binarisation noise and every
step's particles from ``fold_in(PRNGKey(seed), e)``, so an epoch re-run from a checkpoint
is bit-for-bit the epoch that was lost.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI
from numpyro.infer.svi import SVIState

from ppgen.data import bernoulli_binarize
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.numpyro.objectives import ELBO

__all__ = ["TrainState", "Trainer"]

LR_SCHEDULES = ("constant", "cosine", "exponential")
_EVAL_STREAM = 0x7FFFFFFF  # fold_in tag separating evaluation noise from training epochs


class TrainState(NamedTuple):
    """Everything training needs to continue exactly: all leaves are arrays.

    Attributes:
        svi_state: NumPyro ``SVIState``: optimiser state (its step count, the unconstrained
            params, optax moments) and the PRNG key that :meth:`Trainer.step` splits.
        seed: The run's seed (uint32); epochs derive their randomness from it.
        step: Updates taken so far (int32).
        epoch: Epochs completed so far (int32).
    """

    svi_state: SVIState
    seed: jax.Array
    step: jax.Array
    epoch: jax.Array


class _ObjectiveLoss:
    """Adapter from a ppgen objective to the ``loss`` protocol ``numpyro.infer.SVI`` calls."""

    can_infer_discrete = False

    def __init__(self, objective: Callable):
        self.objective = objective

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        model = handlers.substitute(model, data=param_map)
        guide = handlers.substitute(guide, data=param_map)
        return self.objective(rng_key, model, guide, *args, **kwargs)


def _optimizer(lr, lr_schedule, total_steps, clip_norm):
    if lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; use one of {LR_SCHEDULES}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr!r}")
    if lr_schedule != "constant" and not (isinstance(total_steps, int) and total_steps >= 1):
        raise ConfigError(
            f"lr_schedule={lr_schedule!r} needs total_steps (epochs * (len(x) // batch_size))"
        )
    if lr_schedule == "constant":
        schedule = optax.constant_schedule(lr)
    elif lr_schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, decay_steps=total_steps)
    else:  # 10x smaller after total_steps
        schedule = optax.exponential_decay(lr, transition_steps=total_steps, decay_rate=0.1)
    chain = [] if clip_norm is None else [optax.clip_by_global_norm(clip_norm)]
    return optax.chain(*chain, optax.adam(schedule)), schedule


class Trainer:
    """Fit a model/guide pair by minimising an objective with Adam on minibatches.

    Args:
        model: ``model(x, num_data=None)`` (any NumPyro program with a ``"data"`` plate).
        guide: ``guide(x, num_data=None)``.
        objective: ``loss(rng_key, model, guide, x, **kwargs)``, e.g. ``ELBO()``, ``IWAE(5)``.
        lr: Peak learning rate.
        lr_schedule: ``"constant"``, ``"cosine"`` (to 0 at ``total_steps``) or
            ``"exponential"`` (x0.1 per ``total_steps``).
        total_steps: Length of the schedule (required unless constant).
        batch_size: Minibatch size; an epoch drops its last partial batch.
        num_data: Dataset size passed as ``num_data=`` to model and guide, so the loss is a
            per-dataset estimate; metrics divide by ``num_data or batch_size`` (per example).
        dynamic_binarization: Draw ``x ~ Bernoulli(x)`` afresh for every minibatch
            (Salakhutdinov & Murray, 2008), on the device inside the epoch's scan.
        clip_norm: Clip the gradient's global norm to this value.
        beta_schedule: ``step -> beta`` (a Python function of the global step), passed to
            the objective as its ``beta=`` keyword: KL annealing (Bowman et al., 2016). The
            values are computed on the host per epoch and fed to the scan (no recompile).
        eval_objective: Default objective of :meth:`evaluate` (else ``ELBO()``).

    Raises:
        ConfigError: Unknown schedule, non-positive sizes, or a ``beta_schedule`` for an
            objective without a ``beta`` keyword.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        objective: Callable,
        *,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        total_steps: int | None = None,
        batch_size: int = 100,
        num_data: int | None = None,
        dynamic_binarization: bool = False,
        clip_norm: float | None = None,
        beta_schedule: Callable[[int], float] | None = None,
        eval_objective: Callable | None = None,
    ):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_data is not None and not (isinstance(num_data, int) and num_data >= batch_size):
            raise ConfigError(f"num_data must be an integer >= batch_size, got {num_data!r}")
        if beta_schedule is not None and "beta" not in inspect.signature(objective).parameters:
            raise ConfigError("beta_schedule needs an objective with a beta= keyword (ELBO)")
        self.model, self.guide, self.objective = model, guide, objective
        self.eval_objective = eval_objective
        self.batch_size, self.num_data = batch_size, num_data
        self.dynamic_binarization = dynamic_binarization
        self.beta_schedule = beta_schedule
        optimizer, self.lr_schedule = _optimizer(lr, lr_schedule, total_steps, clip_norm)
        static = {} if num_data is None else {"num_data": num_data}
        self._svi = SVI(model, guide, optimizer, _ObjectiveLoss(objective), **static)
        self._cache: tuple[weakref.ref, jax.Array] | None = None  # dataset on the device
        self._step = jax.jit(self._step_impl)
        self._epoch = jax.jit(self._epoch_impl)
        self._eval = jax.jit(self._eval_impl, static_argnames="objective")

    # -- state ------------------------------------------------------------------------

    def init(self, seed: int, x_example: np.ndarray) -> TrainState:
        """Initial state: parameters from one trace of guide and model on ``x_example``.

        Under ``dynamic_binarization`` the trace sees a binarized copy, as every training
        step does (so a Bernoulli model's data check passes on grey input).
        """
        if not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        x_example = _check_data(x_example, 1)
        if self.dynamic_binarization:
            _check_unit_interval(x_example)
            x_example = bernoulli_binarize(x_example, int(seed)).astype(x_example.dtype)
        svi_state = self._svi.init(jax.random.PRNGKey(seed), _device(x_example))
        return TrainState(
            svi_state,
            jnp.asarray(seed, jnp.uint32),
            jnp.asarray(0, jnp.int32),
            jnp.asarray(0, jnp.int32),
        )

    def params(self, state: TrainState) -> dict:
        """Constrained parameter values (as ``SVI.get_params``), for ``model.bind``."""
        return self._svi.get_params(state.svi_state)

    # -- training ---------------------------------------------------------------------

    def _update(self, state: TrainState, x: jax.Array, key: jax.Array | None, beta):
        svi_state = state.svi_state if key is None else state.svi_state._replace(rng_key=key)
        kwargs = {} if beta is None else {"beta": beta}
        svi_state, loss = self._svi.update(svi_state, x, **kwargs)
        return state._replace(svi_state=svi_state, step=state.step + 1), loss

    def _step_impl(self, state, x, beta):
        return self._update(state, x, None, beta)

    def step(self, state: TrainState, batch: np.ndarray) -> tuple[TrainState, dict]:
        """One update on ``batch`` as given (no binarisation); particles from ``state``'s key.

        Returns:
            The new state and ``{"loss": per-example loss}``.
        """
        batch = _check_data(batch, 1)
        beta = self._betas(state, 1)
        state, loss = self._step(state, _device(batch), None if beta is None else beta[0])
        return state, {"loss": float(loss) / (self.num_data or len(batch))}

    def _epoch_impl(self, state, x, epoch, betas):
        key = jax.random.fold_in(jax.random.PRNGKey(state.seed), epoch)
        perm_key, bin_key, step_key = jax.random.split(key, 3)
        num_batches = x.shape[0] // self.batch_size
        idx = jax.random.permutation(perm_key, x.shape[0])[: num_batches * self.batch_size]
        idx = idx.reshape(num_batches, self.batch_size)

        def body(state, inputs):
            i, rows, beta = inputs
            xb = x[rows]  # (batch, features)
            if self.dynamic_binarization:
                xb = jax.random.bernoulli(jax.random.fold_in(bin_key, i), xb).astype(xb.dtype)
            return self._update(state, xb, jax.random.fold_in(step_key, i), beta)

        state, losses = jax.lax.scan(body, state, (jnp.arange(num_batches), idx, betas))
        return state._replace(epoch=jnp.asarray(epoch + 1, jnp.int32)), losses

    def train_epoch(self, state: TrainState, x: np.ndarray, epoch: int) -> tuple[TrainState, dict]:
        """One pass over ``x`` in a single compiled ``lax.scan``.

        The shuffle (the last partial batch is dropped), binarisation noise and particles
        all derive from ``(seed, epoch)``. A NaN/Inf loss is reported, never raised.

        Returns:
            The new state and ``{"loss": mean per-example loss, "finite": 1.0 or 0.0,
            "lr": learning rate at the epoch's end}``.
        """
        x_dev = self._on_device(x)
        num_batches = x_dev.shape[0] // self.batch_size
        state, losses = self._epoch(
            state, x_dev, jnp.asarray(epoch, jnp.int32), self._betas(state, num_batches)
        )
        losses = np.asarray(losses) / (self.num_data or self.batch_size)
        metrics = {
            "loss": float(np.mean(losses)),
            "finite": float(np.all(np.isfinite(losses))),
            "lr": float(self.lr_schedule(int(state.step))),
        }
        return state, metrics

    def _betas(self, state: TrainState, n: int) -> jax.Array | None:
        if self.beta_schedule is None:
            return None
        first = int(state.step)
        return jnp.asarray([self.beta_schedule(first + i) for i in range(n)], jnp.float32)

    def _on_device(self, x: np.ndarray) -> jax.Array:
        """Put the dataset on the device once; later epochs reuse it (same array object)."""
        if self._cache is not None and self._cache[0]() is x:
            return self._cache[1]
        x_np = _check_data(x, self.batch_size)
        if self.dynamic_binarization:
            _check_unit_interval(x_np)
        x_dev = _device(x_np)
        try:
            self._cache = (weakref.ref(x), x_dev)
        except TypeError:  # not weak-referenceable (e.g. a list): no caching
            self._cache = None
        return x_dev

    # -- evaluation -------------------------------------------------------------------

    def _eval_impl(self, state, batches, objective):
        params = self._svi.get_params(state.svi_state)
        model = handlers.substitute(self.model, data=params)
        guide = handlers.substitute(self.guide, data=params)
        # Its own stream, derived from (seed, step): evaluating never shifts training noise.
        key = jax.random.fold_in(jax.random.PRNGKey(state.seed), _EVAL_STREAM)
        key = jax.random.fold_in(key, state.step)

        def body(total, inputs):
            i, xb = inputs
            return total + objective(jax.random.fold_in(key, i), model, guide, xb), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), (jnp.arange(len(batches)), batches))
        return total

    def evaluate(self, state: TrainState, x: np.ndarray, *, objective=None) -> dict:
        """The bound per example over all of ``x``, in compiled batches of ``batch_size``.

        No partial batch is dropped (the remainder is one more call, compiled for its shape).

        Args:
            objective: Defaults to ``eval_objective`` or ``ELBO()``; with ``IWAE(k)`` the
                reported ``"elbo"`` is the k-sample importance weighted bound.

        Returns:
            ``{"elbo": mean over x of the bound}`` in nats.
        """
        x = _check_data(x, 1)
        objective = objective or self.eval_objective or ELBO()
        size = min(self.batch_size, len(x))
        full = len(x) // size * size
        total = self._eval(state, _device(x[:full]).reshape(-1, size, x.shape[1]), objective)
        if full < len(x):
            total = total + self._eval(state, _device(x[None, full:]), objective)
        return {"elbo": -float(total) / len(x)}

    # -- checkpoints ------------------------------------------------------------------

    def state_arrays(self, state: TrainState) -> tuple[dict[str, np.ndarray], dict]:
        """Every leaf of ``state`` as numpy under a stable path key, plus JSON-able meta."""
        arrays = {
            _key(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        }
        meta = {
            "backend": "numpyro",
            "step": int(state.step),
            "epoch": int(state.epoch),
            "seed": int(state.seed),
            "fingerprint": _fingerprint(arrays),
        }
        return arrays, meta

    def load_state_arrays(
        self, state: TrainState, arrays: dict[str, np.ndarray], meta: dict
    ) -> TrainState:
        """``state`` (a template from :meth:`init`) with every leaf replaced from ``arrays``.

        Raises:
            CheckpointError: Keys, shapes or dtypes differ from the template (a checkpoint
                of another model or trainer).
        """
        template, _ = self.state_arrays(state)
        missing = sorted(set(template) - set(arrays))
        unexpected = sorted(set(arrays) - set(template))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint is from another model: missing {missing[:3]}, unexpected "
                f"{unexpected[:3]} ({len(missing)}/{len(unexpected)} in all); "
                "build the model with the arguments the checkpoint was trained with"
            )
        for key, value in template.items():
            got = np.asarray(arrays[key])
            if got.shape != value.shape or got.dtype != value.dtype:
                raise CheckpointError(
                    f"checkpoint is from another model: {key} is {got.dtype}{list(got.shape)}, "
                    f"this model needs {value.dtype}{list(value.shape)}"
                )
        if meta.get("fingerprint", _fingerprint(template)) != _fingerprint(template):
            raise CheckpointError("checkpoint is from another model (structure fingerprint)")
        paths, treedef = jax.tree_util.tree_flatten_with_path(state)
        leaves = [jnp.asarray(np.asarray(arrays[_key(path)])) for path, _ in paths]
        return jax.tree_util.tree_unflatten(treedef, leaves)


def _key(path: tuple) -> str:
    """Stable name of a state leaf, e.g. ``svi_state.optim_state[1][0]['W']``."""
    return jax.tree_util.keystr(path).lstrip(".")


def _fingerprint(arrays: dict[str, np.ndarray]) -> str:
    spec = sorted((k, v.dtype.str, list(v.shape)) for k, v in arrays.items())
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def _device(x: np.ndarray) -> jax.Array:
    """On the device in JAX's default float dtype (uint8 or float64 data included)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _check_data(x: Any, min_rows: int) -> np.ndarray:
    """``x`` as a 2-D float numpy array with at least ``min_rows`` finite rows."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(
            f"expected data of shape (N, features), got {x.shape}; "
            "flatten images with x.reshape(len(x), -1)"
        )
    if len(x) < min_rows:
        raise DataError(f"need at least {min_rows} rows (the batch size), got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise DataError("data contains NaN or Inf; drop or impute those rows first")
    return x


def _check_unit_interval(x: np.ndarray) -> None:
    if x.min() < 0 or x.max() > 1:
        raise DataError(
            f"dynamic_binarization needs x in [0, 1], got values in "
            f"[{x.min():g}, {x.max():g}]; rescale the data (e.g. x / 255)"
        )
