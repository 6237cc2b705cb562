"""What every trainer shares whatever its backend: its options, checked once, and the calls
of the driver that never touch the backend (which evaluation runs, which process writes).

``ppgen.inference.pyro.Trainer`` and ``ppgen.inference.numpyro.Trainer`` subclass
:class:`TrainerBase` and add the backend's work: finding the parameters, the optimisation
step, the epoch, the bound, checkpoints. The options are written once here because they
mean the same on both backends; see docs/ARCHITECTURE.md ("Training").
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ppgen.data.schedules import Minibatches, Schedule, argument_names
from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_count, check_seed
from ppgen.inference.optim import Group, reported_names

__all__ = ["EPOCH_LOOPS", "TrainerBase"]

#: How an epoch may be compiled (``TrainerBase(epoch_loop=...)``).
EPOCH_LOOPS = ("scan", "steps")


def _parts(data: Any) -> tuple[Any, ...]:
    """The objects a trainer's data is made of (its arrays, or the one array)."""
    if isinstance(data, dict):
        return tuple(data.values())
    return data if isinstance(data, tuple) else (data,)


def _fingerprint(arrays: tuple[np.ndarray, ...]) -> tuple[int, ...]:
    """CRC-32 of each array's bytes: changes whenever a value does."""
    return tuple(zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1)) for a in arrays)


Evaluator = Callable[..., dict]


def _has_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable
        return False


class TrainerBase:
    """Minibatch stochastic optimisation of an objective on a model/guide pair: the options.

    Args:
        model: The model, taking the schedule's arguments (a batch ``x`` first).
        guide: The guide, with the same signature.
        objective: A ppgen loss (``ELBO()``, ``IWAE(5)``, ``SemiSupervisedELBO()``, or a
            user's own with the same call), or one returning a dict of losses, one per
            player (then train with ``groups``). The dict's entries that the objective
            names in its ``reported`` attribute (InfoGAN's ``"mutual_information"``,
            Flow-GAN's ``"nll"``) are logged under their names beside the losses, per
            example, as the losses are (:func:`~ppgen.inference.optim.reported_names`).
        lr: Learning rate of the default (single) parameter group.
        lr_schedule: ``"constant"``, ``"cosine"`` (to 0 at ``total_steps``) or
            ``"exponential"`` (to ``0.1 * lr`` at ``total_steps``), stepped every update.
        total_steps: Length of the schedule; required unless it is constant.
        clip_norm: Clip the gradient's global norm to this value.
        weight_decay: Weight decay of the default group (AdamW's decoupled decay with Adam,
            the L2 gradient with SGD; see :class:`~ppgen.inference.optim.Group`); 0: none.
        groups: Parameter groups (:class:`~ppgen.inference.optim.Group`), one per player of
            the objective, updated in this order at every step; replaces ``lr``,
            ``lr_schedule``, ``total_steps``, ``clip_norm`` and ``weight_decay``.
        batch_size: Minibatch size of the schedule and of the bound's evaluation.
        num_data: If given, passed as ``num_data=`` to model and guide, so the loss is a
            per-dataset estimate; metrics divide by ``num_data or batch_size``.
        schedule: Batch schedule (``ppgen.data.schedules``; default ``Minibatches()``,
            ``LabelledBatches(C)`` for partially labelled ``(x, y)``).
        transform: Per-batch transform of the data inputs of every training step (the
            backend's ``noise.DynamicBinarization()``, ``noise.InputNoise(scale)``).
        beta_schedule: ``step -> beta``, passed to the objective as its ``beta=`` keyword
            at every step: KL annealing (Bowman et al. 2016).
        eval_objective: Objective of the default evaluation, the bound (default ``ELBO()``).
        evaluator: ``evaluator(trainer, state, data) -> dict`` reported by ``evaluate``
            instead of the bound (e.g. ``ClassifierEvaluator()``).
        devices: Data-parallel devices (the backend's ``parallel.DataParallel``); ``None``
            or 1 trains on one.
        epoch_loop: How a NumPyro epoch is compiled: ``"scan"`` (default), the whole epoch
            one jitted ``lax.scan``, fastest for dense networks (no per-step dispatch), or
            ``"steps"``, a host loop of one jitted step per batch, for convolutional
            networks, which XLA on CPU runs many times slower inside a scan's loop (Glow on
            MNIST: 1.54 s against 0.10 s per step). Both give the same updates from the same
            keys and rows. On Pyro an epoch is always a loop of steps: both values are
            accepted and mean the same.

    Raises:
        ConfigError: An out-of-range option (an ``epoch_loop`` other than ``"scan"`` or
            ``"steps"``), options of the default group next to
            ``groups``, repeated group names, a ``beta_schedule`` for an objective without a
            ``beta`` keyword, both ``eval_objective`` and ``evaluator``, or a reported
            entry named like a metric of the trainer's own.
    """

    _parallel: type | None = None  # the backend's DataParallel

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        objective: Callable,
        *,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        total_steps: int | None = None,
        clip_norm: float | None = None,
        weight_decay: float = 0.0,
        groups: Sequence[Group] | None = None,
        batch_size: int = 100,
        num_data: int | None = None,
        schedule: Schedule | None = None,
        transform: Callable | None = None,
        beta_schedule: Callable[[int], float] | None = None,
        eval_objective: Callable | None = None,
        evaluator: Evaluator | None = None,
        devices: int | None = None,
        epoch_loop: str = "scan",
    ) -> None:
        default = (lr, lr_schedule, total_steps, clip_norm, weight_decay)
        if groups is None:
            groups = [
                Group(
                    lr=lr,
                    lr_schedule=lr_schedule,
                    total_steps=total_steps,
                    clip_norm=clip_norm,
                    weight_decay=weight_decay,
                )
            ]
        elif default != (1e-3, "constant", None, None, 0.0):
            raise ConfigError(
                "with groups=, give lr, lr_schedule, total_steps, clip_norm and weight_decay "
                "to each Group"
            )
        self.groups = tuple(groups)
        if not self.groups or not all(isinstance(g, Group) for g in self.groups):
            raise ConfigError("groups must be a non-empty sequence of ppgen.inference.optim.Group")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"group names must be distinct, got {names}")
        self.batch_size = check_count("batch_size", batch_size)
        if num_data is not None and not (
            isinstance(num_data, int) and not isinstance(num_data, bool) and num_data >= batch_size
        ):
            raise ConfigError(f"num_data must be an integer >= batch_size, got {num_data!r}")
        self.num_data = num_data
        if beta_schedule is not None and "beta" not in inspect.signature(objective).parameters:
            raise ConfigError("beta_schedule needs an objective with a beta= keyword (ELBO)")
        if evaluator is not None and eval_objective is not None:
            raise ConfigError("give eval_objective (for the bound) or evaluator, not both")
        devices = 1 if devices is None else check_count("devices", devices)
        if epoch_loop not in EPOCH_LOOPS:
            raise ConfigError(
                f"epoch_loop must be one of {', '.join(map(repr, EPOCH_LOOPS))}, got {epoch_loop!r}"
            )
        self.epoch_loop = epoch_loop
        self.model, self.guide, self.objective = model, guide, objective
        # An objective with a ``player=`` keyword (the adversarial ones) computes the loss
        # of the group being updated alone: a generator update skips the critic's gradient
        # penalty, a critic update the generator's graph.
        self.takes_player = len(self.groups) > 1 and _has_keyword(objective, "player")
        # entries of the objective's dict logged beside the losses (InfoGAN's bound, ...)
        self.reported = reported_names(objective, self.groups)
        self.schedule = schedule if schedule is not None else Minibatches()
        if num_data is not None and not self.schedule.takes_num_data:
            raise ConfigError(
                f"{type(self.schedule).__name__} takes the set sizes from the data; leave "
                "num_data out"
            )
        self.transform, self.beta_schedule = transform, beta_schedule
        self.eval_objective, self.evaluator = eval_objective, evaluator
        self.parallel = self._parallel(devices) if devices > 1 else None
        self._setup()

    # Size of the "data" plate when the pair has per-datapoint parameters (a non-amortized
    # guide such as AutoNormal: a param site in that plate with an event_dim), set by init.
    _datapoint_params: int | None = None

    def _setup(self) -> None:
        """The backend's own set-up after the options (compiled functions, caches)."""

    def _set_datapoint_params(self, sizes: set[int]) -> None:
        """Record the ``"data"`` plate's size from init's per-datapoint param sites."""
        if len(sizes) > 1:
            raise ConfigError(
                f"per-datapoint parameters with different sizes {sorted(sizes)} along the "
                "'data' plate; every one needs one entry per training example"
            )
        self._datapoint_params = next(iter(sizes), None)
        if self._datapoint_params is not None and not isinstance(self.schedule, Minibatches):
            raise ConfigError(
                "a guide with one parameter per datapoint (e.g. AutoNormal) trains with "
                "plain minibatches only; use an amortized guide (an encoder network)"
            )

    def _datapoint_rows(self, num_rows: int, what: str) -> bool:
        """Whether steps must pass their rows' indices to the ``"data"`` plate (the pair has
        per-datapoint parameters); ConfigError when ``num_rows`` cannot be those rows."""
        size = self._datapoint_params
        if size is None:
            return False
        if num_rows != size:
            raise ConfigError(
                f"the guide has one parameter per datapoint (e.g. AutoNormal) along a 'data' "
                f"plate of size {size}, but {what} has {num_rows} rows; train and evaluate it "
                f"on the same {size} examples (declare pyro.plate/numpyro.plate('data', "
                "num_data, subsample_size=len(x)) and pass num_data=N), or use an amortized "
                "guide"
            )
        return True

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes checkpoints and metrics (always, on one device)."""
        return self.parallel is None or self.parallel.is_main

    def any_process(self, flag: bool) -> bool:
        """``flag`` from any process of a data-parallel run (so all stop together)."""
        return bool(flag) if self.parallel is None else self.parallel.any(flag)

    def evaluate(self, state: Any, data: Any, **options: Any) -> dict[str, float]:
        """What the evaluator reports on ``data`` (default: the backend's ``evaluate_bound``:
        the bound per example, ``{"elbo": ...}`` in nats), under :meth:`evaluation_weights`."""
        with self.evaluation_weights(state):
            if self.evaluator is not None:
                return self.evaluator(self, state, data, **options)
            return self.evaluate_bound(state, data, **options)

    def evaluation_weights(self, state: Any) -> contextlib.AbstractContextManager:
        """A context in which the model runs with the weights evaluation uses: the moving
        averages of the groups with an ``ema`` decay. NumPyro's trainer substitutes
        :meth:`params` wherever it evaluates, so this does nothing there; Pyro's model reads
        its live parameter tensors, which the context swaps for the averages and back."""
        return contextlib.nullcontext()

    def _epoch_arrays(self, data: Any) -> tuple[np.ndarray, ...]:
        """The schedule's arrays of ``data``, checked (and against the transform) once per
        data: later epochs on the same, unchanged arrays skip the passes over them.

        "Unchanged" is a fingerprint of the contents (CRC-32 of every array, about 0.1 s
        for MNIST's 190 MB), not object identity: arrays edited in place between epochs
        are checked again, and a backend's device copy of them is refreshed.
        """
        arrays = self._cached_arrays(data)
        if arrays is not None:
            return arrays
        arrays = self.schedule.arrays(data, self.batch_size)
        gather = self.schedule.gather(arrays)
        if self.transform is not None:
            for a in sorted({gather[j][0] for j in self.schedule.inputs}):
                self.transform.check(arrays[a])
        try:
            refs = tuple(weakref.ref(p) for p in _parts(data))
        except TypeError:  # not weak-referenceable (e.g. a list): checked every epoch
            self._checked = None
        else:
            self._checked = (refs, arrays, _fingerprint(arrays))
        return arrays

    def _cached_arrays(self, data: Any) -> tuple[np.ndarray, ...] | None:
        """The arrays checked at an earlier epoch, if ``data`` is the same objects with the
        same contents."""
        cached = getattr(self, "_checked", None)
        parts = _parts(data)
        if cached is None or len(parts) != len(cached[0]):
            return None
        if not all(ref() is p for ref, p in zip(cached[0], parts, strict=True)):
            return None
        return cached[1] if _fingerprint(cached[1]) == cached[2] else None

    def _example(self, seed: Any, data: Any) -> tuple[int, tuple, dict[str, Any]]:
        """The checked seed, and the objective's arguments and keywords for one step on the
        first rows of ``data`` (what ``init`` traces), checked against the transform."""
        seed = check_seed(seed)
        example = self.schedule.example(data, self.batch_size)
        _, kwargs, _ = self.schedule.batch(example, self.num_data)
        if self.transform is not None:
            for j in self.schedule.inputs:
                self.transform.check(example[j], np.arange(len(example[j])))
        if self.beta_schedule is not None:
            kwargs["beta"] = float(self.beta_schedule(0))
        return seed, example, kwargs

    @staticmethod
    def _arguments(args: tuple, names: tuple[str, ...] | None) -> tuple[tuple, dict[str, Any]]:
        """A step's arrays as the objective's positional and keyword data arguments: by
        keyword when the data was a dict (``names``), else positionally."""
        if names is None:
            return args, {}
        return (), dict(zip(names, args, strict=True))

    def _eval_batches(self, data: Any) -> tuple[tuple[np.ndarray, ...], tuple[str, ...] | None]:
        """Evaluation data (an array, or a tuple or dict of arrays as in training), checked:
        its arrays and their keyword names."""
        args, _, _ = Minibatches().batch(data, None)
        return args, argument_names(data)

    def _datapoint_eval(self, num_rows: int) -> int | None:
        """For a pair with per-datapoint parameters: the ``num_data`` its evaluation batches
        pass (the plate spanning the rows, as in training), checking that ``num_rows`` can
        be cut into training-sized batches. ``None`` for an amortized pair."""
        if not self._datapoint_rows(num_rows, "the evaluation data"):
            return None
        if self.num_data is not None and num_rows % self.batch_size:
            raise ConfigError(
                f"a guide with one parameter per datapoint evaluates its {num_rows} rows in "
                f"batches of the training batch_size ({self.batch_size}), as its plate was "
                "built; choose a batch_size that divides the number of rows"
            )
        return self.num_data or num_rows

    def _default_eval(self, elbo: type) -> Callable:
        """The bound ``evaluate`` reports without an ``eval_objective``: ``ELBO()``, or the
        training objective where it evaluates itself (NVIL, VIMCO: score-function
        objectives for sampled discrete sites, which ``ELBO()`` refuses)."""
        return self.objective if getattr(self.objective, "evaluates_itself", False) else elbo()

    def _check_support(self, check: Callable, model: Callable, args: tuple, names, kwargs) -> None:
        """Run the backend's ``check_observed_support`` on one step's data where the model
        takes the objective's data arguments (plain minibatches): a ``DataError`` names a
        value outside its likelihood's support; any other failure is left to the real run."""
        if not isinstance(self.schedule, Minibatches):
            return
        pos, by_name = self._arguments(tuple(args), names)
        model_kwargs = {k: v for k, v in kwargs.items() if k != "beta"}
        try:
            check(model, pos, {**by_name, **model_kwargs})
        except DataError:
            raise
        except Exception:  # noqa: BLE001 - e.g. a model with another signature
            return

    def _check_leading_dims(self, probe: Callable, args: tuple, names, kwargs) -> None:
        """Refuse, in one line, a pair that runs on one batch but not with particles stacked
        in a leading dimension (what ELBO/IWAE with several particles and every estimator
        do): ``probe(args, kwargs)`` runs the backend's ``particle_terms`` with two.

        Only for ppgen's particle objectives (an objective with ``num_particles``) on plain
        minibatches; the objectives' own refusals (ConfigError, DataError) are theirs."""
        if not (
            isinstance(self.schedule, Minibatches) and hasattr(self.objective, "num_particles")
        ):
            return
        pos, by_name = self._arguments(tuple(args), names)
        model_kwargs = {k: v for k, v in kwargs.items() if k != "beta"}
        try:
            probe(pos, {**by_name, **model_kwargs})
        except (ConfigError, DataError):
            return
        except Exception as error:  # noqa: BLE001 - reported as the hint, with its first line
            raise self._leading_dims_error(error) from None

    @staticmethod
    def _leading_dims_error(error: Exception) -> ConfigError:
        """The one-line hint for a pair that fails only with particles in a leading dim."""
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return ConfigError(
            "model and guide run on a batch but fail with particles stacked in a leading "
            f"dimension ({first}); write them to broadcast over leading dimensions (e.g. "
            "layers applied to (..., features) rather than x.view(-1, D) or a vmap over "
            "the batch): several particles, IWAE and the log-likelihood estimator need it"
        )

    def evaluate_bound(self, state: Any, x: Any, *, objective: Callable | None = None) -> dict:
        """The bound per example over all of ``x`` (written by each backend)."""
        raise NotImplementedError
