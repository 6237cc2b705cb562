"""Stochastic optimisation of any Pyro program as ``init(seed) -> state``, ``step(state, batch)``.

One trainer for every family: what varies is an argument.

- The **objective** is any ppgen loss ``objective(model, guide, *args, **kwargs)``: a scalar,
  or a dict with one loss per player (a GAN's generator and critic).
- The **parameters** are whatever ``param`` sites the objective announces when it runs model
  and guide (found as ``pyro.infer.SVI`` finds them, by tracing once with
  ``poutine.trace(param_only=True)``, here around the objective, so an objective's own
  networks, e.g. a critic, are found too). **Parameter groups**
  (:class:`~ppgen.inference.optim.Group`) split them among the players, each with its own
  ``torch.optim`` optimiser, learning rate, schedule and updates per step.
- The **batch schedule** (``ppgen.data.schedules``: plain minibatches, or the
  labelled/unlabelled schedule of semi-supervised learning) says which rows every step sees
  and how they become the objective's arguments; the **per-batch transform**
  (``ppgen.inference.pyro.noise``: dynamic binarization, input noise) perturbs the data
  inputs of each training step; the **evaluator** says what ``evaluate`` reports (the bound,
  or a classification error).
- **Data parallelism** over ``devices`` processes (``torch.distributed``, started by
  ``torchrun``): see :mod:`ppgen.inference.pyro.parallel`.

Randomness is explicit: the model's draws come from a generator state of the run's own
(seeded at :meth:`Trainer.init`, kept in the state, saved in checkpoints), swapped into
torch's global generator around the trainer's work; the epoch's rows and data noise derive
from ``(seed, epoch)``, so a resumed run repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.distributions import constraints, transform_to
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ppgen.data.schedules import argument_names
from ppgen.errors import CheckpointError, ConfigError
from ppgen.inference.checks import DATA, datapoint_param_sizes
from ppgen.inference.optim import (
    DEFAULT_GROUP,
    Group,
    assign_params,
    epoch_metrics,
    group_losses,
    lr_factor,
    metric_name,
    reported_values,
)
from ppgen.inference.pyro.interop import GlobalRNG
from ppgen.inference.pyro.objectives import ELBO
from ppgen.inference.pyro.parallel import DataParallel
from ppgen.inference.pyro.particles import particle_terms
from ppgen.inference.pyro.support import check_observed_support
from ppgen.inference.trainer import TrainerBase

__all__ = ["TrainState", "Trainer"]


Evaluator = Callable[..., dict]


class TrainState(NamedTuple):
    """Everything a training run carries from step to step.

    ``params`` are the unconstrained leaf tensors by param-site name (updated in place by the
    optimisers); ``optimizers`` and ``schedulers`` hold one ``torch.optim`` optimiser and
    learning-rate schedule per parameter group; ``rng_state`` is the torch generator state
    the run samples from; ``averages`` the exponential moving averages of the unconstrained
    parameters of the groups with an ``ema`` decay, by site name (empty without one).
    """

    params: dict[str, torch.Tensor]
    constraints: dict[str, constraints.Constraint]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, LRScheduler]
    step: int
    epoch: int
    seed: int
    rng_state: torch.Tensor
    averages: dict[str, torch.Tensor] = {}  # never mutated: init always gives its own dict


def _optimizer(group: Group, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The group's ``torch.optim`` optimiser; Adam fused where torch has a kernel for it
    (the whole update in one pass, about ten times faster than the per-tensor loop on CPU
    for a VAE; same algorithm, deterministic)."""
    wd = group.weight_decay
    if group.optimizer == "sgd":
        return torch.optim.SGD(params, lr=group.lr, weight_decay=wd)
    adam = torch.optim.AdamW if wd else torch.optim.Adam  # AdamW: decoupled weight decay
    kwargs = {"weight_decay": wd} if wd else {}
    try:
        return adam(params, lr=group.lr, betas=group.betas, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # e.g. a device or dtype without a fused kernel
        return adam(params, lr=group.lr, betas=group.betas, **kwargs)


class Trainer(TrainerBase):
    """Minibatch stochastic optimisation of an objective on any Pyro model/guide pair.

    Takes the options of :class:`~ppgen.inference.trainer.TrainerBase` (the NumPyro
    trainer's too). On Pyro: the objective is ``objective(model, guide, *args, **kwargs)``
    returning a differentiable tensor (or a dict of them); every group is a ``torch.optim``
    optimiser (Adam fused where torch has a kernel) with a ``LambdaLR`` schedule over the
    unconstrained leaf tensors of its param sites, updated in place; the ``transform`` draws
    from the epoch's ``torch.Generator``; ``devices > 1`` runs one process per device under
    ``torchrun`` (:mod:`ppgen.inference.pyro.parallel`).
    """

    _parallel = DataParallel

    def init(self, seed: int, data: Any) -> TrainState:
        """Find the parameters by running the objective once on the first rows of ``data``
        (the schedule's example step; under a transform, transformed as in training) and
        start one optimiser per group.

        Parameters start from their current values (a network's weights as built, a
        ``pyro.param``'s initial value or what the param store already holds); lazy
        initialisers draw from the run's generator, seeded from ``seed``.

        Raises:
            ConfigError: A bad seed, no parameters, or parameters the groups do not cover.
        """
        seed, example, kwargs = self._example(seed, data)
        names = argument_names(data)
        dtype = torch.get_default_dtype()
        try:
            capture, rng = self._find_params(seed, example, kwargs, names, dtype)
        except Exception:
            args = self._tensors(example, self._first_param_dtype or dtype)
            self._check_support(check_observed_support, self.model, args, names, kwargs)
            # Data follow the parameters' dtype: a .double() model fails on float32 data
            # at its first parameter; run again with data of that parameter's dtype.
            found = self._first_param_dtype
            if found is None or found == dtype:
                raise
            capture, rng = self._find_params(seed, example, kwargs, names, found)
            dtype = found
        args = self._tensors(example, dtype)
        self._check_leading_dims(self._particles_probe, args, names, kwargs)
        params, constraint = {}, {}
        for name, site in capture.trace.nodes.items():
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
        self._set_datapoint_params(datapoint_param_sizes(capture.trace.nodes.values()))
        owned = assign_params(params, self.groups)
        optimizers, schedulers = {}, {}
        for group in self.groups:
            optimizers[group.name] = _optimizer(group, [params[n] for n in owned[group.name]])
            factor = lr_factor(group.lr_schedule, group.total_steps)
            schedulers[group.name] = LambdaLR(optimizers[group.name], factor)
        averages = {  # started at the initial weights
            n: params[n].detach().clone()
            for g in self.groups
            if g.ema is not None
            for n in owned[g.name]
        }
        return TrainState(
            params, constraint, optimizers, schedulers, 0, 0, seed, rng.state, averages
        )

    _first_param_dtype: torch.dtype | None = None

    def _particles_probe(self, args: tuple, kwargs: dict[str, Any]) -> None:
        """Two particles of the pair, without gradients, on a fork of torch's generator."""
        with torch.no_grad(), torch.random.fork_rng(devices=[]), poutine.block():
            particle_terms(self.model, self.guide, args, kwargs, num_particles=2)

    def _find_params(self, seed, example, kwargs, names, dtype) -> tuple[Any, GlobalRNG]:
        """Run the objective once on the example step with data of ``dtype`` under a
        param-only trace (``SVI``'s way of finding parameters); records the first float
        parameter's dtype, even when the run fails."""
        args = self._tensors(example, dtype)
        generator = torch.Generator().manual_seed(seed)
        args = tuple(
            self.transform(generator, a, torch.arange(len(a)))
            if self.transform is not None and j in self.schedule.inputs
            else a
            for j, a in enumerate(args)
        )
        pos, by_name = self._arguments(args, names)
        self._first_param_dtype = None
        capture = poutine.trace(param_only=True)
        try:
            with GlobalRNG.from_seed(seed) as rng, capture:
                out = self.objective(self.model, self.guide, *pos, **by_name, **kwargs)
                group_losses(out, self.groups)
        finally:
            self._first_param_dtype = next(
                (
                    site["value"].dtype
                    for site in capture.trace.nodes.values()
                    if torch.is_tensor(site["value"]) and site["value"].is_floating_point()
                ),
                None,
            )
        return capture, rng

    def _tensors(self, args: Sequence[Any], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """A step's arguments as tensors: labels as ``long``, the rest in ``dtype``."""
        labels = {
            j
            for j, (a, _) in enumerate(self.schedule.gather(tuple(args)))
            if a in self.schedule.labels
        }
        return tuple(
            torch.as_tensor(np.asarray(a), dtype=torch.long)
            if j in labels
            else _as_tensor(a, dtype)
            for j, a in enumerate(args)
        )

    # -- training ------------------------------------------------------------------------

    def _update(
        self,
        state: TrainState,
        args: tuple,
        kwargs: dict[str, Any],
        names: tuple[str, ...] | None = None,
        rows: torch.Tensor | None = None,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """One training step: every group's updates in order. Returns each group's mean loss,
        and each reported entry's mean over the step's updates that returned it; at the first
        non-finite loss it returns at once, without stepping on it. ``names``:
        the data's keyword names, when it was a dict; ``rows``: the batch's row indices,
        given to the ``"data"`` plate (per-datapoint parameters)."""
        if self.beta_schedule is not None:
            kwargs = {**kwargs, "beta": float(self.beta_schedule(state.step))}
        if self.parallel is not None:
            args = tuple(self.parallel.shard(a) for a in args)
        args, by_name = self._arguments(args, names)
        kwargs = {**by_name, **kwargs}
        model, guide = self._pair(rows)
        draws = self.parallel.draws if self.parallel is not None else contextlib.nullcontext()
        losses, reported = {}, {}

        def means() -> dict[str, float]:
            return {name: sum(vs) / len(vs) for name, vs in reported.items()}

        for group in self.groups:
            params = state.optimizers[group.name].param_groups[0]["params"]
            total = 0.0
            player = {"player": group.name} if self.takes_player else {}
            for _ in range(group.updates):
                try:
                    with draws:
                        out = self.objective(model, guide, *args, **kwargs, **player)
                except ValueError:  # e.g. torch's support validation: say which value
                    self._check_support(check_observed_support, model, args, None, kwargs)
                    raise
                loss = group_losses(out, self.groups, player.get("player"))[group.name]
                value = loss.item() if self.parallel is None else self.parallel.mean(loss.item())
                for name, v in reported_values(out, self.reported).items():
                    v = float(v.detach()) if torch.is_tensor(v) else float(v)
                    reported.setdefault(name, []).append(
                        v if self.parallel is None else self.parallel.mean(v)
                    )
                if not math.isfinite(value):
                    self._check_support(check_observed_support, model, args, None, kwargs)
                    losses[group.name] = value
                    return losses, means()  # report, never step: the parameters stay finite
                optimizer = state.optimizers[group.name]
                optimizer.zero_grad(set_to_none=True)
                if len(self.groups) == 1:
                    loss.backward()  # every parameter is the group's
                else:  # this group's gradient only: the other players' are not touched
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                    for p, g in zip(params, grads, strict=True):
                        p.grad = g
                if self.parallel is not None:
                    for p in params:  # every process all-reduces the same list
                        p.grad = torch.zeros_like(p) if p.grad is None else p.grad
                    self.parallel.average_gradients([p.grad for p in params])
                if group.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, group.clip_norm)
                optimizer.step()
                state.schedulers[group.name].step()
                total += value
            losses[group.name] = total / group.updates
            if group.ema is not None:  # avg <- d avg + (1 - d) w, once a step
                d = group.ema
                with torch.no_grad():
                    for name, average in state.averages.items():
                        if group.matches(name):  # the group's own sites (assign_params)
                            average.copy_(d * average + (1.0 - d) * state.params[name])
        return losses, means()

    def step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, float]]:
        """One optimisation step on ``batch`` as given (no transform): an array ``x`` for
        plain minibatches, ``(x_l, y_l, x_u)`` for the labelled schedule. A non-finite loss
        is reported, not stepped on.

        Returns:
            ``(state, {"loss": loss per example, ...})`` (``loss_<group>`` per group, and
            the objective's reported entries per example under their names).
        """
        args, kwargs, divisor = self.schedule.batch(batch, self.num_data)
        args = self._tensors(args, self._dtype(state))
        rows = (
            torch.arange(len(args[0])) if self._datapoint_rows(len(args[0]), "the batch") else None
        )
        with GlobalRNG(state.rng_state) as rng:
            losses, reported = self._update(state, args, kwargs, argument_names(batch), rows)
        done = int(
            all(math.isfinite(v) for v in losses.values()) and len(losses) == len(self.groups)
        )
        state = state._replace(step=state.step + done, rng_state=rng.state)
        metrics = {metric_name(g): v / divisor for g, v in losses.items()}
        return state, {**metrics, **{n: v / divisor for n, v in reported.items()}}

    def train_epoch(
        self, state: TrainState, data: Any, epoch: int
    ) -> tuple[TrainState, dict[str, float]]:
        """One pass of the schedule over ``data`` (an array, or ``(x, y)`` for the labelled
        schedule); the last partial batch is dropped.

        The rows and the per-batch noise derive from ``(seed, epoch)``. A non-finite loss
        ends the epoch early, before any optimiser steps on it.

        Returns:
            ``(state, {"loss": mean per-example loss, "finite": 1.0 or 0.0, "lr": learning
            rate at the epoch's end})``, with ``loss_<group>`` and ``lr_<group>`` for
            several groups and the objective's reported entries per example under their
            names; on divergence the loss is the non-finite one.
        """
        arrays = self._epoch_arrays(data)
        names = argument_names(data)
        datapoint = self._datapoint_rows(len(arrays[0]), "the training data")
        gather = self.schedule.gather(arrays)
        indices = self.schedule.indices(arrays, self.batch_size, seed=state.seed, epoch=int(epoch))
        kwargs = self.schedule.kwargs(arrays, self.num_data)
        divisor = self.schedule.divisor(arrays, self.batch_size, self.num_data)
        dtype = self._dtype(state)
        tensors = tuple(
            torch.as_tensor(a, dtype=torch.long)
            if i in self.schedule.labels
            else _as_tensor(a, dtype)
            for i, a in enumerate(arrays)
        )
        if datapoint:  # per-datapoint parameters: each batch's rows in order (see _pair)
            indices = tuple(np.sort(idx, axis=1) for idx in indices)
        rows = [torch.from_numpy(np.asarray(idx, dtype=np.int64)) for idx in indices]
        noise = self._noise_generator(state.seed, epoch)
        per_step = {g.name: [] for g in self.groups}
        per_step_reported: dict[str, list[float]] = {}
        steps = 0
        with GlobalRNG(state.rng_state) as rng, contextlib.ExitStack() as unchecked:
            for s in range(len(rows[0])):
                if s == 1:
                    # Pyro's validation (distribution arguments, supports, the model's own
                    # data checks) has seen this epoch's first step; later steps skip it.
                    unchecked.enter_context(pyro.validation_enabled(False))
                args = []
                for j, (a, i) in enumerate(gather):
                    value = tensors[a][rows[i][s]]
                    if self.transform is not None and j in self.schedule.inputs:
                        value = self.transform(noise, value, rows[i][s])
                    args.append(value)
                losses, reported = self._update(
                    state._replace(step=state.step + steps),
                    tuple(args),
                    kwargs,
                    names,
                    rows[0][s] if datapoint else None,
                )
                for g, v in losses.items():
                    per_step[g].append(v)
                for n, v in reported.items():
                    per_step_reported.setdefault(n, []).append(v)
                if not self._finite(losses):
                    break  # not stepped on: report it, the driver decides
                steps += 1
        diverged = steps < len(rows[0])
        state = state._replace(
            step=state.step + steps, epoch=int(epoch) + (not diverged), rng_state=rng.state
        )
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in state.optimizers.items()}
        return state, epoch_metrics(per_step, divisor, lrs, per_step_reported)

    def _pair(self, rows: torch.Tensor | None) -> tuple[Callable, Callable]:
        """Model and guide, with the ``"data"`` plate's subsample set to ``rows`` when given
        (Pyro's ``plate(..., subsample=rows)``, by conditioning its subsample site): a
        per-datapoint parameter then serves the example it belongs to.

        The rows of a batch are passed in increasing order: a plate whose subsample is as
        large as the plate does not index its parameters, so it holds the rows in order.
        """
        if rows is None:
            return self.model, self.guide
        plate_rows = {DATA: rows}
        return (poutine.condition(fn, data=plate_rows) for fn in (self.model, self.guide))

    def _finite(self, losses: dict[str, float]) -> bool:
        """Every group stepped on a finite loss (a group after a non-finite one never ran)."""
        return len(losses) == len(self.groups) and all(map(math.isfinite, losses.values()))

    @staticmethod
    def _noise_generator(seed: int, epoch: int) -> torch.Generator:
        """The epoch's data-noise generator (binarization, input noise), from ``(seed, epoch)``."""
        _, noise_seq = np.random.SeedSequence([int(seed), int(epoch)]).spawn(2)
        return torch.Generator().manual_seed(int(noise_seq.generate_state(1)[0]))

    # -- evaluation and parameters -------------------------------------------------------

    def evaluate_bound(
        self, state: TrainState, x: Any, *, objective: Callable | None = None
    ) -> dict[str, float]:
        """The bound per example over all of ``x`` (no gradients, no partial batch dropped).

        ``x`` is an array, or several arrays as in training (a tuple or dict); it is checked
        (``DataError``: not numeric, no examples, NaN/Inf) and follows the parameters' dtype.

        Args:
            objective: Defaults to ``eval_objective`` or ``ELBO()``; with ``IWAE(k)`` the
                reported ``"elbo"`` is the k-sample importance weighted bound.

        Returns:
            ``{"elbo": mean over x of the bound}`` in nats.
        """
        objective = objective or self.eval_objective or self._default_eval(ELBO)
        arrays, names = self._eval_batches(x)
        dtype = self._dtype(state)
        tensors = [_as_tensor(a, dtype) for a in arrays]
        n = len(tensors[0])
        plate = self._datapoint_eval(n)  # per-datapoint parameters: the plate's size
        # Its own generator, derived from (seed, step): evaluating never shifts training noise.
        eval_seed = int(np.random.SeedSequence([state.seed, state.step, 1]).generate_state(1)[0])
        total = 0.0
        with torch.no_grad(), GlobalRNG.from_seed(eval_seed), self.evaluation_weights(state):
            for start in range(0, n, self.batch_size):
                batch = tuple(t[start : start + self.batch_size] for t in tensors)
                size = len(batch[0])
                num_data = size if plate is None else plate  # a per-batch value either way
                kwargs = {} if self.num_data is None else {"num_data": num_data}
                pos, by_name = self._arguments(batch, names)
                rows = None if plate is None else torch.arange(start, start + size)
                model, guide = self._pair(rows)
                try:
                    value = objective(model, guide, *pos, **by_name, **kwargs).item()
                except ValueError:  # e.g. torch's support validation: say which value
                    self._check_support(check_observed_support, model, batch, names, kwargs)
                    raise
                if not math.isfinite(value):
                    self._check_support(check_observed_support, model, batch, names, kwargs)
                total += value * size / num_data if self.num_data is not None else value
        return {"elbo": -total / n}

    @contextlib.contextmanager
    def evaluation_weights(self, state: TrainState) -> Iterator[None]:
        """The moving averages of the groups with an ``ema`` decay in place of their raw
        weights inside the context (the model reads its live parameter tensors), the raw
        weights restored after, whatever happens inside."""
        if not state.averages:
            yield
            return
        with torch.no_grad():
            raw = {n: state.params[n].detach().clone() for n in state.averages}
            for n, average in state.averages.items():
                state.params[n].copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, value in raw.items():
                    state.params[n].copy_(value)

    def params(self, state: TrainState) -> dict[str, torch.Tensor]:
        """Constrained parameter values by site name (detached copies): a group with an
        ``ema`` decay gives its moving averages (``state.params`` holds the raw weights)."""
        with torch.no_grad():
            return {
                name: transform_to(state.constraints[name])(state.averages.get(name, p))
                .detach()
                .clone()
                for name, p in state.params.items()
            }

    @staticmethod
    def _dtype(state: TrainState) -> torch.dtype:
        return next(iter(state.params.values())).dtype

    # -- checkpoints ---------------------------------------------------------------------

    def state_arrays(self, state: TrainState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The state as numpy arrays plus JSON-able metadata (see :meth:`load_state_arrays`).

        Arrays: ``params/<name>`` (unconstrained), ``optimizer/<name>/<key>`` (the optimiser
        state of each parameter, e.g. Adam's ``exp_avg``, ``exp_avg_sq``, ``step``) and
        ``rng_state`` (uint8). Meta: step, epoch, seed, the parameter names and shapes (the
        model's fingerprint), and per group its optimiser's hyper-parameters and the
        schedule's state.
        """
        arrays = {f"params/{n}": p.detach().cpu().numpy().copy() for n, p in state.params.items()}
        index = {id(p): n for n, p in state.params.items()}
        groups = {}
        for name, optimizer in state.optimizers.items():
            optim = optimizer.state_dict()
            own = [index[id(p)] for p in optimizer.param_groups[0]["params"]]
            for i, per_param in optim["state"].items():
                for key, value in per_param.items():
                    arrays[f"optimizer/{own[i]}/{key}"] = (
                        torch.as_tensor(value).cpu().numpy().copy()
                    )
            scheduler = state.schedulers[name].state_dict()
            groups[name] = {
                "optimizer": [
                    {k: v for k, v in g.items() if k != "params"} for g in optim["param_groups"]
                ],
                "scheduler": {k: v for k, v in scheduler.items() if k != "lr_lambdas"},
            }
        arrays["rng_state"] = state.rng_state.numpy().copy()
        for n, average in state.averages.items():
            arrays[f"averages/{n}"] = average.detach().cpu().numpy().copy()
        meta = {
            "backend": "pyro",
            "step": state.step,
            "epoch": state.epoch,
            "seed": state.seed,
            "params": {n: list(p.shape) for n, p in state.params.items()},
            "groups": groups,
        }
        return arrays, meta

    def load_state_arrays(
        self, state: TrainState, arrays: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> TrainState:
        """Restore a state saved by :meth:`state_arrays` into ``state`` (from :meth:`init`).

        Parameters are copied in place, so the model's own tensors hold the restored values.
        Checkpoints written before parameter groups (one optimiser) load into the default
        group.

        Raises:
            CheckpointError: The checkpoint belongs to another model, configuration or
                backend, or is incomplete.
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
        groups = meta.get("groups")
        if groups is None and "optimizer" in meta:  # one optimiser, before parameter groups
            groups = {
                DEFAULT_GROUP: {"optimizer": meta["optimizer"], "scheduler": meta["scheduler"]}
            }
        if set(groups or {}) != set(state.optimizers):
            raise CheckpointError(
                f"checkpoint has the parameter groups {sorted(groups or {})}, this trainer "
                f"{sorted(state.optimizers)}"
            )
        index = {id(p): n for n, p in state.params.items()}
        try:
            # np.array copies: arrays read from a checkpoint may be read-only.
            values = {n: torch.from_numpy(np.array(arrays[f"params/{n}"])) for n in state.params}
            rng_state = torch.from_numpy(np.array(arrays["rng_state"], dtype=np.uint8))
            step, epoch, seed = int(meta["step"]), int(meta["epoch"]), int(meta["seed"])
            optim_states = {}
            for name, optimizer in state.optimizers.items():
                own = [index[id(p)] for p in optimizer.param_groups[0]["params"]]
                per_param = {}
                for i, pname in enumerate(own):
                    prefix = f"optimizer/{pname}/"
                    entries = {
                        k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)
                    }
                    if entries:
                        per_param[i] = {
                            k: torch.from_numpy(np.array(v)) for k, v in entries.items()
                        }
                param_groups = [
                    dict(g, params=list(range(len(own)))) for g in groups[name]["optimizer"]
                ]
                optim_states[name] = {"state": per_param, "param_groups": param_groups}
        except (KeyError, ValueError) as missing:
            raise CheckpointError(f"checkpoint is incomplete: no entry {missing}") from None
        for name, p in state.params.items():
            if values[name].shape != p.shape:
                raise CheckpointError(
                    f"checkpoint array params/{name} has shape {tuple(values[name].shape)}, "
                    f"this model needs {tuple(p.shape)}"
                )
        try:
            for name, optimizer in state.optimizers.items():
                optimizer.load_state_dict(optim_states[name])
                scheduler = dict(groups[name]["scheduler"], lr_lambdas=[None])
                state.schedulers[name].load_state_dict(scheduler)
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint's optimizer state does not fit: {error}") from None
        saved = sorted(k[len("averages/") :] for k in arrays if k.startswith("averages/"))
        if saved != sorted(state.averages):
            raise CheckpointError(
                f"checkpoint has moving averages (ema) of {saved or 'no parameters'}, this "
                f"trainer of {sorted(state.averages) or 'none'}: train with the same groups' ema"
            )
        with torch.no_grad():
            for name, p in state.params.items():
                p.copy_(values[name])
            for name, average in state.averages.items():
                average.copy_(torch.from_numpy(np.array(arrays[f"averages/{name}"])))
        return state._replace(step=step, epoch=epoch, seed=seed, rng_state=rng_state)


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (examples, ...) as a ``dtype`` tensor, never written to: a writable numpy array
    of that dtype is shared (an epoch of MNIST is 190 MB), others are copied."""
    if torch.is_tensor(x):
        return x.to(dtype)
    x = np.asarray(x)
    want = torch.empty((), dtype=dtype).numpy().dtype
    if x.dtype != want or not x.flags.writeable:
        x = np.array(x, dtype=want)
    return torch.from_numpy(x)
