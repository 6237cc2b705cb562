"""Parameter groups and learning-rate schedules, shared by both backends' trainers.

An objective with one player returns one loss; the trainer minimises it over every parameter
with one optimiser (the group ``"loss"``). An objective with several players (a GAN's
generator and critic, Goodfellow et al. 2014) returns a dict of losses, one per player; each
player is a :class:`Group`: the parameter sites it owns (glob patterns over site names), its
own optimiser, learning rate, schedule and number of updates per step. One training step
updates the groups in the order given (alternating), each on its own loss, so a critic's loss
never moves the generator's parameters.

Everything here is plain Python: the Pyro trainer reads the schedules through
``torch.optim.lr_scheduler.LambdaLR``; the NumPyro trainer evaluates them on the host and
feeds the values to its compiled epoch, so a schedule never recompiles.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppgen.errors import ConfigError

__all__ = [
    "DEFAULT_GROUP",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "Group",
    "assign_params",
    "epoch_metrics",
    "group_losses",
    "lr_factor",
    "metric_name",
    "reported_names",
    "reported_values",
    "weight_decay_value",
]

DEFAULT_GROUP = "loss"
LR_SCHEDULES = ("constant", "cosine", "exponential")
OPTIMIZERS = ("adam", "sgd")
EXPONENTIAL_DECAY = 0.1  # lr factor reached at total_steps by the exponential schedule


def lr_factor(schedule: str, total_steps: int | None = None) -> Callable[[int], float]:
    """The learning-rate multiplier after ``s`` updates, as a closed form of ``s``.

    ``"constant"``: 1; ``"cosine"``: ``(1 + cos(pi min(s, T) / T)) / 2``, reaching 0 at
    ``T = total_steps`` (Loshchilov & Hutter 2017, without restarts); ``"exponential"``:
    ``0.1 ** (s / T)``, a tenth of the rate at ``T``.

    Raises:
        ConfigError: An unknown schedule, or no positive integer ``total_steps`` for a
            schedule that needs one.
    """
    if schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    if schedule == "constant":
        return lambda s: 1.0
    if isinstance(total_steps, bool) or not (isinstance(total_steps, int) and total_steps >= 1):
        raise ConfigError(
            f"lr_schedule={schedule!r} needs total_steps >= 1 (epochs * steps per epoch), "
            f"got {total_steps!r}"
        )
    if schedule == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
    return lambda s: EXPONENTIAL_DECAY ** (s / total_steps)


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


def weight_decay_value(name: str, value: Any) -> float:
    """``value`` as a weight decay (a finite number >= 0), as a float.

    Raises:
        ConfigError: Anything else, in one line naming ``name``.
    """
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Group:
    """One player's parameters and how they are optimised.

    Args:
        name: The player: the key of the objective's loss dict this group minimises
            (``"loss"`` for an objective that returns one scalar).
        params: Glob pattern(s) over param site names (``fnmatch``), e.g. ``"critic*"``
            matches Pyro's ``critic$$$layers.0.weight`` and NumPyro's ``critic$params``.
        exclude: Glob pattern(s) of sites this group leaves to others even where ``params``
            matches them: ``Group("generator", params="*", exclude="critic*")`` owns every
            parameter but the critic's, whatever the user's model names its own.
        optimizer: ``"adam"`` (Kingma & Ba 2015; ``torch.optim.Adam`` / ``optax.scale_by_adam``,
            eps 1e-8) or ``"sgd"`` (plain gradient descent).
        lr: Learning rate (peak rate under a schedule).
        betas: Adam's moment decays ``(beta1, beta2)``; GANs often use ``(0.5, 0.9)``.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"exponential"`` (:func:`lr_factor`),
            counted in this group's updates.
        total_steps: Length of the schedule in this group's updates.
        clip_norm: Clip the global norm of this group's gradient to this value.
        weight_decay: Decay of the weights, ``lambda >= 0``: with Adam the decoupled decay
            of AdamW (Loshchilov & Hutter 2019; ``torch.optim.AdamW``, optax's
            ``add_decayed_weights`` after ``scale_by_adam``), with SGD the L2 penalty's
            gradient ``lambda w`` (``torch.optim.SGD(weight_decay=)``); both scaled by the
            step's learning rate. 0 (default): none.
        updates: Optimiser updates of this group per training step (e.g. ``n_critic`` = 5
            critic updates per generator update, Arjovsky et al. 2017), each with fresh
            randomness on the step's batch.
        ema: Decay ``d`` of an exponential moving average of this group's parameters,
            ``avg <- d avg + (1 - d) w`` after each of the group's training steps, started at
            the initial weights (Yazici et al. 2019, "The unusual effectiveness of averaging
            in GAN training"; ``torch.optim.swa_utils.get_ema_multi_avg_fn``). The trainer's
            ``params(state)``, and so evaluation, sampling and the checkpoint a run keeps,
            use the average; training continues from the raw weights. ``None`` (default):
            none. A decay in ``(0, 1)``, e.g. 0.999.

    Raises:
        ConfigError: An unknown optimiser or schedule, or an out-of-range value.
    """

    name: str = DEFAULT_GROUP
    params: str | tuple[str, ...] = "*"
    exclude: str | tuple[str, ...] = ()
    optimizer: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "constant"
    total_steps: int | None = None
    clip_norm: float | None = None
    updates: int = 1
    weight_decay: float = 0.0
    ema: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ConfigError(
                f"a group name must be an identifier like 'critic', got {self.name!r}"
            )
        patterns = (self.params,) if isinstance(self.params, str) else tuple(self.params)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ConfigError(
                f"group {self.name!r}: params must be glob patterns, got {self.params!r}"
            )
        object.__setattr__(self, "params", patterns)
        excluded = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)
        if not all(isinstance(p, str) and p for p in excluded):
            raise ConfigError(
                f"group {self.name!r}: exclude must be glob patterns, got {self.exclude!r}"
            )
        object.__setattr__(self, "exclude", excluded)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"group {self.name!r}: unknown optimizer {self.optimizer!r}; choose one of "
                f"{', '.join(OPTIMIZERS)}"
            )
        object.__setattr__(self, "lr", _positive_number(f"group {self.name!r}: lr", self.lr))
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, int | float) and 0 <= b < 1 for b in betas):
            raise ConfigError(
                f"group {self.name!r}: betas must be two numbers in [0, 1), got {self.betas!r}"
            )
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        lr_factor(self.lr_schedule, self.total_steps)  # validates both
        if self.clip_norm is not None:
            _positive_number(f"group {self.name!r}: clip_norm", self.clip_norm)
        wd = weight_decay_value(f"group {self.name!r}: weight_decay", self.weight_decay)
        object.__setattr__(self, "weight_decay", wd)
        if isinstance(self.updates, bool) or not (
            isinstance(self.updates, int) and self.updates >= 1
        ):
            raise ConfigError(
                f"group {self.name!r}: updates must be an integer >= 1, got {self.updates!r}"
            )
        if self.ema is not None:
            if isinstance(self.ema, bool) or not (
                isinstance(self.ema, numbers.Real) and 0 < self.ema < 1
            ):
                raise ConfigError(
                    f"group {self.name!r}: ema must be a decay in (0, 1), e.g. 0.999, or None, "
                    f"got {self.ema!r}"
                )
            object.__setattr__(self, "ema", float(self.ema))

    def matches(self, site: str) -> bool:
        """Whether the param site ``site`` belongs to this group."""
        return any(fnmatch.fnmatchcase(site, p) for p in self.params) and not any(
            fnmatch.fnmatchcase(site, p) for p in self.exclude
        )

    def lr_at(self, update: int) -> float:
        """The learning rate of this group's update number ``update`` (0-based)."""
        return self.lr * lr_factor(self.lr_schedule, self.total_steps)(update)


def assign_params(sites: Iterable[str], groups: Sequence[Group]) -> dict[str, tuple[str, ...]]:
    """Which param sites each group owns (in the order the sites were found).

    Raises:
        ConfigError: A site that no group or several groups match, or a group that matches
            no site (its patterns are probably misspelt).
    """
    sites = list(sites)
    owned: dict[str, list[str]] = {g.name: [] for g in groups}
    for site in sites:
        owners = [g.name for g in groups if g.matches(site)]
        if len(owners) != 1:
            what = "no group" if not owners else f"the groups {owners}"
            raise ConfigError(
                f"param site {site!r} matches {what}; give each parameter exactly one group "
                "(Group(params=...) takes glob patterns over site names)"
            )
        owned[owners[0]].append(site)
    for name, names in owned.items():
        if not names:
            shown = ", ".join(sites[:6]) + (", ..." if len(sites) > 6 else "")
            raise ConfigError(f"group {name!r} matches no param site; the sites are: {shown}")
    return {name: tuple(names) for name, names in owned.items()}


def group_losses(out: Any, groups: Sequence[Group], player: str | None = None) -> dict[str, Any]:
    """The loss each group minimises, from what an objective returned.

    One scalar serves a single group; several groups need a dict (a mapping) with one loss
    per group name (other entries are ignored). ``player``: the one group being updated,
    when the objective was asked for that player's loss alone (its ``player=`` keyword);
    the dict then needs only that entry.

    Raises:
        ConfigError: A scalar for several groups, or a dict without some group's loss.
    """
    if isinstance(out, Mapping):
        wanted = [g for g in groups if player is None or g.name == player]
        missing = [g.name for g in wanted if g.name not in out]
        if missing == [DEFAULT_GROUP] and len(groups) == 1:
            raise ConfigError(
                f"the objective has the players {sorted(out)}, one loss each: train it with "
                "one parameter group per player, Trainer(..., groups=objective.groups(...))"
            )
        if missing:
            raise ConfigError(
                f"the objective returned losses for {sorted(out)}, none for the group(s) "
                f"{missing}; name each Group after one of the objective's players"
            )
        return {g.name: out[g.name] for g in wanted}
    if len(groups) != 1:
        raise ConfigError(
            f"the objective returned one loss, but {len(groups)} parameter groups need one "
            "loss each: return a dict {player: loss}"
        )
    return {groups[0].name: out}


def metric_name(group: str) -> str:
    """The metric key of a group's loss: ``"loss"`` for the default group, else
    ``"loss_<group>"`` (e.g. ``loss_critic``)."""
    return "loss" if group == DEFAULT_GROUP else f"loss_{group}"


def reported_names(objective: Any, groups: Sequence[Group]) -> tuple[str, ...]:
    """The entries an objective asks the trainer to log beside the losses: its
    ``reported`` attribute (default none), e.g. InfoGAN's ``("mutual_information",)``.

    A reported entry is a scalar of what the objective returns (a dict), in the losses'
    units (a whole-data-set estimate, which the trainer divides into a per-example figure as
    it does the losses); it is averaged over the epoch's steps and written under its own
    name to the epoch's metrics, never added to the loss or optimised.

    Raises:
        ConfigError: ``reported`` not a sequence of names, or a name that is a group's or a
            metric's the trainer writes itself (``loss``, ``finite``, ``lr``,
            ``loss_<group>``, ``lr_<group>``, ``valid_...``).
    """
    names = getattr(objective, "reported", ())
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"an objective's reported must be a tuple of entry names, got {names!r}")
    taken = {"loss", "finite", "lr"} | {g.name for g in groups}
    taken |= {metric_name(g.name) for g in groups} | {f"lr_{g.name}" for g in groups}
    for name in names:
        if name in taken or name.startswith("valid_"):
            raise ConfigError(
                f"the objective reports an entry {name!r}, a name the trainer's own metrics "
                "or parameter groups use; rename the entry"
            )
    return tuple(names)


def reported_values(out: Any, names: Sequence[str]) -> dict[str, Any]:
    """The ``names`` entries (:func:`reported_names`) present in what an objective
    returned; none when it returned a single loss."""
    if not names or not isinstance(out, Mapping):
        return {}
    return {name: out[name] for name in names if name in out}


def epoch_metrics(
    losses: Mapping[str, Sequence[float]],
    divisor: float,
    lrs: Mapping[str, float],
    reported: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, float]:
    """One epoch's metrics from each group's per-step losses (a step's whole-set estimate).

    Returns ``{"loss": mean per-example loss, "finite": 1.0 or 0.0, "lr": rate of the next
    update}`` for one group; with several, ``loss_<group>`` and ``lr_<group>`` per group and
    ``loss`` their sum. A non-finite step makes the loss non-finite and ``finite`` 0.
    ``reported``: the objective's reported entries per step (:func:`reported_names`), each
    written as its per-example mean over the steps.
    """
    metrics, finite = {}, True
    for group, values in losses.items():
        values = np.asarray(values, dtype=np.float64) / divisor
        finite = finite and bool(np.all(np.isfinite(values)))
        bad = values[~np.isfinite(values)]
        metrics[metric_name(group)] = float(bad[0] if len(bad) else np.mean(values))
    if "loss" not in metrics:
        metrics["loss"] = float(sum(metrics.values()))
    metrics["finite"] = float(finite)
    for name, values in (reported or {}).items():
        metrics[name] = float(np.mean(np.asarray(values, dtype=np.float64))) / divisor
    for group, lr in lrs.items():
        metrics["lr" if group == DEFAULT_GROUP else f"lr_{group}"] = float(lr)
    return metrics
