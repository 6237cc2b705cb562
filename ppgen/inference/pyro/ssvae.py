"""Semi-supervised objective and evaluation for partially labelled data (Kingma et al., 2014).

Works on any model/guide pair ``model(x, y=None, num_data=None)`` /
``guide(x, y=None, num_data=None)`` whose guide, when ``y`` is ``None``, draws the label from
``q(y | x)`` at a discrete sample site (``"y"`` by default) inside the ``"data"`` plate, and
whose model takes ``y`` as an observed site of the same name (the M2 of
:class:`ppgen.models.pyro.SSVAE`, or a user's own).

The label of an unlabelled example is summed out exactly by Pyro's parallel enumeration:
the guide's label site is marked ``infer={"enumerate": "parallel"}`` and becomes a tensor
of every class left of the plates, one vectorised pass computes all of them, and
:func:`~ppgen.inference.pyro.particles.particle_terms` weighs each class's terms by
``q(c | x)`` as ``TraceEnum_ELBO`` does (the NumPyro twin does the same with
``numpyro.contrib.funsor``), whatever plates lie inside ``"data"`` and whatever ``scale`` or
``mask`` handlers act on its sites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from ppgen.data.labels import check_labelled, check_labels
from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_non_negative, check_num_particles
from ppgen.inference.pyro.handlers import scale_latents
from ppgen.inference.pyro.loglik import to_tensor
from ppgen.inference.pyro.objectives import ELBO
from ppgen.inference.pyro.particles import particle_terms, structure
from ppgen.inference.pyro.train import Trainer, TrainState

__all__ = ["ClassifierEvaluator", "SemiSupervisedELBO", "label_distribution"]


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
    # (model, guide) -> Structure: Pyro finds plate nesting by running the pair, once per
    # pair, as pyro.infer.ELBO guesses max_plate_nesting once
    _structures: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
        beta: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The three terms of ``J`` (each a whole-set estimate, to maximise); ``beta``, when
        given (e.g. a KL-annealing value), overrides the attribute."""
        beta = self.beta if beta is None else float(beta)
        n_l, n_u = num_labelled or len(x_l), num_unlabelled or len(x_u)
        labelled = -ELBO(self.num_particles)(model, guide, x_l, y_l, num_data=n_l, beta=beta)
        unlabelled = self.unlabelled_bound(model, guide, x_u, beta=beta) * (n_u / len(x_u))
        log_q = label_distribution(guide, x_l, self.site).log_prob(y_l)  # (batch_l,)
        classification = self.alpha_for(n_l, n_u) * (n_l / len(x_l)) * log_q.sum()
        return {"labelled": labelled, "unlabelled": unlabelled, "classification": classification}

    def unlabelled_bound(
        self, model: Callable, guide: Callable, x: torch.Tensor, beta: float | None = None
    ) -> torch.Tensor:
        """``sum_i U(x_i)`` over the minibatch (not scaled to the set).

        The guide's label site is enumerated in parallel (left of every plate) and
        :func:`~ppgen.inference.pyro.particles.particle_terms` returns
        ``sum_c q(c | x) (L(x, c) - log q(c | x))``, the value of Pyro's ``TraceEnum_ELBO``
        for any plate layout, with ``scale``/``mask`` handlers on any site respected.

        Raises:
            ConfigError: The sites that depend on the label have different scales inside
                the label's sum (see ``particle_terms``).
        """
        beta = self.beta if beta is None else float(beta)
        key = (model, guide)
        if key not in self._structures:
            if len(self._structures) > 8:
                self._structures.clear()
            self._structures[key] = None  # filled below, from the enumerated pair
        site = self.site
        enumerated = poutine.infer_config(
            guide, lambda msg: {"enumerate": "parallel"} if msg["name"] == site else {}
        )
        if beta != 1.0:  # weight the other latents' terms (z's KL), never the label's
            model, enumerated = scale_latents(model, enumerated, beta, exclude=(site,))
        info = self._structures[key]
        if info is None:
            info = self._structures[key] = structure(model, enumerated, (x,), {})
        out = particle_terms(
            model,
            enumerated,
            (x,),
            {},
            num_particles=self.num_particles,
            info=info,
            per_datapoint=False,
        )
        if out.elbo_terms is None:  # the label site was not enumerated: not a discrete site
            raise ConfigError(
                f"the guide's label site {site!r} cannot be enumerated; a semi-supervised "
                "guide draws the label from a discrete q(y | x) (Categorical, OneHotCategorical)"
            )
        return sum(out.elbo_terms.values()) / self.num_particles

    def __call__(self, *args: Any, beta: float | None = None, **kwargs: Any) -> torch.Tensor:
        """``-J`` for ``(model, guide, x_l, y_l, x_u, num_labelled=None,
        num_unlabelled=None)``: minus the sum of :meth:`parts`, which takes the same
        arguments; a ``beta`` keyword (a trainer's ``beta_schedule``) overrides the
        attribute."""
        return -sum(self.parts(*args, beta=beta, **kwargs).values())


class ClassifierEvaluator:
    """A trainer's evaluation for semi-supervised models: the classification error of
    ``argmax_y q(y | x)`` on fully labelled ``(x, y)``, read from the guide's label site.

    ``Trainer(..., evaluator=ClassifierEvaluator())`` reports ``{"error", "loss"}`` (the
    same number) from ``evaluate``, so the driver keeps the best checkpoint and stops early
    on the validation error.

    Args:
        site: The guide's label site.
    """

    def __init__(self, site: str = "y") -> None:
        self.site = site

    def predict(self, trainer: Trainer, state: TrainState, x: Any) -> np.ndarray:
        """``argmax_y q(y | x)`` for every row of ``x``, in batches (no gradients).

        Grey-level ``x`` is classified as it is (as the NumPyro twin does), also for a
        Bernoulli model trained with dynamic binarization: only finiteness is checked.
        """
        return self._log_q(trainer, state, x).argmax(axis=0)

    def _log_q(self, trainer: Trainer, state: TrainState, x: Any) -> np.ndarray:
        """``log q(c | x)`` for every class, ``(C, N)``."""
        xt = to_tensor(x, next(iter(state.params.values())).dtype)
        if not torch.isfinite(xt).all():
            raise DataError("x contains NaN or Inf; drop or impute those examples first")
        size = max(1, min(trainer.batch_size * 10, len(xt)))
        out = []
        with torch.no_grad(), pyro.validation_enabled(False):
            for start in range(0, len(xt), size):
                q = label_distribution(trainer.guide, xt[start : start + size], self.site)
                out.append(q.log_prob(q.enumerate_support(expand=False)).numpy())
        return np.concatenate(out, axis=1)

    def __call__(self, trainer: Trainer, state: TrainState, data: Any) -> dict[str, float]:
        """Classification error on ``data = (x, y)``: ``{"error": fraction, "loss": the same}``.

        Raises:
            DataError: Not fully labelled data, or labels outside the guide's classes.
        """
        x, y = check_labelled(data)
        log_q = self._log_q(trainer, state, x)
        check_labels(y, num_classes=log_q.shape[0])
        error = float(np.mean(log_q.argmax(axis=0) != y))
        return {"error": error, "loss": error}
