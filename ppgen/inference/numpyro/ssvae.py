"""Semi-supervised objective and training for partially labelled data (Kingma et al., 2014).

Works on any model/guide pair ``model(x, y=None, num_data=None)`` /
``guide(x, y=None, num_data=None)`` whose guide, when ``y`` is ``None``, draws the label from
``q(y | x)`` at a discrete sample site (``"y"`` by default) inside the ``"data"`` plate, and
whose model takes ``y`` as an observed site of the same name (the M2 of
:class:`ppgen.models.numpyro.SSVAE`, or a user's own).

The label of an unlabelled example is summed out exactly by enumeration: the guide's label
site is marked ``infer={"enumerate": "parallel"}``, ``numpyro.contrib.funsor`` gives it
every class left of the plates, one vectorised pass computes all of them, and
:func:`~ppgen.inference.numpyro.particles.particle_terms` weighs each class's terms by
``q(c | x)`` as NumPyro's ``TraceEnum_ELBO`` does (the Pyro twin does the same with Pyro's
enumeration), whatever plates lie inside ``"data"`` and whatever ``scale`` or ``mask``
handlers act on its sites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.primitives import Messenger

from ppgen.data.checks import check_training_array
from ppgen.data.labels import check_labelled, check_labels
from ppgen.errors import ConfigError
from ppgen.inference.checks import check_non_negative, check_num_particles
from ppgen.inference.numpyro.handlers import scale_latents
from ppgen.inference.numpyro.interop import to_device
from ppgen.inference.numpyro.objectives import ELBO
from ppgen.inference.numpyro.particles import particle_terms
from ppgen.inference.numpyro.train import Trainer, TrainState

__all__ = ["ClassifierEvaluator", "SemiSupervisedELBO", "label_distribution"]


class _Found(Exception):
    def __init__(self, fn: dist.Distribution):
        self.fn = fn


class _stop_at(Messenger):  # lower-case, like every numpyro handler
    """Stop the program at sample site ``site`` and hand over its distribution."""

    def __init__(self, fn: Callable, site: str) -> None:
        self.site = site
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == self.site:
            raise _Found(msg["fn"])


def label_distribution(guide: Callable, x: jax.Array, site: str = "y", **kwargs: Any):
    """``q(y | x)``: the distribution the guide draws site ``site`` from, given no labels.

    The guide runs only up to that site (nothing after it is computed).

    Raises:
        ConfigError: The guide has no such sample site.
    """
    try:
        handlers.seed(_stop_at(guide, site), jax.random.PRNGKey(0))(x, None, **kwargs)
    except _Found as found:
        return found.fn
    raise ConfigError(
        f"the guide has no sample site {site!r} when called with y=None; a semi-supervised "
        f"guide draws the label from q(y | x) at that site"
    )


def _log_q_support(q: dist.Distribution) -> jax.Array:
    """``log q(y = c | x)`` for every class ``c``, shape ``(C, batch)``."""
    support = q.enumerate_support(expand=False)  # (C, 1)
    return q.log_prob(support)


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

    Call ``loss(rng_key, model, guide, x_l, y_l, x_u, num_labelled=None,
    num_unlabelled=None)``; sizes default to the batch sizes.
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
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        x_l: jax.Array,
        y_l: jax.Array,
        x_u: jax.Array,
        num_labelled: int | None = None,
        num_unlabelled: int | None = None,
        beta: float | jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """The three terms of ``J`` (each a whole-set estimate, to maximise); ``beta``, when
        given (e.g. a traced KL-annealing value), overrides the attribute."""
        beta = self.beta if beta is None else beta
        n_l, n_u = num_labelled or x_l.shape[0], num_unlabelled or x_u.shape[0]
        key_l, key_u = jax.random.split(rng_key)
        labelled = -ELBO(self.num_particles)(key_l, model, guide, x_l, y_l, num_data=n_l, beta=beta)
        unlabelled = self.unlabelled_bound(key_u, model, guide, x_u, beta=beta) * (
            n_u / x_u.shape[0]
        )
        log_q = label_distribution(guide, x_l, self.site).log_prob(y_l)  # (batch_l,)
        classification = self.alpha_for(n_l, n_u) * (n_l / x_l.shape[0]) * jnp.sum(log_q)
        return {"labelled": labelled, "unlabelled": unlabelled, "classification": classification}

    def unlabelled_bound(
        self,
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        x: jax.Array,
        beta: float | jax.Array | None = None,
    ) -> jax.Array:
        """``sum_i U(x_i)`` over the minibatch (not scaled to the set).

        The guide's label site is enumerated in parallel (left of every plate) and
        :func:`~ppgen.inference.numpyro.particles.particle_terms` returns
        ``sum_c q(c | x) (L(x, c) - log q(c | x))``, the value of NumPyro's
        ``TraceEnum_ELBO`` for any plate layout, with ``scale``/``mask`` handlers on any
        site respected.

        Raises:
            ConfigError: The guide's label site is not discrete.
        """
        beta = self.beta if beta is None else beta
        site = self.site
        enumerated = handlers.infer_config(
            guide, config_fn=lambda msg: {"enumerate": "parallel"} if msg["name"] == site else {}
        )
        if not (isinstance(beta, (int, float)) and beta == 1):
            # weight the other latents' terms (z's KL), never the label's
            model, enumerated = scale_latents(model, enumerated, beta, exclude=(site,))
        out = particle_terms(
            rng_key,
            model,
            enumerated,
            (x,),
            {},
            num_particles=self.num_particles,
            per_datapoint=False,
        )
        if out.elbo_terms is None:
            raise ConfigError(
                f"the guide's label site {site!r} cannot be enumerated; a semi-supervised "
                "guide draws the label from a discrete q(y | x) (Categorical, OneHotCategorical)"
            )
        return sum(out.elbo_terms.values()) / self.num_particles

    def __call__(
        self, rng_key: jax.Array, *args: Any, beta: float | jax.Array | None = None, **kwargs: Any
    ) -> jax.Array:
        """``-J`` for ``(rng_key, model, guide, x_l, y_l, x_u, num_labelled=None,
        num_unlabelled=None)``: minus the sum of :meth:`parts`, which takes the same
        arguments; a ``beta`` keyword (a trainer's ``beta_schedule``) overrides the
        attribute."""
        return -sum(self.parts(rng_key, *args, beta=beta, **kwargs).values())


class ClassifierEvaluator:
    """A trainer's evaluation for semi-supervised models: the classification error of
    ``argmax_y q(y | x)`` on fully labelled ``(x, y)``, read from the guide's label site.

    ``Trainer(..., evaluator=ClassifierEvaluator())`` reports ``{"error", "loss"}`` (the
    same number) from ``evaluate``, so the driver keeps the best checkpoint and stops early
    on the validation error. The prediction is compiled once per trainer.

    Args:
        site: The guide's label site.
    """

    def __init__(self, site: str = "y") -> None:
        self.site = site
        self._compiled: dict[int, Callable] = {}

    def _log_q_fn(self, trainer: Trainer) -> Callable:
        if id(trainer) not in self._compiled:

            def log_q(state: TrainState, x: jax.Array) -> jax.Array:
                guide = handlers.substitute(trainer.guide, data=trainer.params(state))
                return _log_q_support(label_distribution(guide, x, self.site))

            self._compiled[id(trainer)] = jax.jit(log_q)
        return self._compiled[id(trainer)]

    def _log_q(self, trainer: Trainer, state: TrainState, x: Any) -> np.ndarray:
        """``log q(c | x)`` for every class, ``(C, N)``, in compiled batches."""
        x = check_training_array(x, name="x")
        size = min(trainer.batch_size * 10, len(x))
        fn = self._log_q_fn(trainer)
        out = [np.asarray(fn(state, to_device(x[i : i + size]))) for i in range(0, len(x), size)]
        return np.concatenate(out, axis=1)

    def predict(self, trainer: Trainer, state: TrainState, x: Any) -> np.ndarray:
        """``argmax_y q(y | x)`` for every row of ``x``."""
        return self._log_q(trainer, state, x).argmax(axis=0)

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
