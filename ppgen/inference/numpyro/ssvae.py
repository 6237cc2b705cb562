"""Semi-supervised objective and training for partially labelled data (Kingma et al., 2014).

Works on any model/guide pair ``model(x, y=None, num_data=None)`` /
``guide(x, y=None, num_data=None)`` whose guide, when ``y`` is ``None``, draws the label from
``q(y | x)`` at a discrete sample site (``"y"`` by default) inside the ``"data"`` plate, and
whose model takes ``y`` as an observed site of the same name (the M2 of
:class:`ppgen.models.numpyro.SSVAE`, or a user's own).

The label of an unlabelled example is summed out exactly: NumPyro's ``TraceEnum_ELBO`` does
not enumerate guide sites, so the sum over classes is written here, as one vectorised pass
over the minibatch repeated once per class (the same arithmetic as Pyro's parallel
enumeration, which is what the Pyro twin uses).
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

from ppgen.data.checks import check_input_scale
from ppgen.data.labels import MISSING, check_labels, semi_supervised_indices
from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_non_negative, check_num_particles
from ppgen.inference.numpyro.objectives import ELBO
from ppgen.inference.numpyro.particles import particle_terms, structure
from ppgen.inference.numpyro.train import Trainer, TrainState, _check_data, _device

__all__ = ["SemiSupervisedELBO", "SemiSupervisedTrainer", "label_distribution"]


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
    ) -> dict[str, jax.Array]:
        """The three terms of ``J`` (each a whole-set estimate, to maximise)."""
        n_l, n_u = num_labelled or x_l.shape[0], num_unlabelled or x_u.shape[0]
        key_l, key_u = jax.random.split(rng_key)
        labelled = -ELBO(self.num_particles, beta=self.beta)(
            key_l, model, guide, x_l, y_l, num_data=n_l
        )
        unlabelled = self.unlabelled_bound(key_u, model, guide, x_u) * (n_u / x_u.shape[0])
        log_q = label_distribution(guide, x_l, self.site).log_prob(y_l)  # (batch_l,)
        classification = self.alpha_for(n_l, n_u) * (n_l / x_l.shape[0]) * jnp.sum(log_q)
        return {"labelled": labelled, "unlabelled": unlabelled, "classification": classification}

    def unlabelled_bound(
        self, rng_key: jax.Array, model: Callable, guide: Callable, x: jax.Array
    ) -> jax.Array:
        """``sum_i U(x_i)`` over the minibatch (not scaled to the set)."""
        log_q = _log_q_support(label_distribution(guide, x, self.site))  # (C, batch)
        if structure(rng_key, model, guide, (x, None), {}).max_plate_nesting == 1:
            elbo = self._class_elbos(rng_key, model, guide, x, log_q.shape[0])
        else:  # more plates than "data": tile the batch once per class instead
            elbo = self._class_elbos_tiled(rng_key, model, guide, x, log_q.shape[0])
        q = jnp.exp(log_q)
        return jnp.sum(q * (elbo - log_q))  # sum_c q (L - log q) = E_q[L] + H(q)

    def _class_elbos(self, rng_key, model, guide, x, c) -> jax.Array:
        """``L(x_i, c)`` for every class, shape ``(C, batch)``.

        As in Pyro's parallel enumeration, the label site takes the values ``0..C-1`` along
        a new leading dim, ``(C, 1)``, and everything downstream broadcasts to ``(C,
        batch)``; ``x`` itself is never repeated (ppgen's networks then compute ``x``'s
        share of their first layer once). Particles are ``vmap``-ped.
        """
        labels = jnp.arange(c).reshape(c, 1)

        def one_particle(key: jax.Array) -> jax.Array:
            guide_key, model_key = jax.random.split(key)
            enumerated = handlers.substitute(guide, data={self.site: labels})
            guide_tr = handlers.trace(handlers.seed(enumerated, guide_key)).get_trace(x, None)
            # Every guide draw, also those a caller fixed with `condition` (as particle_terms).
            latents = {
                name: site["value"] for name, site in guide_tr.items() if site["type"] == "sample"
            }
            model_tr = handlers.trace(
                handlers.seed(handlers.substitute(model, data=latents), model_key)
            ).get_trace(x, None)
            total = jnp.zeros((c, x.shape[0]))
            for name, site in model_tr.items():
                if site["type"] != "sample":
                    continue
                term = site["fn"].log_prob(site["value"])
                if not site["is_observed"] and name != self.site:
                    term = self.beta * (term - guide_tr[name]["fn"].log_prob(latents[name]))
                total = total + term  # (C, batch); p(y) is (C, 1)
            for name, site in guide_tr.items():  # guide-only latents: -log q
                if site["type"] == "sample" and name not in model_tr and name != self.site:
                    total = total - self.beta * site["fn"].log_prob(site["value"])
            return total

        keys = jax.random.split(rng_key, self.num_particles)
        return jnp.mean(jax.vmap(one_particle)(keys), axis=0)

    def _class_elbos_tiled(self, rng_key, model, guide, x, c) -> jax.Array:
        """``L(x_i, c)`` by repeating the batch once per class (class-major rows)."""
        b = x.shape[0]
        x_rep = jnp.broadcast_to(x, (c, *x.shape)).reshape(c * b, -1)
        y_rep = jnp.repeat(jnp.arange(c), b)
        out = particle_terms(
            rng_key,
            model,
            guide,
            (x_rep, y_rep),
            {},
            num_particles=self.num_particles,
            beta=self.beta,
            require_rsample=True,
        )
        return jnp.mean(sum(out.terms.values()), axis=0).reshape(c, b)

    def __call__(
        self, rng_key: jax.Array, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> jax.Array:
        """``-J``, minus the sum of :meth:`parts` (which takes the same arguments)."""
        return -sum(self.parts(rng_key, model, guide, *args, **kwargs).values())


def _split(data: Any) -> tuple[np.ndarray, np.ndarray | None]:
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
    labelled ones (:func:`ppgen.data.semi_supervised_indices`), as one jitted ``lax.scan``.

    Args:
        model: ``model(x, y=None, num_data=None)``.
        guide: ``guide(x, y=None, num_data=None)`` drawing ``y ~ q(y | x)`` at ``site``.
        objective: Default ``SemiSupervisedELBO()``.
        num_classes: Number of classes (labels are checked against it).
        labelled_batch_size: Default ``batch_size``.
        input_scale: Optional (N, D) standard deviations, one per training value: every step
            trains on ``x + input_scale * eps`` with fresh ``eps ~ N(0, 1)`` (M1+M2 draws
            M1's latent ``z1 ~ q(z1 | x)`` this way); evaluation uses ``x`` as it is.
        Other arguments as :class:`~ppgen.inference.numpyro.Trainer`.

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
    ):
        objective = objective or SemiSupervisedELBO()
        super().__init__(
            model,
            guide,
            objective,
            lr=lr,
            lr_schedule=lr_schedule,
            total_steps=total_steps,
            batch_size=batch_size,
            dynamic_binarization=dynamic_binarization,
            clip_norm=clip_norm,
        )
        self._svi.loss.can_infer_discrete = True  # the label is summed out by the objective
        self.num_classes = int(num_classes)
        self.labelled_batch_size = int(
            batch_size if labelled_batch_size is None else labelled_batch_size
        )
        if self.labelled_batch_size < 1:
            raise ConfigError(f"labelled_batch_size must be positive, got {labelled_batch_size}")
        self._labels_cache: tuple[Any, np.ndarray, jax.Array] | None = None
        self.input_scale = check_input_scale(input_scale, dynamic_binarization=dynamic_binarization)
        self._scale_dev: jax.Array | None = None
        self._ss_epoch = jax.jit(self._ss_epoch_impl, static_argnames=("n_l", "n_u"))
        self._predict = jax.jit(self._predict_impl)
        self._ss_step = jax.jit(self._svi.update)

    def init(self, seed: int, data: Any) -> TrainState:
        """Initial state from one trace of guide and model on the rows of ``data``'s ``x``."""
        x, _ = _split(data)
        return super().init(seed, np.asarray(x)[:256])

    def _labels(self, x: np.ndarray, y: Any) -> np.ndarray:
        y = check_labels(y, n=len(x), num_classes=self.num_classes)
        n_l = int(np.sum(y != MISSING))
        if n_l < self.num_classes:
            raise ConfigError(
                f"{n_l} labelled examples, fewer than the {self.num_classes} classes; label "
                "at least one example per class"
            )
        return y

    def _ss_epoch_impl(self, state, x, y, x_scale, lab, unl, epoch, n_l, n_u):
        key = jax.random.fold_in(jax.random.PRNGKey(state.seed), epoch)
        data_key, step_key = jax.random.split(key)

        def body(state, inputs):
            i, rows_l, rows_u = inputs
            x_l, y_l, x_u = x[rows_l], y[rows_l], x[rows_u]
            k_l, k_u = jax.random.split(jax.random.fold_in(data_key, i))
            if self.dynamic_binarization:
                x_l = jax.random.bernoulli(k_l, x_l).astype(x.dtype)
                x_u = jax.random.bernoulli(k_u, x_u).astype(x.dtype)
            elif x_scale is not None:  # x ~ N(x, x_scale^2) afresh every step
                x_l = x_l + x_scale[rows_l] * jax.random.normal(k_l, x_l.shape, x.dtype)
                x_u = x_u + x_scale[rows_u] * jax.random.normal(k_u, x_u.shape, x.dtype)
            svi_state = state.svi_state._replace(rng_key=jax.random.fold_in(step_key, i))
            svi_state, loss = self._svi.update(
                svi_state, x_l, y_l, x_u, num_labelled=n_l, num_unlabelled=n_u
            )
            return state._replace(svi_state=svi_state, step=state.step + 1), loss

        steps = jnp.arange(lab.shape[0])
        state, losses = jax.lax.scan(body, state, (steps, lab, unl))
        return state._replace(epoch=jnp.asarray(epoch + 1, jnp.int32)), losses

    def train_epoch(self, state: TrainState, data: Any, epoch: int) -> tuple[TrainState, dict]:
        """One pass over the unlabelled examples of ``data = (x, y)`` in one compiled scan.

        Returns:
            The new state and ``{"loss": mean of -J per example, "finite", "lr"}``.
        """
        x, y = _split(data)
        if y is None:
            raise DataError("semi-supervised training needs (x, y) with y = -1 where unlabelled")
        x_dev = self._on_device(x)
        if self._labels_cache is None or self._labels_cache[0] is not y:
            y_np = self._labels(np.asarray(x), y)
            self._labels_cache = (y, y_np, jnp.asarray(np.maximum(y_np, 0), jnp.int32))
        _, y_np, y_dev = self._labels_cache
        lab, unl = semi_supervised_indices(
            y_np,
            batch_size=self.batch_size,
            labelled_batch_size=self.labelled_batch_size,
            seed=int(state.seed),
            epoch=int(epoch),
        )
        n_l = int(np.sum(y_np != MISSING))
        n_u = len(y_np) - n_l
        if self.input_scale is not None:
            check_input_scale(self.input_scale, np.shape(x))  # every epoch: x may change
            if self._scale_dev is None:
                self._scale_dev = jnp.asarray(self.input_scale)
        state, losses = self._ss_epoch(
            state,
            x_dev,
            y_dev,
            self._scale_dev,
            jnp.asarray(lab),
            jnp.asarray(unl),
            jnp.asarray(epoch, jnp.int32),
            n_l=n_l,
            n_u=n_u,
        )
        losses = np.asarray(losses) / len(y_np)
        return state, {
            "loss": float(np.mean(losses)),
            "finite": float(np.all(np.isfinite(losses))),
            "lr": float(self.lr_schedule(int(state.step))),
        }

    def step(self, state: TrainState, batch: tuple) -> tuple[TrainState, dict]:
        """One update on ``batch = (x_l, y_l, x_u)`` as given (batch sizes as set sizes)."""
        x_l, y_l, x_u = batch
        x_l, x_u = _check_data(x_l, 1), _check_data(x_u, 1)
        y_l = check_labels(y_l, n=len(x_l), num_classes=self.num_classes)
        if (y_l == MISSING).any():
            raise DataError("the labelled batch y_l has missing (-1) labels")
        svi_state, loss = self._ss_step(
            state.svi_state, _device(x_l), jnp.asarray(y_l, jnp.int32), _device(x_u)
        )
        state = state._replace(svi_state=svi_state, step=state.step + 1)
        return state, {"loss": float(loss) / (len(x_l) + len(x_u))}

    # -- evaluation -------------------------------------------------------------------

    def _predict_impl(self, state: TrainState, x: jax.Array) -> jax.Array:
        params = self._svi.get_params(state.svi_state)
        guide = handlers.substitute(self.guide, data=params)
        q = label_distribution(guide, x, self.objective.site)
        return jnp.argmax(_log_q_support(q), axis=0)

    def predict(self, state: TrainState, x: np.ndarray) -> np.ndarray:
        """``argmax_y q(y | x)`` for every row of ``x``, in compiled batches."""
        x = _check_data(x, 1)
        size = min(self.batch_size * 10, len(x))
        out = [
            np.asarray(self._predict(state, _device(x[i : i + size])))
            for i in range(0, len(x), size)
        ]
        return np.concatenate(out)

    def evaluate(self, state: TrainState, data: Any, *, objective=None) -> dict:
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
