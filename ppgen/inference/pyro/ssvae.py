"""Semi-supervised objective and training for partially labelled data (Kingma et al., 2014).

Works on any model/guide pair ``model(x, y=None, num_data=None)`` /
``guide(x, y=None, num_data=None)`` whose guide, when ``y`` is ``None``, draws the label from
``q(y | x)`` at a discrete sample site (``"y"`` by default) inside the ``"data"`` plate, and
whose model takes ``y`` as an observed site of the same name (the M2 of
:class:`ppgen.models.pyro.SSVAE`, or a user's own).

The label of an unlabelled example is summed out exactly by Pyro's parallel enumeration
(``TraceEnum_ELBO`` on the ``config_enumerate``-d guide): the guide's label site becomes a
``(C, 1)`` tensor of every class and one vectorised pass computes all of them (the NumPyro
twin writes the same sum by hand).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from ppgen.data.checks import check_input_scale
from ppgen.data.labels import MISSING, check_labels, semi_supervised_indices
from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_non_negative, check_num_particles
from ppgen.inference.pyro.handlers import scale_latents
from ppgen.inference.pyro.loglik import to_tensor
from ppgen.inference.pyro.objectives import ELBO
from ppgen.inference.pyro.train import Trainer, TrainState, _GlobalRNG

__all__ = ["SemiSupervisedELBO", "SemiSupervisedTrainer", "label_distribution"]


class _Found(Exception):
    def __init__(self, fn: dist.Distribution) -> None:
        super().__init__()
        self.fn = fn


class _StopAtMessenger(Messenger):
    """Stop the program at sample site ``site`` and hand over its distribution."""

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    def _pyro_sample(self, msg: Message) -> None:
        if msg["name"] == self.site:
            raise _Found(msg["fn"])


def label_distribution(
    guide: Callable, x: torch.Tensor, site: str = "y", **kwargs: Any
) -> dist.Distribution:
    """``q(y | x)``: the distribution the guide draws site ``site`` from, given no labels.

    The guide runs only up to that site (nothing after it is computed).

    Raises:
        ConfigError: The guide has no such sample site.
    """
    try:
        _StopAtMessenger(site)(guide)(x, None, **kwargs)
    except _Found as found:
        return found.fn
    raise ConfigError(
        f"the guide has no sample site {site!r} when called with y=None; a semi-supervised "
        f"guide draws the label from q(y | x) at that site"
    )


@dataclass(frozen=True)
class SemiSupervisedELBO:
    """Negative M2 objective ``J^alpha`` (Kingma et al., 2014, eqs. 7-9).

    ``J = sum_l L(x_l, y_l) + sum_u U(x_u) + alpha * sum_l log q(y_l | x_l)`` to maximise, with
    ``L`` the ELBO of a labelled pair and ``U(x) = sum_y q(y | x) L(x, y) + H(q(y | x))`` the
    unlabelled bound with ``y`` summed out exactly. Each sum is a minibatch estimate for its
    whole set: multiplied by ``num_labelled / batch_l`` and ``num_unlabelled / batch_u``.

    Args:
        alpha: Weight of the classification term per labelled example. ``None``: the
            paper's ``0.1 N`` spread over the labelled examples,
            ``0.1 * (num_labelled + num_unlabelled) / num_labelled``. ``0`` turns it off.
        num_particles: Draws of ``z`` per (example, class).
        site: Name of the label site.
        beta: Weight of the other latents' terms (``z``'s KL) in ``L`` and ``U``, as the
            ELBO's ``beta``. ``beta > 1`` makes ``z`` costlier, so the model carries more
            of what ``x`` says about its class in ``y`` (the label's terms keep weight 1).

    Call ``loss(model, guide, x_l, y_l, x_u, num_labelled=None, num_unlabelled=None)``;
    sizes default to the batch sizes.
    """

    alpha: float | None = None
    num_particles: int = 1
    site: str = "y"
    beta: float = 1.0

    def __post_init__(self) -> None:
        check_num_particles(self.num_particles)
        if self.alpha is not None:
            check_non_negative("alpha", self.alpha, " (or None for 0.1 N)")
        check_non_negative("beta", self.beta)

    def alpha_for(self, num_labelled: int, num_unlabelled: int) -> float:
        """The classification weight per labelled example for these set sizes."""
        if self.alpha is not None:
            return float(self.alpha)
        return 0.1 * (num_labelled + num_unlabelled) / num_labelled

    def parts(
        self,
        model: Callable,
        guide: Callable,
        x_l: torch.Tensor,
        y_l: torch.Tensor,
        x_u: torch.Tensor,
        num_labelled: int | None = None,
        num_unlabelled: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The three terms of ``J`` (each a whole-set estimate, to maximise)."""
        n_l, n_u = num_labelled or len(x_l), num_unlabelled or len(x_u)
        labelled = -ELBO(self.num_particles, beta=self.beta)(model, guide, x_l, y_l, num_data=n_l)
        unlabelled = self.unlabelled_bound(model, guide, x_u) * (n_u / len(x_u))
        log_q = label_distribution(guide, x_l, self.site).log_prob(y_l)  # (batch_l,)
        classification = self.alpha_for(n_l, n_u) * (n_l / len(x_l)) * log_q.sum()
        return {"labelled": labelled, "unlabelled": unlabelled, "classification": classification}

    def unlabelled_bound(self, model: Callable, guide: Callable, x: torch.Tensor) -> torch.Tensor:
        """``sum_i U(x_i)`` over the minibatch (not scaled to the set).

        ``TraceEnum_ELBO`` with the guide's discrete sites enumerated in parallel (at dim -2,
        left of the ``"data"`` plate): ``sum_c q(c | x) (L(x, c) - log q(c | x))``.
        """
        elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=self.num_particles)
        if self.beta != 1.0:  # weight the other latents' terms (z's KL), never the label's
            model, guide = scale_latents(model, guide, self.beta, exclude=(self.site,))
        return -elbo.differentiable_loss(model, config_enumerate(guide), x)

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``-J``, minus the sum of :meth:`parts` (which takes the same arguments)."""
        return -sum(self.parts(model, guide, *args, **kwargs).values())


def _split(data: Any) -> tuple[Any, Any]:
    if isinstance(data, tuple):
        if len(data) != 2:
            raise DataError("semi-supervised data is a pair (x, y) with y = -1 where unlabelled")
        return data
    return data, None


class SemiSupervisedTrainer(Trainer):
    """Fit M2 (or any semi-supervised model/guide) on partially labelled data.

    Data is a pair ``(x, y)`` with ``y = -1`` (``ppgen.data.MISSING``) where an example has no
    label. Every step takes one unlabelled batch of ``batch_size`` and one labelled batch of
    ``labelled_batch_size``; an epoch is one pass over the unlabelled examples, cycling the
    labelled ones (:func:`ppgen.data.semi_supervised_indices`).

    Args:
        model: ``model(x, y=None, num_data=None)``.
        guide: ``guide(x, y=None, num_data=None)`` drawing ``y ~ q(y | x)`` at ``site``.
        objective: Default ``SemiSupervisedELBO()``.
        num_classes: Number of classes (labels are checked against it).
        labelled_batch_size: Default ``batch_size``.
        input_scale: Optional (N, D) standard deviations, one per training value: every step
            trains on ``x + input_scale * eps`` with fresh ``eps ~ N(0, 1)`` (M1+M2 draws
            M1's latent ``z1 ~ q(z1 | x)`` this way); evaluation uses ``x`` as it is.
        Other arguments as :class:`~ppgen.inference.pyro.Trainer`.

    :meth:`evaluate` on ``(x, y)`` with full labels reports the classification error of
    ``argmax q(y | x)``; the driver early-stops and keeps the best checkpoint on it.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        objective: SemiSupervisedELBO | None = None,
        *,
        num_classes: int = 10,
        lr: float = 3e-4,
        lr_schedule: str = "constant",
        total_steps: int | None = None,
        batch_size: int = 100,
        labelled_batch_size: int | None = None,
        dynamic_binarization: bool = False,
        input_scale: np.ndarray | None = None,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(
            model,
            guide,
            objective or SemiSupervisedELBO(),
            lr=lr,
            lr_schedule=lr_schedule,
            total_steps=total_steps,
            batch_size=batch_size,
            dynamic_binarization=dynamic_binarization,
            clip_norm=clip_norm,
        )
        self.num_classes = int(num_classes)
        self.labelled_batch_size = int(
            batch_size if labelled_batch_size is None else labelled_batch_size
        )
        if self.labelled_batch_size < 1:
            raise ConfigError(f"labelled_batch_size must be positive, got {labelled_batch_size}")
        self.input_scale = check_input_scale(input_scale, dynamic_binarization=dynamic_binarization)

    def init(self, seed: int, data: Any) -> TrainState:
        """Initial state from one trace of guide (``y = None``, so the classifier's
        parameters are found) and model on the first rows of ``data``'s ``x``."""
        x, _ = _split(data)
        return super().init(seed, x[:256])

    def _labels(self, x: torch.Tensor, y: Any) -> np.ndarray:
        y = check_labels(y, n=len(x), num_classes=self.num_classes)
        n_l = int(np.sum(y != MISSING))
        if n_l < self.num_classes:
            raise ConfigError(
                f"{n_l} labelled examples, fewer than the {self.num_classes} classes; label "
                "at least one example per class"
            )
        return y

    def _ss_update(self, state: TrainState, batch: tuple, n_l: int, n_u: int) -> float:
        """One gradient step on ``(x_l, y_l, x_u)``; skipped (loss returned) if non-finite."""
        return self._gradient_step(state, batch, {"num_labelled": n_l, "num_unlabelled": n_u})

    def train_epoch(
        self, state: TrainState, data: Any, epoch: int
    ) -> tuple[TrainState, dict[str, float]]:
        """One pass over the unlabelled examples of ``data = (x, y)``.

        The schedule (:func:`~ppgen.data.semi_supervised_indices`) and the binarization
        noise derive from ``(seed, epoch)``. A non-finite loss ends the epoch early, before
        the optimizer steps on it.

        Returns:
            The new state and ``{"loss": mean of -J per example, "finite", "lr"}``.
        """
        x, y = _split(data)
        if y is None:
            raise DataError("semi-supervised training needs (x, y) with y = -1 where unlabelled")
        xt = self._epoch_data(state, x)
        y_np = self._labels(xt, y)
        lab, unl = semi_supervised_indices(
            y_np,
            batch_size=self.batch_size,
            labelled_batch_size=self.labelled_batch_size,
            seed=state.seed,
            epoch=int(epoch),
        )
        lab, unl = torch.from_numpy(lab).long(), torch.from_numpy(unl).long()
        yt = torch.from_numpy(np.maximum(y_np, 0))  # int64; -1 rows are never indexed
        n_l = int(np.sum(y_np != MISSING))
        n_u = len(y_np) - n_l
        _, noise = self._epoch_randomness(state, epoch)
        scale = None
        if self.input_scale is not None:
            check_input_scale(self.input_scale, tuple(xt.shape))
            scale = torch.as_tensor(self.input_scale, dtype=xt.dtype)

        def step_loss(i: int, step: int) -> float:
            x_l, y_l, x_u = xt[lab[i]], yt[lab[i]], xt[unl[i]]
            if self.dynamic_binarization:
                x_l = torch.bernoulli(x_l, generator=noise)
                x_u = torch.bernoulli(x_u, generator=noise)
            elif scale is not None:  # x ~ N(x, scale^2) afresh every step
                x_l = x_l + scale[lab[i]] * torch.randn(x_l.shape, generator=noise, dtype=xt.dtype)
                x_u = x_u + scale[unl[i]] * torch.randn(x_u.shape, generator=noise, dtype=xt.dtype)
            return self._ss_update(state, (x_l, y_l, x_u), n_l, n_u)

        return self._run_epoch(state, epoch, len(unl), step_loss, 1.0 / len(y_np))

    def step(self, state: TrainState, batch: tuple) -> tuple[TrainState, dict[str, float]]:
        """One update on ``batch = (x_l, y_l, x_u)`` as given (batch sizes as set sizes).

        A non-finite loss is reported, not stepped on.
        """
        x_l, y_l, x_u = batch
        dtype = self._dtype(state)
        x_l, x_u = to_tensor(x_l, dtype), to_tensor(x_u, dtype)
        y_l = check_labels(y_l, n=len(x_l), num_classes=self.num_classes)
        if (y_l == MISSING).any():
            raise DataError("the labelled batch y_l has missing (-1) labels")
        y_l = torch.from_numpy(y_l)
        with _GlobalRNG(state.rng_state) as rng:
            loss = self._ss_update(state, (x_l, y_l, x_u), len(x_l), len(x_u))
        done = int(math.isfinite(loss))
        state = state._replace(step=state.step + done, rng_state=rng.state)
        return state, {"loss": loss / (len(x_l) + len(x_u))}

    # -- evaluation -------------------------------------------------------------------

    def predict(self, state: TrainState, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``argmax_y q(y | x)`` for every row of ``x``, in batches (no gradients).

        Grey-level ``x`` is classified as it is (as the NumPyro twin does), also for a
        Bernoulli model trained with dynamic binarization: only finiteness is checked.
        """
        xt = to_tensor(x, self._dtype(state))
        if not torch.isfinite(xt).all():
            raise DataError("x contains NaN or Inf; drop or impute those examples first")
        size = max(1, min(self.batch_size * 10, len(xt)))
        out = []
        with torch.no_grad(), pyro.validation_enabled(False):
            for start in range(0, len(xt), size):
                q = label_distribution(self.guide, xt[start : start + size], self.objective.site)
                log_q = q.log_prob(q.enumerate_support(expand=False))  # (C, batch)
                out.append(torch.argmax(log_q, dim=0).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def evaluate(self, state: TrainState, data: Any, *, objective: Any = None) -> dict[str, float]:
        """Classification error of ``argmax q(y | x)`` on fully labelled ``data = (x, y)``.

        Returns:
            ``{"error": fraction misclassified, "loss": the same}``.
        """
        x, y = _split(data)
        if y is None:
            raise DataError("evaluation needs labelled data (x, y)")
        y = check_labels(y, n=len(x), num_classes=self.num_classes)
        if (y == MISSING).any():
            raise DataError("evaluation labels must all be present (no -1)")
        error = float(np.mean(self.predict(state, x) != y))
        return {"error": error, "loss": error}
