"""Stochastic variational inference as ``init(seed) -> state`` and ``step(state, batch)``.

The parameters are whatever ``param`` sites model and guide announce (found as
``pyro.infer.SVI`` finds them, by tracing once with ``poutine.trace(param_only=True)``), so
the trainer fits a user's own Pyro program as well as ppgen's models. They are optimised with
plain ``torch.optim.Adam`` on their unconstrained tensors, in place.

Randomness is explicit: every draw of model and guide comes from torch's global generator,
so the trainer swaps a generator state of its own (seeded from ``seed`` at :meth:`init`, kept
in the state, saved in checkpoints) in around its work and restores the caller's after. The
epoch's shuffle and binarization noise derive from ``np.random.SeedSequence([seed, epoch])``,
so a resumed run repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.distributions import constraints, transform_to
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.pyro.handlers import replay
from ppgen.inference.pyro.loglik import to_tensor
from ppgen.inference.pyro.objectives import ELBO

__all__ = ["TrainState", "Trainer"]

LR_SCHEDULES = ("constant", "cosine", "exponential")
EXPONENTIAL_DECAY = 0.1  # lr factor reached at total_steps by the exponential schedule


class TrainState(NamedTuple):
    """Everything a training run carries from step to step.

    ``params`` are the unconstrained leaf tensors by param-site name (updated in place by the
    optimizer); ``rng_state`` is the torch generator state the run samples from.
    """

    params: dict[str, torch.Tensor]
    constraints: dict[str, constraints.Constraint]
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    step: int
    epoch: int
    seed: int
    rng_state: torch.Tensor


def _lr_factor(schedule: str, total_steps: int | None) -> Callable[[int], float]:
    """The learning-rate multiplier at step ``s`` (closed forms, so they never wrap around)."""
    if schedule == "constant":
        return lambda s: 1.0
    if schedule == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
    return lambda s: EXPONENTIAL_DECAY ** (s / total_steps)


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused where torch has a fused kernel for these tensors.

    The fused kernel does the whole update in one pass (about ten times faster than the
    default per-tensor loop on CPU for a VAE); same algorithm, deterministic.
    """
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # e.g. a device or dtype without a fused kernel
        return torch.optim.Adam(params, lr=lr)


class _GlobalRNG:
    """Swap a run's generator state into torch's global generator; restore on exit."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def __enter__(self) -> _GlobalRNG:
        self._outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state = torch.get_rng_state()
        torch.set_rng_state(self._outer)


class Trainer:
    """Minibatch SVI with Adam for any Pyro ``model(x, ...)``/``guide(x, ...)`` pair.

    Args:
        model: Pyro model taking a batch ``x`` first.
        guide: Pyro guide with the same signature.
        objective: Loss ``objective(model, guide, x, **kwargs)``, e.g. ``ELBO()``, ``IWAE(5)``.
        lr: Adam learning rate.
        lr_schedule: ``"constant"``, ``"cosine"`` (to 0 at ``total_steps``) or
            ``"exponential"`` (to ``0.1 * lr`` at ``total_steps``), stepped every step.
        total_steps: Length of the schedule; required unless it is constant.
        batch_size: Minibatch size of :meth:`train_epoch` and :meth:`evaluate`.
        num_data: If given, passed as ``num_data=`` to model and guide (per-dataset scale).
        dynamic_binarization: Resample ``x ~ Bernoulli(x)`` every epoch (grey-scale data).
        clip_norm: Clip the global gradient norm to this value.
        beta_schedule: ``step -> beta``, passed to the objective as its ``beta=`` keyword at
            every step: KL annealing (Bowman et al. 2016) with :class:`ELBO`.
        eval_objective: Objective of :meth:`evaluate` (default: ``ELBO()``).

    Raises:
        ConfigError: An unknown schedule, an out-of-range option, or a ``beta_schedule`` for
            an objective without a ``beta`` keyword.
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
    ) -> None:
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if lr_schedule != "constant" and not (total_steps and total_steps >= 1):
            raise ConfigError(f"lr_schedule={lr_schedule!r} needs total_steps >= 1")
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        if num_data is not None and int(num_data) < int(batch_size):
            raise ConfigError(f"num_data must be an integer >= batch_size, got {num_data!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ConfigError(f"clip_norm must be positive, got {clip_norm!r}")
        if beta_schedule is not None and "beta" not in inspect.signature(objective).parameters:
            raise ConfigError("beta_schedule needs an objective with a beta= keyword (ELBO)")
        self.model, self.guide, self.objective = model, guide, objective
        self.lr, self.lr_schedule, self.total_steps = float(lr), lr_schedule, total_steps
        self.batch_size = int(batch_size)
        self.num_data = None if num_data is None else int(num_data)
        self.dynamic_binarization = bool(dynamic_binarization)
        self.clip_norm = clip_norm
        self.beta_schedule = beta_schedule
        self.eval_objective = eval_objective
        self._model_kwargs = {} if num_data is None else {"num_data": self.num_data}

    # -- setup ---------------------------------------------------------------------------

    def init(self, seed: int, x_example: np.ndarray | torch.Tensor) -> TrainState:
        """Find the parameters by tracing model and guide on ``x_example``; start Adam.

        Parameters start from their current values (a network's weights as built, a
        ``pyro.param``'s initial value or what the param store already holds); lazy
        initialisers draw from the run's generator, seeded from ``seed``.
        """
        if not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        seed = int(seed)
        x = to_tensor(x_example, torch.get_default_dtype())
        if self.dynamic_binarization:  # the model sees binary data, as in training
            x = torch.bernoulli(x.clamp(0, 1), generator=torch.Generator().manual_seed(seed))
        with _GlobalRNG(torch.Generator().manual_seed(seed).get_state()) as rng:
            with poutine.trace(param_only=True) as param_capture:
                guide_trace = poutine.trace(self.guide).get_trace(x, **self._model_kwargs)
                replay(self.model, guide_trace)(x, **self._model_kwargs)
        params, constraint = {}, {}
        for name, site in param_capture.trace.nodes.items():
            value = site["value"]
            # pyro.param values carry a weakref to their unconstrained tensor; module-local
            # parameters (ppgen.models.pyro.params) are their own unconstrained tensor.
            unconstrained = value.unconstrained() if hasattr(value, "unconstrained") else value
            if not (unconstrained.is_leaf and unconstrained.requires_grad):
                raise ConfigError(f"param site {name!r} is not a leaf tensor requiring grad")
            params[name] = unconstrained
            constraint[name] = site["kwargs"].get("constraint", constraints.real)
        if not params:
            raise ConfigError("model and guide declare no parameters: there is nothing to train")
        optimizer = _adam(list(params.values()), self.lr)
        scheduler = LambdaLR(optimizer, _lr_factor(self.lr_schedule, self.total_steps))
        return TrainState(params, constraint, optimizer, scheduler, 0, 0, seed, rng.state)

    # -- training ------------------------------------------------------------------------

    def _update(self, state: TrainState, x: torch.Tensor, step: int) -> float:
        """One gradient step on ``x``; returns the loss and skips the step if non-finite."""
        kwargs = self._model_kwargs
        if self.beta_schedule is not None:
            kwargs = {**kwargs, "beta": float(self.beta_schedule(step))}
        return self._gradient_step(state, (x,), kwargs)

    def _gradient_step(self, state: TrainState, args: tuple, kwargs: dict[str, Any]) -> float:
        """Minimise ``objective(model, guide, *args, **kwargs)`` by one step; a non-finite
        loss is returned without stepping."""
        state.optimizer.zero_grad(set_to_none=True)
        loss = self.objective(self.model, self.guide, *args, **kwargs)
        value = loss.item()
        if not math.isfinite(value):
            return value  # report, never step: the parameters stay finite
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(state.params.values(), self.clip_norm)
        state.optimizer.step()
        state.scheduler.step()
        return value

    def step(
        self, state: TrainState, batch: np.ndarray | torch.Tensor
    ) -> tuple[TrainState, dict[str, float]]:
        """One optimizer step on ``batch``; a non-finite loss is reported, not stepped on.

        Returns:
            ``(state, {"loss": loss per example})``.
        """
        x = to_tensor(batch, self._dtype(state))
        with _GlobalRNG(state.rng_state) as rng:
            loss = self._update(state, x, state.step)
        done = int(math.isfinite(loss))
        state = state._replace(step=state.step + done, rng_state=rng.state)
        return state, {"loss": loss / (self.num_data or len(x))}

    def train_epoch(
        self, state: TrainState, x: np.ndarray, epoch: int
    ) -> tuple[TrainState, dict[str, float]]:
        """One pass over ``x`` in shuffled minibatches (the last partial batch is dropped).

        The permutation and the binarization noise derive from ``(seed, epoch)``. A
        non-finite loss ends the epoch early, before the optimizer steps on it.

        Returns:
            ``(state, {"loss": mean per-example loss, "finite": 1.0 or 0.0, "lr": learning
            rate at the epoch's end})``; on divergence the loss is the non-finite one.
        """
        xt = self._epoch_data(state, x)
        num_batches = len(xt) // self.batch_size
        if num_batches == 0:
            raise DataError(f"x has {len(xt)} examples, fewer than batch_size={self.batch_size}")
        shuffle_seq, binarize = self._epoch_randomness(state, epoch)
        order = torch.from_numpy(np.random.default_rng(shuffle_seq).permutation(len(xt)))

        def step_loss(i: int, step: int) -> float:
            batch = xt[order[i * self.batch_size : (i + 1) * self.batch_size]]
            if self.dynamic_binarization:
                batch = torch.bernoulli(batch, generator=binarize)
            return self._update(state, batch, step)

        per_example = 1.0 / (self.num_data or self.batch_size)
        return self._run_epoch(state, epoch, num_batches, step_loss, per_example)

    def _epoch_data(self, state: TrainState, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``x`` as a tensor in the parameters' dtype, finite, and in [0, 1] when binarized."""
        xt = to_tensor(x, self._dtype(state))
        lo, hi = torch.aminmax(xt)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError("x contains NaN or Inf; drop or impute those examples first")
        if self.dynamic_binarization and (lo < 0 or hi > 1):
            raise DataError(
                f"dynamic_binarization needs x in [0, 1], got values in [{lo:g}, {hi:g}]; "
                "rescale the data (e.g. x / 255)"
            )
        return xt

    @staticmethod
    def _epoch_randomness(
        state: TrainState, epoch: int
    ) -> tuple[np.random.SeedSequence, torch.Generator]:
        """The epoch's shuffle seed and data-noise generator (binarization or input noise),
        both from ``(seed, epoch)``."""
        shuffle_seq, binarize_seq = np.random.SeedSequence([state.seed, int(epoch)]).spawn(2)
        binarize = torch.Generator().manual_seed(int(binarize_seq.generate_state(1)[0]))
        return shuffle_seq, binarize

    def _run_epoch(
        self,
        state: TrainState,
        epoch: int,
        num_steps: int,
        step_loss: Callable[[int, int], float],
        per_example: float,
    ) -> tuple[TrainState, dict[str, float]]:
        """Call ``step_loss(i, global_step)`` for ``i < num_steps`` with the run's generator
        swapped in; stop at the first non-finite loss (not stepped on)."""
        total, steps = 0.0, 0
        with _GlobalRNG(state.rng_state) as rng, contextlib.ExitStack() as unchecked:
            for i in range(num_steps):
                if i == 1:
                    # Pyro's validation (distribution arguments, supports, the model's own
                    # data checks) has seen this epoch's first step; later steps skip it.
                    unchecked.enter_context(pyro.validation_enabled(False))
                loss = step_loss(i, state.step + steps)
                if not math.isfinite(loss):
                    break  # not stepped on: report it, the driver decides
                total, steps = total + loss, steps + 1
        diverged = steps < num_steps
        state = state._replace(
            step=state.step + steps,
            epoch=int(epoch) + (not diverged),
            rng_state=rng.state,
        )
        return state, {
            "loss": loss * per_example if diverged else total * per_example / steps,
            "finite": float(not diverged),
            "lr": float(state.optimizer.param_groups[0]["lr"]),
        }

    # -- evaluation and parameters -------------------------------------------------------

    def evaluate(
        self, state: TrainState, x: np.ndarray | torch.Tensor, *, objective: Callable | None = None
    ) -> dict[str, float]:
        """The bound per example over all of ``x`` (no gradients, no partial batch dropped).

        Args:
            objective: Defaults to ``eval_objective`` or ``ELBO()``; with ``IWAE(k)`` the
                reported ``"elbo"`` is the k-sample importance weighted bound.

        Returns:
            ``{"elbo": mean over x of the bound}`` in nats.
        """
        objective = objective or self.eval_objective or ELBO()
        xt = to_tensor(x, self._dtype(state))
        if len(xt) == 0:
            raise DataError("x holds no examples to evaluate")
        # Its own generator, derived from (seed, step): evaluating never shifts training noise.
        eval_seed = int(np.random.SeedSequence([state.seed, state.step, 1]).generate_state(1)[0])
        total = 0.0
        with torch.no_grad(), _GlobalRNG(torch.Generator().manual_seed(eval_seed).get_state()):
            for start in range(0, len(xt), self.batch_size):
                batch = xt[start : start + self.batch_size]
                kwargs = {} if self.num_data is None else {"num_data": len(batch)}
                total += objective(self.model, self.guide, batch, **kwargs).item()
        return {"elbo": -total / len(xt)}

    def params(self, state: TrainState) -> dict[str, torch.Tensor]:
        """Constrained parameter values by site name (detached copies)."""
        with torch.no_grad():
            return {
                name: transform_to(state.constraints[name])(p).detach().clone()
                for name, p in state.params.items()
            }

    @staticmethod
    def _dtype(state: TrainState) -> torch.dtype:
        return next(iter(state.params.values())).dtype

    # -- checkpoints ---------------------------------------------------------------------

    def state_arrays(self, state: TrainState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The state as numpy arrays plus JSON-able metadata (see :meth:`load_state_arrays`).

        Arrays: ``params/<name>`` (unconstrained), ``optimizer/<name>/<key>`` (Adam's
        ``exp_avg``, ``exp_avg_sq``, ``step``) and ``rng_state`` (uint8). Meta: step, epoch,
        seed, the parameter names and shapes (the model's fingerprint), Adam's
        hyper-parameters and the scheduler's state.
        """
        names = list(state.params)
        arrays = {f"params/{n}": p.detach().cpu().numpy().copy() for n, p in state.params.items()}
        optim = state.optimizer.state_dict()
        for index, per_param in optim["state"].items():
            for key, value in per_param.items():
                arrays[f"optimizer/{names[index]}/{key}"] = (
                    torch.as_tensor(value).cpu().numpy().copy()
                )
        arrays["rng_state"] = state.rng_state.numpy().copy()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optim["param_groups"]]
        scheduler = {k: v for k, v in state.scheduler.state_dict().items() if k != "lr_lambdas"}
        meta = {
            "backend": "pyro",
            "step": state.step,
            "epoch": state.epoch,
            "seed": state.seed,
            "params": {n: list(p.shape) for n, p in state.params.items()},
            "optimizer": groups,
            "scheduler": scheduler,
        }
        return arrays, meta

    def load_state_arrays(
        self, state: TrainState, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> TrainState:
        """Restore a state saved by :meth:`state_arrays` into ``state`` (from :meth:`init`).

        Parameters are copied in place, so the model's own tensors hold the restored values.

        Raises:
            CheckpointError: The checkpoint belongs to another model or configuration, or is
                incomplete.
        """
        if meta.get("backend", "pyro") != "pyro":
            raise CheckpointError(
                f"checkpoint was written by the {meta['backend']} backend; load it with that "
                "backend's Trainer"
            )
        expected = {n: list(p.shape) for n, p in state.params.items()}
        saved = meta.get("params")
        if saved != expected:
            saved = saved or {}
            missing = sorted(set(expected) - set(saved))
            extra = sorted(set(saved) - set(expected))
            shapes = sorted(n for n in set(saved) & set(expected) if saved[n] != expected[n])
            raise CheckpointError(
                "checkpoint was written by another model or configuration: "
                f"missing params {missing}, unexpected {extra}, different shapes {shapes}"
            )
        index = {name: i for i, name in enumerate(state.params)}
        try:
            # np.array copies: arrays read from a checkpoint may be read-only.
            values = {n: torch.from_numpy(np.array(arrays[f"params/{n}"])) for n in index}
            optim_state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in arrays.items():
                if key.startswith("optimizer/"):
                    name, entry = key[len("optimizer/") :].rsplit("/", 1)
                    optim_state.setdefault(index[name], {})[entry] = torch.from_numpy(
                        np.array(value)
                    )
            rng_state = torch.from_numpy(np.array(arrays["rng_state"], dtype=np.uint8))
            groups = [dict(g, params=list(range(len(index)))) for g in meta["optimizer"]]
            scheduler = meta["scheduler"]
            step, epoch, seed = int(meta["step"]), int(meta["epoch"]), int(meta["seed"])
        except (KeyError, ValueError) as missing:
            raise CheckpointError(f"checkpoint is incomplete: no entry {missing}") from None
        for name, p in state.params.items():
            if values[name].shape != p.shape:
                raise CheckpointError(
                    f"checkpoint array params/{name} has shape {tuple(values[name].shape)}, "
                    f"this model needs {tuple(p.shape)}"
                )
        try:
            state.optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
            state.scheduler.load_state_dict(dict(scheduler, lr_lambdas=[None]))
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint's optimizer state does not fit: {error}") from None
        with torch.no_grad():
            for name, p in state.params.items():
                p.copy_(values[name])
        return state._replace(step=step, epoch=epoch, seed=seed, rng_state=rng_state)
