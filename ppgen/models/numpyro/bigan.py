"""A generator with an encoder: the model-guide pair of BiGAN and ALI, on NumPyro (mirrors
:mod:`ppgen.models.pyro.bigan`).

BiGAN (Donahue, Krähenbühl & Darrell 2016, "Adversarial feature learning") and ALI
(Dumoulin et al. 2016, "Adversarially learned inference") learn a generator
``x = G(z)``, ``z ~ N(0, I)``, and an encoder ``z ~ q(z | x)`` together, against a critic
that tells data-and-code pairs ``(x, E(x))`` from sample-and-noise pairs ``(G(z), z)``. As a
model-guide pair that is the :class:`~ppgen.models.numpyro.gan.Generator` as the model and
the encoder as the guide: the objective
(:class:`ppgen.inference.numpyro.bigan.BiGAN`) runs the guide on the data batch for the
"real" pairs and the model for the "fake" ones. The encoder is BiGAN's deterministic
``E(x)`` (a ``Delta`` at ``E(x)``) or ALI's reparameterised Gaussian
``N(mu(x), diag(sigma(x)^2))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.numpyro.base import normal_params
from ppgen.models.numpyro.gan import (
    IMAGE,
    KERNEL,
    LEAKY_SLOPE,
    Generator,
    _Layer,
    _rows,
    _TorchNamed,
)
from ppgen.models.numpyro.nets import MLP

__all__ = ["BiGANModel"]

#: The encoder's kinds: BiGAN's deterministic ``E(x)``, ALI's Gaussian ``q(z | x)``.
ENCODERS = ("deterministic", "gaussian")


class _ConvEncoder(_TorchNamed):
    """The encoder of 28x28 grey images, the convolutions of
    :class:`~ppgen.models.numpyro.gan.DCGANCritic`: ``(1, 28, 28) -> Conv 4x4/2 (C, 14, 14)
    -> LeakyReLU -> Conv 4x4/2 (2C, 7, 7) -> LeakyReLU -> flatten -> Linear -> out``, on
    rows ``(..., 784)``. Weights in torch's layout and names (``convs.{0,1}.weight``
    ``(out, in, 4, 4)``, ``head.weight`` ``(out, 2C*49)``), as the Pyro twin's."""

    convs: list[_Layer]
    head: _Layer

    def __init__(self, channels: int, out: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        c, k = channels, (KERNEL, KERNEL)
        self.convs = [_Layer((c, 1, *k), c, rng), _Layer((2 * c, c, *k), 2 * c, rng)]
        self.head = _Layer((out, 2 * c * 7 * 7), out, rng)

    def __call__(self, rows: jax.Array) -> jax.Array:
        """Codes ``(..., out)`` of flattened images ``(..., 784)``."""
        batch = rows.shape[:-1]
        h = rows.reshape(-1, *IMAGE)
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv.conv(h), LEAKY_SLOPE)  # (n, C, 14, 14), (n, 2C, 7, 7)
        return self.head.linear(h.reshape(*batch, -1))


class BiGANModel(Generator):
    """A generator ``z ~ N(0, I)``, ``x = G(z)`` (the model) and an encoder ``z ~ q(z | x)``
    (the guide), the pair of BiGAN (Donahue et al. 2016) and ALI (Dumoulin et al. 2016).

    ``model(x, num_data=None)`` is :class:`~ppgen.models.numpyro.gan.Generator`'s (sites
    ``"z"`` and the deterministic ``"x"`` in the ``"data"`` plate; the data give the batch
    size); ``guide(x, num_data=None)`` has the site ``"z"`` in the same plate, read from the
    data: a ``Delta`` at ``E(x)`` (``encoder="deterministic"``, BiGAN) or
    ``N(mu(x), diag(sigma(x)^2))`` with ``sigma = softplus(.) + 1e-4``
    (``encoder="gaussian"``, ALI), both reparameterised so the objective's gradient reaches
    the encoder. Networks: ``generator`` (as the Generator's) and ``encoder``, an MLP
    ``prod(x_shape) -> reversed(hidden) (ReLU) -> z_dim`` (or ``2 z_dim``: ``[mu, pre]``) for
    ``"mlp"``, the DCGAN critic's two convolutions (``hidden[1]`` and twice as many
    channels, LeakyReLU 0.2) and a linear head for ``"dcgan"``; weights
    ``encoder.layers.{i}.weight`` or ``encoder.convs.{0,1}.weight``, ``encoder.head.weight``.

    Args:
        x_shape: Shape of one example: ``(2,)``, ``(784,)`` (flattened MNIST rows),
            ``(28, 28)`` or ``(1, 28, 28)``.
        z_dim: Width of ``z``; ``None``: 2 for 2-D data, else 64.
        architecture: ``"mlp"`` or ``"dcgan"`` (28x28 grey images only), for both networks.
        hidden: ``"mlp"``: hidden widths (the generator's; the encoder's reversed), default
            ``(128, 128, 128)``; ``"dcgan"``: the generator's channels ``(C1, C2)``, default
            ``(128, 64)``; the encoder's first convolution has ``C2``.
        encoder: ``"deterministic"`` (BiGAN) or ``"gaussian"`` (ALI).
        output: The generator's output, ``"sigmoid"`` (grey values) or ``"identity"``.
        seed: Seed of the initial weights (the generator's as a :class:`Generator` of the
            same seed's).

    Raises:
        ConfigError: An unknown encoder, and the :class:`Generator`'s errors.
    """

    nets = ("generator", "encoder")

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int | None = None,
        architecture: str = "mlp",
        hidden: Sequence[int] | None = None,
        encoder: str = "deterministic",
        output: str = "sigmoid",
        seed: int = 0,
    ) -> None:
        if encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {encoder!r}; choose one of {ENCODERS}")
        super().__init__(x_shape, z_dim, architecture, hidden, None, output, seed)
        self.encoder_kind = encoder
        out = self.z_dim * (2 if encoder == "gaussian" else 1)
        _, enc_seed = spawn_seeds(seed, 2)  # the first is the generator's
        if architecture == "dcgan":
            self.encoder = _ConvEncoder(self.generator.channels[1], out, enc_seed)
        else:
            widths = (128, 128, 128) if hidden is None else tuple(hidden)
            self.encoder = MLP([self.x_dim, *widths[::-1], out], "relu", seed=enc_seed)

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``z ~ N(0, I)``, ``x = G(z)`` (deterministic) for a minibatch ``x`` of
        ``(batch, *x_shape)``, which gives only the batch size.

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        super().model(x, None, num_data)

    def _code(self, encoder: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(loc, scale)`` of ``q(z | x)``, each ``(batch, z_dim)``; ``scale`` is zero for the
        deterministic encoder."""
        out = encoder(_rows(x, self.x_shape, "the encoder's x"))  # (batch, z_dim or 2 z_dim)
        if self.encoder_kind == "gaussian":
            return normal_params(out)
        return out, jnp.zeros_like(out)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``z ~ q(z | x)``: ``Delta(E(x))`` or ``N(mu(x), diag(sigma(x)^2))``, ``(batch,
        z_dim)``.

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        x = self._check_data(x)
        encoder = eqx_module("encoder", self.encoder)
        with self._plate(x, num_data):
            loc, scale = self._code(encoder, x)
            if self.encoder_kind == "gaussian":
                numpyro.sample("z", dist.Normal(loc, scale).to_event(1))
            else:
                numpyro.sample("z", dist.Delta(loc, event_dim=1))

    def encode(self, x: jax.Array) -> jax.Array:
        """The code of each example, ``(batch, z_dim)``: ``E(x)``, or the mean ``mu(x)`` of
        the Gaussian encoder.

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        return self._code(self.encoder, self._check_data(x))[0]

    def reconstruct(self, x: jax.Array) -> jax.Array:
        """``G(E(x))`` (the Gaussian encoder's mean code), ``(batch, *x_shape)``: how well the
        encoder inverts the generator on data (Donahue et al. 2016, figure 3).

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        return self.generate(self.encode(x))

    def sample(self, rng_key: jax.Array, n: int) -> jax.Array:
        """``n`` draws ``x = G(z)``, ``z ~ N(0, I)``, shape ``(n, *x_shape)``."""
        return super().sample(rng_key, n)
