"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised
learning with deep generative models", as a Pyro model/guide pair.

The class label ``y`` is a latent variable that is observed where a label exists:
``model(x, y)`` / ``guide(x, y)`` take ``y = None`` for an unlabelled minibatch, in which
case the guide draws ``y ~ q(y | x)`` at site ``"y"`` (the classifier) before ``z``. Objectives
in :mod:`ppgen.inference.pyro.ssvae` marginalise that site exactly over the classes with
Pyro's parallel enumeration, under which ``y`` has shape ``(C, 1)``: every network input is
built by broadcasting, so one pass computes all classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import one_hot

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.pyro.base import LatentVariableModel, normal_params
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.params import local_module

__all__ = ["SSVAE"]


def one_hot_cat(a: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[a, one_hot(y)]`` on the last axis, broadcasting the leading (particle, enum) dims."""
    y_hot = one_hot(y.long(), num_classes).to(a.dtype)  # (..., batch, C)
    shape = torch.broadcast_shapes(a.shape[:-1], y_hot.shape[:-1])
    return torch.cat([a.expand(*shape, -1), y_hot.expand(*shape, -1)], dim=-1)


def apply_cat(net: Callable, a: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``net([a, onehot(y)])``; ppgen's MLP skips building the concatenation."""
    if isinstance(net, MLP):
        return net.call_concat(a, one_hot(y.long(), num_classes).to(a.dtype))
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
        encoder: A user's ``nn.Module`` ``[x, onehot(y)] -> [loc, pre_scale]``
            (``x_dim + C -> 2 * latent``), replacing the default MLP.
        decoder: A user's network ``[z, onehot(y)] -> logits or mean`` (``latent + C -> x_dim``).
        classifier: A user's network ``x -> class logits`` (``x_dim -> C``).
        seed: Seed of the default networks' initial weights.

    Every network must map any leading batch shape (``(..., in) -> (..., out)``). Labels are
    integer tensors (``torch.long``) of class indices.
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
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        classifier: nn.Module | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes!r}")
        self._init_likelihood(x_dim, likelihood, "learned")
        self.num_classes, self.latent = int(num_classes), int(latent)
        s = spawn_seeds(seed, 3)
        c, d, k = self.num_classes, self.x_dim, self.latent
        # `is None`, not `or`: a user's nn.Sequential with no layers is falsy.
        nets = {
            "classifier": (classifier, [d, *hidden, c], s[0]),
            "encoder": (encoder, [d + c, *hidden, 2 * k], s[1]),
            "decoder": (decoder, [k + c, *hidden, d], s[2]),
        }
        for name, (net, sizes, net_seed) in nets.items():
            if net is None:
                net = MLP(sizes, activation, seed=net_seed)
            elif not isinstance(net, nn.Module):
                raise ConfigError(
                    f"{name} must be a torch.nn.Module, got {type(net).__name__}; wrap a "
                    "function in an nn.Module so that its parameters can be trained"
                )
            setattr(self, name, net)
        self._check_nets()

    def _check_nets(self) -> None:
        """Run each network on a dummy input and name the one that does not fit."""
        c, d, k = self.num_classes, self.x_dim, self.latent
        for name, n_in, n_out in (
            ("classifier", d, c),
            ("encoder", d + c, 2 * k),
            ("decoder", k + c, d),
        ):
            net = getattr(self, name)
            weight = next(net.parameters(), torch.empty(0))  # the input's dtype and device
            try:
                with torch.no_grad():
                    out = net(weight.new_zeros(2, n_in))
            except Exception as error:  # a user network that cannot take this input
                raise ConfigError(
                    f"{name} must map (batch, {n_in}) -> (batch, {n_out}): {error}"
                ) from None
            if not torch.is_tensor(out) or tuple(out.shape) != (2, n_out):
                shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
                raise ConfigError(
                    f"{name} must map (batch, {n_in}) -> (batch, {n_out}), it gives {shape}"
                )

    def _check_labels(self, y: torch.Tensor, batch: int | None = None) -> None:
        """Integer dtype, shape ``(batch,)`` (unless ``None``), values in range."""
        if not torch.is_tensor(y):
            raise DataError(
                f"y must be a torch.Tensor of class indices, got {type(y).__name__}; convert "
                "with torch.as_tensor(y, dtype=torch.long)"
            )
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise DataError(
                f"y has dtype {y.dtype}, but labels must be integer class indices "
                f"0..{self.num_classes - 1}; convert with y.long()"
            )
        if batch is not None and tuple(y.shape) != (batch,):
            raise DataError(
                f"y must hold one label per row of x, shape ({batch},), got {tuple(y.shape)}"
            )
        if dist.is_validation_enabled() and y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"labels must lie in 0..{self.num_classes - 1}, got values in "
                    f"[{lo}, {hi}]; pass y=None for unlabelled data"
                )

    def check_y(self, y: torch.Tensor, batch: int) -> None:
        """Raise :class:`DataError` unless ``y`` holds ``batch`` integer labels in range.

        The range check (a pass over ``y``) runs while Pyro's validation is on, as for ``x``.
        """
        self._check_labels(y, batch)

    def _observation(self, out: torch.Tensor) -> dist.Distribution:
        """``p(x | y, z)``. A Bernoulli also scores grey values in [0, 1] (the cross-entropy
        ``x log p + (1 - x) log(1 - p)``, as Pyro's SS-VAE example trains on grey MNIST)."""
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return super()._observation(out)

    # -- the probabilistic program ---------------------------------------------------

    def model(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """``p(y) p(z) p(x | y, z)``; ``y`` is observed where given, latent where ``None``."""
        x = self._check_x(x)
        if y is not None:
            self.check_y(y, len(x))
        decoder = local_module("decoder", self.decoder)
        prior = dist.Categorical(logits=x.new_zeros(self.num_classes))
        with self._plate(x, num_data):
            y = pyro.sample("y", prior, obs=y)  # (batch,), or (C, 1) when enumerated
            zero = x.new_zeros(len(x), self.latent)
            z = pyro.sample("z", dist.Normal(zero, 1.0).to_event(1))  # (..., batch, latent)
            out = apply_cat(decoder, z, y, self.num_classes)
            pyro.sample("x", self._observation(out), obs=x)

    def guide(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """``q(y | x)`` (only where ``y`` is not given), then ``q(z | x, y)``."""
        x = self._check_x(x)
        if y is None:  # the classifier q(y | x) runs only where the label is missing
            classifier = local_module("classifier", self.classifier)
        else:
            self.check_y(y, len(x))
        encoder = local_module("encoder", self.encoder)
        with self._plate(x, num_data):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=classifier(x)))
            loc, scale = normal_params(apply_cat(encoder, x, y, self.num_classes))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- what users do with a trained model ------------------------------------------

    def _labels(self, y: int | Sequence[int] | torch.Tensor | None, n: int) -> torch.Tensor:
        if y is None:
            return torch.arange(n) % self.num_classes
        y = torch.as_tensor(y)
        if y.dim() == 0:
            y = y.expand(n)
        self.check_y(y, n)
        return y

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``q(y | x)``, shape ``(batch, C)``."""
        return torch.softmax(self.classifier(self._check_input(x)), dim=-1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under ``q(y | x)``, shape ``(batch,)``."""
        return torch.argmax(self.classifier(self._check_input(x)), dim=-1)

    def encode(
        self, x: torch.Tensor, y: int | Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of ``q(z | x, y)``, each ``(batch, latent)``."""
        x = self._check_input(x)
        y = self._labels(y, len(x))
        return normal_params(apply_cat(self.encoder, x, y, self.num_classes))

    def decode(self, z: torch.Tensor, y: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | y, z)``, shape ``(..., x_dim)``; ``y`` broadcasts against ``z``."""
        y = torch.as_tensor(y)
        self._check_labels(y)
        return self._mean(apply_cat(self.decoder, z, y, self.num_classes))

    def _dtype(self) -> torch.dtype:
        return next(self.decoder.parameters(), torch.empty(0)).dtype

    @torch.no_grad()
    def sample(self, n: int, y: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Mean images of ``n`` draws ``z ~ p(z)`` (torch's global RNG) given class ``y`` (an
        int, ``n`` labels, or ``None``: classes ``0, 1, ..., C-1, 0, ...`` in turn), shape
        ``(n, x_dim)``."""
        y = self._labels(y, n)
        return self.decode(torch.randn(n, self.latent, dtype=self._dtype()), y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | y, z)`` at ``y = predict(x)`` and one ``z ~ q(z | x, y)`` (global
        RNG), shape ``(batch, x_dim)``."""
        y = self.predict(x)
        loc, scale = self.encode(x, y)
        return self.decode(loc + scale * torch.randn_like(loc), y)

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, ys: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Keep each input's style and change its class (Kingma et al., 2014, fig. 1).

        The style is the posterior mean of ``q(z | x, y_hat)`` at the predicted class
        ``y_hat``; each is decoded with every class in ``ys``.

        Returns:
            Mean images, shape ``(batch, len(ys), x_dim)``.
        """
        ys = torch.as_tensor(ys)
        self.check_y(ys, len(ys) if ys.dim() == 1 else -1)
        z, _ = self.encode(x, self.predict(x))  # (batch, latent)
        z = z[:, None, :].expand(-1, len(ys), -1)  # (batch, len(ys), latent)
        return self.decode(z, ys.expand(z.shape[:2]))
