"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised
learning with deep generative models", as a NumPyro model/guide pair.

The class label ``y`` is a latent variable that is observed where a label exists:
``model(x, y)`` / ``guide(x, y)`` take ``y = None`` for an unlabelled minibatch, in which
case the guide draws ``y ~ q(y | x)`` at site ``"y"`` (the classifier) before ``z``. Objectives
in :mod:`ppgen.inference.numpyro.ssvae` marginalise that site exactly over the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.util import not_jax_tracer

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.numpyro.base import LatentVariableModel, normal_params
from ppgen.models.numpyro.nets import MLP

__all__ = ["SSVAE"]


def one_hot_cat(a: jax.Array, y: jax.Array, num_classes: int) -> jax.Array:
    """``[a, one_hot(y)]`` on the last axis, broadcasting the leading (particle) dims."""
    y_hot = jax.nn.one_hot(y, num_classes, dtype=a.dtype)  # (..., batch, C)
    shape = jnp.broadcast_shapes(a.shape[:-1], y_hot.shape[:-1])
    a = jnp.broadcast_to(a, (*shape, a.shape[-1]))
    return jnp.concatenate([a, jnp.broadcast_to(y_hot, (*shape, num_classes))], axis=-1)


def apply_cat(net: eqx.Module, a: jax.Array, y: jax.Array, num_classes: int) -> jax.Array:
    """``net([a, onehot(y)])``; ppgen's MLP skips building the concatenation."""
    if isinstance(net, MLP):
        return net.call_concat(a, jax.nn.one_hot(y, num_classes, dtype=a.dtype))
    return net(one_hot_cat(a, y, num_classes))


class SSVAE(LatentVariableModel):
    """M2: ``p(y) p(z) p(x | y, z)``, guide ``q(y | x) q(z | x, y)`` (Kingma et al., 2014, 3.1.2).

    ``y ~ Cat(1/C)``, ``z ~ N(0, I)``, ``x | y, z`` Bernoulli with logits
    ``decoder([z, onehot(y)])`` (or Gaussian, as :class:`VAE`). The guide is the classifier
    ``q(y | x) = Cat(softmax(classifier(x)))`` and ``q(z | x, y) = N(mu, sigma^2)`` with
    ``[mu, pre] = encoder([x, onehot(y)])``, ``sigma = softplus(pre) + 1e-4``.

    Args:
        x_dim: Number of features of a (flattened) datapoint.
        num_classes: Number of classes ``C``.
        latent: Dimension of ``z`` (the paper's 50).
        hidden: Hidden widths of every network (the paper: one layer of 500).
        activation: Hidden activation (the paper: softplus).
        likelihood: ``"bernoulli"`` or ``"gaussian"`` (learned per-feature scale).
        encoder: A user's Equinox network ``[x, onehot(y)] -> [loc, pre_scale]``
            (``x_dim + C -> 2 * latent``), replacing the default MLP.
        decoder: A user's network ``[z, onehot(y)] -> logits or mean`` (``latent + C -> x_dim``).
        classifier: A user's network ``x -> class logits`` (``x_dim -> C``).
        seed: Seed of the default networks' initial weights.

    Every network must map any leading batch shape (``(..., in) -> (..., out)``).
    """

    nets = ("classifier", "encoder", "decoder")
    # A Bernoulli M2 also scores grey values (see _observation), so x may lie in [0, 1].
    bernoulli_support = "unit_interval"

    def __init__(
        self,
        x_dim: int,
        num_classes: int = 10,
        latent: int = 50,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
        likelihood: str = "bernoulli",
        encoder: eqx.Module | None = None,
        decoder: eqx.Module | None = None,
        classifier: eqx.Module | None = None,
        seed: int = 0,
    ):
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes!r}")
        self._init_likelihood(x_dim, likelihood, "learned")
        self.num_classes, self.latent = int(num_classes), int(latent)
        s = spawn_seeds(seed, 3)
        c, d, k = self.num_classes, self.x_dim, self.latent
        default = {
            "classifier": ([d, *hidden, c], s[0]),
            "encoder": ([d + c, *hidden, 2 * k], s[1]),
            "decoder": ([k + c, *hidden, d], s[2]),
        }
        given = {"classifier": classifier, "encoder": encoder, "decoder": decoder}
        for name, (sizes, net_seed) in default.items():
            net = given[name]
            if net is None:
                net = MLP(sizes, activation, seed=net_seed)
            elif not isinstance(net, eqx.Module):
                raise ConfigError(
                    f"{name} must be an equinox.Module, got {type(net).__name__}; wrap a "
                    "function in an eqx.Module so that its parameters can be trained"
                )
            setattr(self, name, net)
        self._check_nets()

    def _check_nets(self) -> None:
        """Run each network on a dummy input (shapes only) and name the one that does not fit."""
        c, d, k = self.num_classes, self.x_dim, self.latent
        for name, n_in, n_out in (
            ("classifier", d, c),
            ("encoder", d + c, 2 * k),
            ("decoder", k + c, d),
        ):
            try:
                out = eqx.filter_eval_shape(getattr(self, name), jnp.zeros((2, n_in)))
            except Exception as error:  # a user network that cannot take this input
                raise ConfigError(
                    f"{name} must map (batch, {n_in}) -> (batch, {n_out}): {error}"
                ) from None
            if out.shape != (2, n_out):
                raise ConfigError(
                    f"{name} must map (batch, {n_in}) -> (batch, {n_out}), it gives {out.shape}"
                )

    def check_y(self, y: jax.Array, batch: int) -> None:
        """Raise :class:`DataError` unless ``y`` holds ``batch`` integer labels in range."""
        if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
            raise DataError(
                f"y has dtype {jnp.result_type(y)}, but labels must be integer class indices "
                f"0..{self.num_classes - 1}; convert with y.astype(int)"
            )
        if jnp.shape(y) != (batch,):
            raise DataError(
                f"y must hold one label per row of x, shape ({batch},), got {jnp.shape(y)}"
            )
        if not_jax_tracer(y):
            y_np = np.asarray(y)
            if y_np.size and (y_np.min() < 0 or y_np.max() >= self.num_classes):
                raise DataError(
                    f"labels must lie in 0..{self.num_classes - 1}, got values in "
                    f"[{y_np.min()}, {y_np.max()}]; pass y=None for unlabelled data"
                )

    def _observation(self, out: jax.Array) -> dist.Distribution:
        """``p(x | y, z)``. A Bernoulli also scores grey values in [0, 1] (the cross-entropy
        ``x log p + (1 - x) log(1 - p)``, as Pyro's SS-VAE example trains on grey MNIST)."""
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return super()._observation(out)

    # -- the probabilistic program ---------------------------------------------------

    def model(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """``p(y) p(z) p(x | y, z)``; ``y`` is observed where given, latent where ``None``."""
        x = self._check_x(x)
        if y is not None:
            self.check_y(y, x.shape[0])
        decoder = eqx_module("decoder", self.decoder)
        prior = dist.Categorical(logits=jnp.zeros(self.num_classes))
        with self._plate(x, num_data):
            y = numpyro.sample("y", prior, obs=y)  # (batch,), or (C, 1) when enumerated
            z = numpyro.sample("z", dist.Normal(jnp.zeros(self.latent), 1.0).to_event(1))
            out = apply_cat(decoder, z, y, self.num_classes)
            numpyro.sample("x", self._observation(out), obs=x)

    def guide(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """``q(y | x)`` (only where ``y`` is not given), then ``q(z | x, y)``."""
        x = self._check_input(x)  # grey x too: only the model's density needs [0, 1]
        if y is None:  # the classifier q(y | x) runs only where the label is missing
            classifier = eqx_module("classifier", self.classifier)
        else:
            self.check_y(y, x.shape[0])
        encoder = eqx_module("encoder", self.encoder)
        with self._plate(x, num_data):
            if y is None:
                y = numpyro.sample("y", dist.Categorical(logits=classifier(x)))
            loc, scale = normal_params(apply_cat(encoder, x, y, self.num_classes))
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- what users do with a trained model ------------------------------------------

    def classify(self, x: jax.Array) -> jax.Array:
        """Class probabilities ``q(y | x)``, shape ``(batch, C)``."""
        return jax.nn.softmax(self.classifier(self._check_input(x)), axis=-1)

    def predict(self, x: jax.Array) -> jax.Array:
        """The most probable class under ``q(y | x)``, shape ``(batch,)``."""
        return jnp.argmax(self.classifier(self._check_input(x)), axis=-1)

    def encode(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of ``q(z | x, y)``, each ``(batch, latent)``."""
        x = self._check_input(x)
        return normal_params(apply_cat(self.encoder, x, jnp.asarray(y), self.num_classes))

    def decode(self, z: jax.Array, y: jax.Array) -> jax.Array:
        """Mean of ``p(x | y, z)``, shape ``(..., x_dim)``."""
        return self._mean(apply_cat(self.decoder, z, jnp.asarray(y), self.num_classes))

    def _labels(self, y: int | Sequence[int] | jax.Array | None, n: int) -> jax.Array:
        if y is None:
            return jnp.arange(n) % self.num_classes
        y = jnp.broadcast_to(jnp.asarray(y), (n,))
        self.check_y(y, n)
        return y

    def sample(
        self, rng_key: jax.Array, n: int, y: int | Sequence[int] | jax.Array | None = None
    ) -> jax.Array:
        """Mean images of ``n`` draws ``z ~ p(z)`` given class ``y`` (an int, ``n`` labels, or
        ``None``: classes ``0, 1, ..., C-1, 0, ...`` in turn), shape ``(n, x_dim)``."""
        y = self._labels(y, n)
        return self.decode(jax.random.normal(rng_key, (n, self.latent)), y)

    def reconstruct(self, rng_key: jax.Array, x: jax.Array) -> jax.Array:
        """Mean of ``p(x | y, z)`` at ``y = predict(x)`` and one ``z ~ q(z | x, y)``."""
        y = self.predict(x)
        loc, scale = self.encode(x, y)
        return self.decode(loc + scale * jax.random.normal(rng_key, loc.shape), y)

    def analogies(self, x: jax.Array, ys: Sequence[int] | jax.Array) -> jax.Array:
        """Keep each input's style and change its class (Kingma et al., 2014, fig. 1).

        The style is the posterior mean of ``q(z | x, y_hat)`` at the predicted class
        ``y_hat``; each is decoded with every class in ``ys``.

        Returns:
            Mean images, shape ``(batch, len(ys), x_dim)``.
        """
        ys = jnp.asarray(ys)
        self.check_y(ys, ys.shape[0] if ys.ndim == 1 else -1)
        z, _ = self.encode(x, self.predict(x))  # (batch, latent)
        z = jnp.broadcast_to(z[:, None, :], (z.shape[0], ys.shape[0], self.latent))
        return self.decode(z, jnp.broadcast_to(ys, z.shape[:2]))
