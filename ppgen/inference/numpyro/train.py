"""Stochastic optimisation of any NumPyro program: ``init``, ``step``, compiled epochs.

The mirror of ``ppgen.inference.pyro.train``: one trainer for every family, what varies is
an argument (the objective, its parameter groups, the batch schedule, the per-batch
transform, the evaluator, the devices).

- The **parameters** are the ``numpyro.param`` sites (``eqx_module`` networks included) the
  objective announces when it runs model and guide, found by running it once at
  :meth:`Trainer.init` (as ``numpyro.infer.SVI.init`` traces guide and model, here around the
  objective, so an objective's own networks, e.g. a critic, are found too). They are
  optimised unconstrained (``biject_to`` of each site's constraint) with ``optax``.
- **Parameter groups** (:class:`~ppgen.inference.optim.Group`): each player of the objective
  updates its own parameters on its own loss with its own ``optax`` transformation; the
  learning rates of every step are computed on the host from the groups' schedules and fed
  to the compiled epoch, so a schedule never recompiles.
- A whole **epoch is one jitted** ``lax.scan`` over the steps of the batch schedule, the
  dataset on the device; the per-batch transform (``ppgen.inference.numpyro.noise``) runs
  inside it. ``epoch_loop="steps"`` runs the scan's body jitted alone, once per batch, for
  convolutional networks (XLA on CPU runs convolutions many times slower inside a scan).
- **Data parallelism** over ``devices`` (a JAX mesh, the batch axis sharded): see
  :mod:`ppgen.inference.numpyro.parallel`.

Randomness is explicit: epoch ``e`` draws its data noise and every step's particles from
``fold_in(PRNGKey(seed), e)`` and its rows from the schedule's ``(seed, e)``, so an epoch
re-run from a checkpoint is bit-for-bit the epoch that was lost.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.autoguide import AutoGuide
from numpyro.primitives import Messenger
from numpyro.util import not_jax_tracer

from ppgen.data.schedules import argument_names
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.checks import DATA, datapoint_param_sizes
from ppgen.inference.numpyro.interop import to_device
from ppgen.inference.numpyro.objectives import ELBO
from ppgen.inference.numpyro.parallel import DataParallel
from ppgen.inference.numpyro.particles import particle_terms
from ppgen.inference.numpyro.support import check_observed_support
from ppgen.inference.optim import (
    DEFAULT_GROUP,
    Group,
    assign_params,
    epoch_metrics,
    group_losses,
    metric_name,
    reported_values,
)
from ppgen.inference.trainer import TrainerBase

__all__ = ["TrainState", "Trainer"]

_EVAL_STREAM = 0x7FFFFFFF  # fold_in tag separating evaluation noise from training epochs
Evaluator = Callable[..., dict]


class TrainState(NamedTuple):
    """Everything training needs to continue exactly: all leaves are arrays.

    Attributes:
        params: Unconstrained parameter values by param site name (an ``eqx_module``'s
            site holds its network's array leaves).
        opt_state: The ``optax`` state of every parameter group, by group name.
        rng_key: The PRNG key :meth:`Trainer.step` splits.
        seed: The run's seed (uint32); epochs derive their randomness from it.
        step: Training steps taken so far (int32).
        epoch: Epochs completed so far (int32).
        mutable: Values of the objective's ``numpyro.mutable`` sites (e.g. a score-function
            estimator's moving averages), threaded through every loss evaluation as
            ``numpyro.infer.SVI`` threads ``mutable_state``; empty for most objectives.
        averages: The exponential moving averages of the (unconstrained) parameters of the
            groups with an ``ema`` decay, by site name; empty without one.
    """

    params: dict[str, Any]
    opt_state: dict[str, Any]
    rng_key: jax.Array
    seed: jax.Array
    step: jax.Array
    epoch: jax.Array
    mutable: dict[str, Any] = {}
    averages: dict[str, Any] = {}


class _ParamSites(Messenger):
    """Record each param site's constraint and first concrete value, and each mutable
    site's initial value (no other effect).

    A value computed inside a traced run (e.g. ``numpyro.param("mu", jnp.zeros(()))`` under
    ``jax.eval_shape``) is a tracer: the site is recorded as ``None`` until a concrete run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: dict[str, tuple[Any, Any]] = {}
        self.plate_sizes: set[int] = set()  # of the "data" plate, at per-datapoint params
        self.mutable: dict[str, Any] = {}

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "mutable" and self.mutable.get(msg["name"]) is None:
            value = jax.tree_util.tree_map(lambda v: v, msg["value"])  # before any update
            concrete = all(not_jax_tracer(v) for v in jax.tree_util.tree_leaves(value))
            self.mutable[msg["name"]] = value if concrete else None
        if msg["type"] != "param":
            return
        self.plate_sizes |= datapoint_param_sizes([msg])
        if self.sites.get(msg["name"], (None,))[0] is not None:
            return
        concrete = all(not_jax_tracer(leaf) for leaf in jax.tree_util.tree_leaves(msg["value"]))
        constraint = msg["kwargs"].get("constraint", constraints.real)
        self.sites[msg["name"]] = (msg["value"] if concrete else None, constraint)


class _MutableSites(Messenger):
    """Keep each mutable site's value object, which the program may update in place."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, Any] = {}

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "mutable":
            self.values[msg["name"]] = msg["value"]


def _direction(group: Group) -> optax.GradientTransformation:
    """The group's update direction (the trainer scales it by the step's learning rate)."""
    parts = [] if group.clip_norm is None else [optax.clip_by_global_norm(group.clip_norm)]
    if group.optimizer == "adam":
        parts.append(optax.scale_by_adam(*group.betas))
    if group.weight_decay:  # AdamW's decoupled decay after Adam; SGD's L2 gradient
        parts.append(optax.add_decayed_weights(group.weight_decay))
    return optax.chain(*parts) if parts else optax.identity()


class Trainer(TrainerBase):
    """Minibatch stochastic optimisation of an objective on any NumPyro model/guide pair.

    Takes the options of :class:`~ppgen.inference.trainer.TrainerBase` (the Pyro trainer's
    too). On NumPyro: the objective is ``loss(rng_key, model, guide, *args, **kwargs)`` (or
    a dict of losses) with every param site substituted; every group is an ``optax``
    transformation of its unconstrained parameters, its learning rates computed on the
    host and fed to the compiled epoch (a schedule, like ``beta_schedule``, never
    recompiles); the ``transform`` runs on the device inside the epoch's ``lax.scan``;
    ``devices > 1`` splits every batch over a JAX device mesh
    (:mod:`ppgen.inference.numpyro.parallel`).
    """

    _parallel = DataParallel

    def _setup(self) -> None:
        self._directions = {g.name: _direction(g) for g in self.groups}
        self._owned: dict[str, tuple[str, ...]] = {}
        self._constraints: dict[str, Any] = {}
        self._cache: tuple[tuple, tuple[jax.Array, ...]] | None = None  # (host, device) data
        self._step = jax.jit(self._step_impl, static_argnames=("static", "names"))
        self._epoch = jax.jit(self._epoch_impl, static_argnames=("static", "names", "datapoint"))
        self._epoch_step = jax.jit(
            self._epoch_body, static_argnames=("static", "names", "datapoint")
        )
        self._eval = jax.jit(self._eval_impl, static_argnames=("objective", "names", "plate"))
        self._eval_one = jax.jit(self._eval_batch, static_argnames=("objective", "names", "plate"))

    # -- state ------------------------------------------------------------------------

    def init(self, seed: int, data: Any) -> TrainState:
        """Initial state: the parameters the objective announces when run once on the first
        rows of ``data`` (the schedule's example step; under a transform, transformed as in
        training, so e.g. a Bernoulli model's data check passes on grey input), unconstrained,
        and each group's optimiser state.

        Raises:
            ConfigError: A bad seed, no parameters, or parameters the groups do not cover.
        """
        seed, example, kwargs = self._example(seed, data)
        init_key, noise_key, run_key, loss_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        args = self._device_args(example)
        args = self._transformed(args, noise_key, tuple(jnp.arange(len(a)) for a in args))
        names = argument_names(data)
        pos, by_name = self._arguments(args, names)
        sites = _ParamSites()

        def run() -> None:
            with handlers.seed(rng_seed=init_key), sites:
                out = self.objective(loss_key, self.model, self.guide, *pos, **by_name, **kwargs)
            group_losses(out, self.groups)  # one loss per group, or a clear error

        self._check_support(check_observed_support, self.model, args, names, kwargs)
        if isinstance(self.guide, AutoGuide) and self.guide.prototype_trace is None:
            # An autoguide builds itself on its first call; eagerly, not under the trace
            # below (which would leave tracers in it), as numpyro's SVI.init does.
            guide_kwargs = {k: v for k, v in kwargs.items() if k != "beta"}
            with handlers.block():
                handlers.seed(self.guide, init_key)(*pos, **by_name, **guide_kwargs)
        # Tracing the objective once (no compilation) finds every site, and the values of
        # those given as arrays (networks, model attributes); the example is a constant of
        # the trace, so the models' checks of concrete data still run. Only sites whose
        # initial value is computed in the program need one (slower) eager run.
        try:
            jax.eval_shape(run)
        except (ConfigError, DataError):
            raise
        except Exception as error:
            if self._runs_alone(init_key, pos, {**by_name, **kwargs}):
                raise self._leading_dims_error(error) from None
            raise
        if any(value is None for value, _ in sites.sites.values()) or any(
            value is None for value in sites.mutable.values()
        ):
            run()
        if not sites.sites:
            raise ConfigError("model and guide declare no parameters: there is nothing to train")

        def probe(a: tuple, k: dict[str, Any]) -> None:  # shapes only; sizes stay ints
            jax.eval_shape(lambda: self._particles_probe(init_key, a, k))

        self._check_leading_dims(probe, args, names, kwargs)
        self._set_datapoint_params(sites.plate_sizes)
        self._constraints = {name: c for name, (_, c) in sites.sites.items()}
        params = {
            name: jax.tree_util.tree_map(
                lambda v: jnp.asarray(v, jnp.result_type(v)), biject_to(c).inv(value)
            )
            for name, (value, c) in sites.sites.items()
        }
        self._owned = assign_params(params, self.groups)
        opt_state = {
            g.name: self._directions[g.name].init({n: params[n] for n in self._owned[g.name]})
            for g in self.groups
        }
        averages = {  # started at the initial weights (copies: the state owns its leaves)
            n: jax.tree_util.tree_map(jnp.array, params[n])
            for g in self.groups
            if g.ema is not None
            for n in self._owned[g.name]
        }
        state = TrainState(
            params,
            opt_state,
            run_key,
            jnp.asarray(seed, jnp.uint32),
            jnp.asarray(0, jnp.int32),
            jnp.asarray(0, jnp.int32),
            jax.tree_util.tree_map(jnp.asarray, sites.mutable),
            averages,
        )
        return state if self.parallel is None else self.parallel.replicate(state)

    def _runs_alone(self, key: jax.Array, args: tuple, kwargs: dict[str, Any]) -> bool:
        """Whether guide and model run and score their sample sites as written, outside any
        particle plate (shapes only): then a failure inside the objective's particle plate
        is the model's broadcasting. Scoring counts: NumPyro computes an observed site's
        ``log_prob`` only when a trace is scored, and that is where e.g. a flow without an
        inverse fails."""
        kwargs = {k: v for k, v in kwargs.items() if k != "beta"}

        def run() -> None:
            with handlers.block(), handlers.seed(rng_seed=key):
                for fn in (self.guide, self.model):
                    for site in handlers.trace(fn).get_trace(*args, **kwargs).values():
                        if site["type"] == "sample":
                            site["fn"].log_prob(site["value"])

        try:
            jax.eval_shape(run)
        except Exception:  # noqa: BLE001 - only asking whether it runs
            return False
        return True

    def _particles_probe(self, key: jax.Array, args: tuple, kwargs: dict[str, Any]) -> None:
        """Two particles of the pair (run under ``eval_shape``: shapes only)."""
        with handlers.block(), handlers.seed(rng_seed=key):
            particle_terms(key, self.model, self.guide, args, kwargs, num_particles=2)

    def _pair(self, rows: jax.Array | None) -> tuple[Any, Any]:
        """Model and guide, with the ``"data"`` plate's subsample set to ``rows`` when given
        (NumPyro's ``plate(..., subsample=...)``, by substituting the plate's indices): a
        per-datapoint parameter then serves the example it belongs to. The rows of a
        batch are passed in increasing order, as the Pyro twin needs."""
        if rows is None:
            return self.model, self.guide
        return tuple(handlers.substitute(fn, data={DATA: rows}) for fn in (self.model, self.guide))

    def _constrain(self, params: dict[str, Any]) -> dict[str, Any]:
        return {n: biject_to(self._constraints[n])(v) for n, v in params.items()}

    def params(self, state: TrainState) -> dict[str, Any]:
        """Constrained parameter values by site name, for ``model.bind``: a group with an
        ``ema`` decay gives its moving averages (``state.params`` holds the raw weights)."""
        return self._constrain({**state.params, **state.averages})

    def _device_args(self, args: Sequence[Any]) -> tuple[jax.Array, ...]:
        labels = {
            j
            for j, (a, _) in enumerate(self.schedule.gather(tuple(args)))
            if a in self.schedule.labels
        }
        return tuple(
            jnp.asarray(a, jnp.int32) if j in labels else jnp.asarray(a, jnp.result_type(float))
            for j, a in enumerate(args)
        )

    def _transformed(
        self, args: tuple, key: jax.Array, rows: tuple, transform: Any = None
    ) -> tuple:
        """The data inputs among ``args`` through the per-batch transform (one key each)."""
        transform = self.transform if transform is None else transform
        if transform is None:
            return args
        keys = jax.random.split(key, len(self.schedule.inputs))
        out = list(args)
        for k, j in zip(keys, self.schedule.inputs, strict=True):
            out[j] = transform(k, args[j], rows[j])
        return tuple(out)

    # -- training ---------------------------------------------------------------------

    def _losses(
        self, params, mutable, key, args, kwargs, names=None, rows=None, player=None
    ) -> tuple[dict[str, jax.Array], dict, dict[str, jax.Array]]:
        """Each group's loss at ``params`` (unconstrained): the objective with every param
        site (model, guide and the objective's own) and every mutable site substituted; the
        mutable sites' values after the run (their dtypes kept, no gradient); and the
        objective's reported entries (no gradient).
        ``names``: the data's keyword names, when it was a dict; ``rows``: the batch's row
        indices (see :meth:`_pair`); ``player``: the group being updated, passed to an
        objective that takes ``player=``, which then needs to compute that loss only."""
        args, by_name = self._arguments(args, names)
        model, guide = self._pair(rows)
        data = {**self._constrain(params), **mutable}
        sites = _MutableSites()
        asked = {"player": player} if player is not None and self.takes_player else {}
        with sites, handlers.substitute(data=data):
            out = self.objective(key, model, guide, *args, **by_name, **kwargs, **asked)
        updated = {
            name: jax.tree_util.tree_map(
                lambda new, old: jax.lax.stop_gradient(jnp.asarray(new).astype(old.dtype)),
                sites.values.get(name, old_value),
                old_value,
            )
            for name, old_value in mutable.items()
        }
        reported = {
            name: jax.lax.stop_gradient(value)
            for name, value in reported_values(out, self.reported).items()
        }
        return group_losses(out, self.groups, asked.get("player")), updated, reported

    def _update(
        self, state: TrainState, key, args, kwargs, lrs, data_names=None, rows=None
    ) -> tuple[TrainState, dict]:
        """One step: every group's updates in order, each on its own loss and parameters.
        Returns the new state and ``{"losses": each group's mean loss, "reported": each
        reported entry's mean over the step's updates that returned it}``."""
        if self.parallel is not None:
            args = tuple(self.parallel.shard(a) for a in args)
        params, opt_state, losses = dict(state.params), dict(state.opt_state), {}
        mutable, averages = state.mutable, dict(state.averages)
        reported: dict[str, list] = {}
        for g_index, group in enumerate(self.groups):
            names = self._owned[group.name]
            total = jnp.zeros(())
            for u in range(group.updates):
                k = jax.random.fold_in(jax.random.fold_in(key, g_index), u)

                def loss_of(own, k=k, group=group, mutable=mutable):
                    losses, updated, reports = self._losses(
                        {**params, **own}, mutable, k, args, kwargs, data_names, rows, group.name
                    )
                    return losses[group.name], (updated, reports)

                own = {n: params[n] for n in names}
                (value, (mutable, reports)), grads = jax.value_and_grad(loss_of, has_aux=True)(own)
                for name, v in reports.items():
                    reported.setdefault(name, []).append(v)
                direction, opt_state[group.name] = self._directions[group.name].update(
                    grads, opt_state[group.name], own
                )
                lr = lrs[group.name][u]
                params.update(
                    jax.tree_util.tree_map(lambda p, d, lr=lr: p - lr * d, own, direction)
                )
                total = total + value
            losses[group.name] = total / group.updates
            if group.ema is not None:  # avg <- d avg + (1 - d) w, once a step
                d = group.ema
                averages.update(
                    {
                        n: jax.tree_util.tree_map(
                            lambda a, w, d=d: (d * a + (1.0 - d) * w).astype(a.dtype),
                            averages[n],
                            params[n],
                        )
                        for n in names
                    }
                )
        state = state._replace(
            params=params,
            opt_state=opt_state,
            step=state.step + 1,
            mutable=mutable,
            averages=averages,
        )
        means = {name: sum(vs) / len(vs) for name, vs in reported.items()}
        return state, {"losses": losses, "reported": means}

    def _static(self, kwargs: dict[str, Any]) -> tuple:
        return tuple(sorted(kwargs.items()))

    def _step_impl(self, state, args, lrs, beta, rows, static, names):
        kwargs = dict(static) if beta is None else {**dict(static), "beta": beta}
        key, step_key = jax.random.split(state.rng_key)
        return self._update(state._replace(rng_key=key), step_key, args, kwargs, lrs, names, rows)

    def _lrs(self, first_step: int, steps: int) -> dict[str, jax.Array]:
        """Every group's learning rate for ``steps`` steps from ``first_step``: (steps, updates)."""
        return {
            g.name: jnp.asarray(
                [
                    [g.lr_at((first_step + s) * g.updates + u) for u in range(g.updates)]
                    for s in range(steps)
                ],
                jnp.result_type(float),
            )
            for g in self.groups
        }

    def _check_state(self, state: Any) -> None:
        """Refuse, in one line, a state this trainer cannot step: before :meth:`init`, or a
        state whose parameters are not the ones :meth:`init` found (another trainer's)."""
        if not self._owned:
            raise ConfigError(
                "this Trainer has not been initialised: call state = trainer.init(seed, data) "
                "on it before step or train_epoch"
            )
        params = getattr(state, "params", None)
        wanted = {n for names in self._owned.values() for n in names}
        if not isinstance(params, Mapping) or not wanted <= set(params):
            missing = sorted(wanted - set(params)) if isinstance(params, Mapping) else []
            raise ConfigError(
                "the state is not this Trainer's: "
                + (f"it lacks the parameters {missing[:5]}" if missing else "it has no params")
                + "; pass the state returned by this trainer's init (or a checkpoint of it)"
            )

    def _betas(self, first_step: int, steps: int) -> jax.Array | None:
        if self.beta_schedule is None:
            return None
        return jnp.asarray([self.beta_schedule(first_step + i) for i in range(steps)], jnp.float32)

    def step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        """One update on ``batch`` as given (no transform): an array ``x`` for plain
        minibatches, ``(x_l, y_l, x_u)`` for the labelled schedule; particles from the
        state's key.

        Returns:
            The new state and ``{"loss": per-example loss}`` (``loss_<group>`` per group,
            and the objective's reported entries per example under their names).

        Raises:
            ConfigError: Before :meth:`init`, or a state from another trainer.
        """
        self._check_state(state)
        args, kwargs, divisor = self.schedule.batch(batch, self.num_data)
        first = int(state.step)
        before = state
        lrs = {g: v[0] for g, v in self._lrs(first, 1).items()}
        betas = self._betas(first, 1)
        state, out = self._step(
            state,
            self._device_args(args),
            lrs,
            None if betas is None else betas[0],
            jnp.arange(len(args[0])) if self._datapoint_rows(len(args[0]), "the batch") else None,
            static=self._static(kwargs),
            names=argument_names(batch),
        )
        losses = out["losses"]
        if not all(np.isfinite(float(v)) for v in losses.values()):  # say why if the data
            model = handlers.substitute(self.model, data=self.params(before))
            self._check_support(check_observed_support, model, args, argument_names(batch), kwargs)
        metrics = {metric_name(g): float(v) / divisor for g, v in losses.items()}
        return state, {**metrics, **{n: float(v) / divisor for n, v in out["reported"].items()}}

    def _epoch_keys(self, state, epoch):
        """The epoch's data-noise and particle keys, from ``(seed, epoch)``."""
        key = jax.random.fold_in(jax.random.PRNGKey(state.seed), epoch)
        return jax.random.split(key)

    def _epoch_body(self, state, arrays, inputs, keys, transform, static, names, datapoint):
        """Step ``s`` of the epoch on its rows (``keys``: the epoch's, from
        :meth:`_epoch_keys`): the same update in a scan or a host loop."""
        s, rows, beta, lr = inputs
        noise_key, step_key = keys
        gather = self.schedule.gather(arrays)
        args = tuple(arrays[a][rows[i]] for a, i in gather)
        arg_rows = tuple(rows[i] for _, i in gather)
        args = self._transformed(args, jax.random.fold_in(noise_key, s), arg_rows, transform)
        kwargs = dict(static) if beta is None else {**dict(static), "beta": beta}
        plate_rows = rows[0] if datapoint else None
        step = jax.random.fold_in(step_key, s)
        return self._update(state, step, args, kwargs, lr, names, plate_rows)

    def _epoch_impl(
        self, state, arrays, indices, transform, epoch, betas, lrs, static, names, datapoint
    ):
        keys = self._epoch_keys(state, epoch)

        def body(state, inputs):
            return self._epoch_body(
                state, arrays, inputs, keys, transform, static, names, datapoint
            )

        steps = jnp.arange(indices[0].shape[0])
        state, out = jax.lax.scan(body, state, (steps, indices, betas, lrs))
        return state._replace(epoch=jnp.asarray(epoch + 1, jnp.int32)), out

    def _epoch_steps(
        self, state, arrays, indices, transform, epoch, betas, lrs, static, names, datapoint
    ):
        """``epoch_loop="steps"``: the scan's body jitted alone, called once per batch."""
        indices = tuple(np.asarray(i) for i in indices)  # sliced on the host, not the device
        betas = None if betas is None else np.asarray(betas)
        lrs = {g: np.asarray(v) for g, v in lrs.items()}
        keys = self._epoch_keys(state, epoch)  # once per epoch, as in the scan
        per_step = []
        for s in range(indices[0].shape[0]):
            inputs = (
                jnp.asarray(s),  # the dtype of the scan's jnp.arange
                tuple(i[s] for i in indices),
                None if betas is None else betas[s],
                {g: v[s] for g, v in lrs.items()},
            )
            state, out = self._epoch_step(
                state,
                arrays,
                inputs,
                keys,
                transform,
                static=static,
                names=names,
                datapoint=datapoint,
            )
            per_step.append(out)
        stacked = jax.tree_util.tree_map(lambda *steps: jnp.stack(steps), *per_step)
        return state._replace(epoch=jnp.asarray(epoch + 1, jnp.int32)), stacked

    def train_epoch(self, state: TrainState, data: Any, epoch: int) -> tuple[TrainState, dict]:
        """One pass of the schedule over ``data``: a single compiled ``lax.scan``, or with
        ``epoch_loop="steps"`` a host loop of the scan's jitted body (same keys, same rows).

        The rows (the last partial batch dropped), the per-batch noise and the particles all
        derive from ``(seed, epoch)``. A NaN/Inf loss is reported, never raised.

        Returns:
            The new state and ``{"loss": mean per-example loss, "finite": 1.0 or 0.0,
            "lr": learning rate at the epoch's end}`` (``loss_<group>``, ``lr_<group>`` for
            several groups; the objective's reported entries per example under their names).

        Raises:
            ConfigError: Before :meth:`init`, or a state from another trainer.
        """
        self._check_state(state)
        host, arrays = self._on_device(data)
        indices = self.schedule.indices(
            host, self.batch_size, seed=int(state.seed), epoch=int(epoch)
        )
        datapoint = self._datapoint_rows(len(host[0]), "the training data")
        if datapoint:  # per-datapoint parameters: each batch's rows in order (see _pair)
            indices = tuple(np.sort(idx, axis=1) for idx in indices)
        num_steps = len(indices[0])
        first = int(state.step)
        before = state
        run_epoch = self._epoch if self.epoch_loop == "scan" else self._epoch_steps
        state, out = run_epoch(
            state,
            arrays,
            tuple(jnp.asarray(i) for i in indices),
            self.transform,
            jnp.asarray(epoch, jnp.int32),
            self._betas(first, num_steps),
            self._lrs(first, num_steps),
            static=self._static(self.schedule.kwargs(host, self.num_data)),
            names=argument_names(data),
            datapoint=datapoint,
        )
        losses = {g: np.asarray(v) for g, v in out["losses"].items()}
        finite = np.all([np.isfinite(v) for v in losses.values()], axis=0)
        if not finite.all() and self.transform is None:  # say why when it is the data
            s = int(np.argmin(finite))
            args = tuple(host[a][indices[i][s]] for a, i in self.schedule.gather(host))
            model = handlers.substitute(self.model, data=self.params(before))
            kwargs = self.schedule.kwargs(host, self.num_data)
            self._check_support(check_observed_support, model, args, argument_names(data), kwargs)
        divisor = self.schedule.divisor(host, self.batch_size, self.num_data)
        end = int(state.step)
        lrs = {g.name: g.lr_at(end * g.updates) for g in self.groups}
        reported = {n: np.asarray(v) for n, v in out["reported"].items()}
        return state, epoch_metrics(losses, divisor, lrs, reported)

    def _on_device(self, data: Any) -> tuple[tuple[np.ndarray, ...], tuple[jax.Array, ...]]:
        """The schedule's checked arrays of ``data`` and their copies on the device
        (replicated over a mesh); later epochs on the same arrays reuse both."""
        host = self._epoch_arrays(data)
        if self._cache is None or self._cache[0] is not host:
            device = tuple(
                jnp.asarray(a, jnp.int32) if i in self.schedule.labels else to_device(a)
                for i, a in enumerate(host)
            )
            if self.parallel is not None:
                device = self.parallel.replicate(device)
            self._cache = (host, device)
        return self._cache

    # -- evaluation -------------------------------------------------------------------

    def _eval_inputs(self, state):
        """The constrained parameters and the evaluation's key, once per evaluation. The key
        is its own stream, derived from (seed, step): evaluating never shifts training noise."""
        key = jax.random.fold_in(jax.random.PRNGKey(state.seed), _EVAL_STREAM)
        return self.params(state), jax.random.fold_in(key, state.step)

    def _eval_batch(self, params, key, i, batch, objective, names, plate=None):
        """Batch ``i``'s summed bound under ``params``, with ``fold_in(key, i)``."""
        args, by_name = self._arguments(batch, names)
        size = len(batch[0])
        # per-datapoint parameters: each batch's rows and the plate as in training
        rows = None if plate is None else i * size + jnp.arange(size)
        model, guide = self._pair(rows)
        kwargs = {} if plate is None or self.num_data is None else {"num_data": plate}
        with handlers.substitute(data=params):
            value = objective(jax.random.fold_in(key, i), model, guide, *args, **by_name, **kwargs)
        return value * size / plate if kwargs else value

    def _eval_impl(self, state, batches, objective, names, plate=None):
        params, key = self._eval_inputs(state)

        def body(total, inputs):
            i, batch = inputs
            return total + self._eval_batch(params, key, i, batch, objective, names, plate), None

        steps = jnp.arange(len(batches[0]))
        total, _ = jax.lax.scan(body, jnp.zeros(()), (steps, batches))
        return total

    def _eval_steps(self, state, batches, objective, names, plate=None):
        """``epoch_loop="steps"``: the scan's body jitted alone, called once per batch."""
        params, key = self._eval_inputs(state)
        total = jnp.zeros(())
        for i in range(len(batches[0])):
            batch = tuple(b[i] for b in batches)
            value = self._eval_one(
                params, key, jnp.asarray(i), batch, objective=objective, names=names, plate=plate
            )
            total = total + value
        return total

    def evaluate_bound(self, state: TrainState, x: Any, *, objective=None) -> dict:
        """The bound per example over all of ``x``, in compiled batches of ``batch_size``.

        ``x`` is an array, or several arrays as in training (a tuple or dict); it is checked
        (``DataError``: not numeric, no examples, NaN/Inf). No partial batch is dropped (the
        remainder is one more call, compiled for its shape).

        Args:
            objective: Defaults to ``eval_objective`` or ``ELBO()``; with ``IWAE(k)`` the
                reported ``"elbo"`` is the k-sample importance weighted bound.

        Returns:
            ``{"elbo": mean over x of the bound}`` in nats.
        """
        arrays, names = self._eval_batches(x)
        objective = objective or self.eval_objective or self._default_eval(ELBO)
        n = len(arrays[0])
        size = min(self.batch_size, n)
        full = n // size * size
        batches = tuple(to_device(a[:full]).reshape(-1, size, *a.shape[1:]) for a in arrays)
        plate = self._datapoint_eval(n)  # per-datapoint parameters: the plate's size
        evaluate = self._eval if self.epoch_loop == "scan" else self._eval_steps
        total = evaluate(state, batches, objective, names, plate)
        if full < n:  # (never with per-datapoint parameters: _datapoint_eval refuses it)
            rest = tuple(to_device(a[None, full:]) for a in arrays)
            total = total + evaluate(state, rest, objective, names)
        if not np.isfinite(float(total)):  # say why when it is the data
            model = handlers.substitute(self.model, data=self.params(state))
            for start in range(0, n, size):
                batch = tuple(to_device(a[start : start + size]) for a in arrays)
                self._check_support(check_observed_support, model, batch, names, {})
        return {"elbo": -float(total) / n}

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

        Checkpoints written before parameter groups (``svi_state`` keys, one optimiser)
        load into the default group.

        Raises:
            CheckpointError: Keys, shapes or dtypes differ from the template (a checkpoint
                of another model or trainer).
        """
        if meta.get("backend", "numpyro") != "numpyro":
            raise CheckpointError(
                f"checkpoint was written by the {meta['backend']} backend; load it with that "
                "backend's Trainer"
            )
        if any(k.startswith("svi_state.") for k in arrays):
            arrays, meta = (
                _from_svi_state(arrays),
                {k: v for k, v in meta.items() if k != "fingerprint"},
            )
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
        loaded = jax.tree_util.tree_unflatten(treedef, leaves)
        return loaded if self.parallel is None else self.parallel.replicate(loaded)


def _key(path: tuple) -> str:
    """Stable name of a state leaf, e.g. ``params['encoder$params'].layers[0].weight``."""
    return jax.tree_util.keystr(path).lstrip(".")


def _fingerprint(arrays: dict[str, np.ndarray]) -> str:
    spec = sorted((k, v.dtype.str, list(v.shape)) for k, v in arrays.items())
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


_SVI_PARAMS = re.compile(r"^svi_state\.optim_state\[1\]\[0\](.*)$")
_SVI_ADAM = re.compile(r"^svi_state\.optim_state\[1\]\[1\]\[(\d+)\]\[0\]\.(count|mu|nu)(.*)$")


def _from_svi_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys of a checkpoint written by the trainer before parameter groups (a
    ``numpyro.infer.SVI`` state with ``optax.adam``) as this trainer's default group."""
    out = {}
    for key, value in arrays.items():
        if m := _SVI_PARAMS.match(key):
            out[f"params{m.group(1)}"] = value
        elif m := _SVI_ADAM.match(key):
            out[f"opt_state['{DEFAULT_GROUP}'][{m.group(1)}].{m.group(2)}{m.group(3)}"] = value
        elif key == "svi_state.rng_key":
            out["rng_key"] = value
        elif not key.startswith("svi_state."):
            out[key] = value  # seed, step, epoch; the optimiser's own counters are dropped
    return out
