"""InfoGAN's generator with codes and its recognition guide ``q(c | x)``, on NumPyro (mirrors
:mod:`ppgen.models.pyro.infogan`).

InfoGAN (Chen et al. 2016, "InfoGAN: Interpretable representation learning by information
maximizing generative adversarial nets") splits a generator's input into incompressible
noise ``z ~ N(0, I)`` and a **code** ``c``: categorical codes ``c_i ~ Cat(1/K_i)`` and
continuous ones ``c_j ~ U(-1, 1)``, drawn in the ``"data"`` plate, with ``x = G(z, c)`` a
deterministic site as in :class:`~ppgen.models.numpyro.gan.Generator`. The guide is the
paper's auxiliary distribution ``Q(c | x)``: a recognition network giving each categorical
code's logits and each continuous code's Gaussian; the objective
(:class:`~ppgen.inference.numpyro.infogan.InfoGAN`) trains ``G`` and ``Q`` together on the
mutual-information bound ``L_I = E[log Q(c | G(z, c))] + H(c)``.

The networks are gan.py's: the generator's (an MLP or :class:`DCGANGenerator`) takes
``[z, onehot(c_cat0), ..., c_cont0, ...]``; the recognition network is an MLP (``"mlp"``) or
the convolutions of a :class:`DCGANCritic` under a small MLP head (``"dcgan"``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

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
from ppgen.models.numpyro.gan import IMAGE, LEAKY_SLOPE, DCGANCritic, Generator, _TorchNamed
from ppgen.models.numpyro.nets import MLP

__all__ = ["InfoGenerator"]

#: Width of the hidden layer of the convolutional recognition network's head.
HEAD_HIDDEN = 128


def _code_sizes(categorical: int | Sequence[int], continuous: int) -> dict[str, int | None]:
    """The code sites: ``{"c_cat<i>": K_i, ..., "c_cont<j>": None, ...}``, in input order.

    Raises:
        ConfigError: A categorical size below 2, a negative number of continuous codes, or
            no code at all.
    """
    if isinstance(categorical, numbers.Integral):
        categorical = (categorical,)
    sizes = tuple(categorical)
    if not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 2
               for k in sizes):  # fmt: skip
        raise ConfigError(
            f"categorical must be the sizes (each >= 2) of the categorical codes, e.g. (10,), "
            f"got {categorical!r}"
        )
    if (
        isinstance(continuous, bool)
        or not isinstance(continuous, numbers.Integral)
        or continuous < 0
    ):
        raise ConfigError(
            f"continuous must be the number (>= 0) of continuous codes, got {continuous!r}"
        )
    if not sizes and not continuous:
        raise ConfigError(
            "an InfoGenerator needs at least one code: categorical=(10,) and/or continuous=2"
        )
    codes: dict[str, int | None] = {f"c_cat{i}": int(k) for i, k in enumerate(sizes)}
    codes.update({f"c_cont{j}": None for j in range(int(continuous))})
    return codes


class _ConvRecognition(_TorchNamed):
    """The recognition network of 28x28 images: a :class:`DCGANCritic`'s two convolutions
    (LeakyReLU 0.2), then ``Linear(2C*49, 128) -> ReLU -> Linear(128, out)``. Weights
    ``convs.{0,1}.weight``, ``convs.{0,1}.bias``, ``head.layers.{0,1}.weight``, ``...bias``."""

    convs: list
    head: MLP
    x_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, x_shape: tuple[int, ...], channels: int, out: int, seed: int) -> None:
        conv_seed, head_seed = spawn_seeds(seed, 2)
        body = DCGANCritic(x_shape, channels=channels, seed=conv_seed)
        self.x_shape, self.convs = body.x_shape, body.convs
        self.head = MLP([2 * channels * 7 * 7, HEAD_HIDDEN, out], "relu", seed=head_seed)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Outputs ``(..., out)`` of images ``(..., *x_shape)``."""
        batch = x.shape[: x.ndim - len(self.x_shape)]
        h = x.reshape(-1, *IMAGE)
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv.conv(h), LEAKY_SLOPE)
        return self.head(h.reshape(*batch, -1))


class InfoGenerator(LatentVariableModel):
    """InfoGAN's generator (Chen et al. 2016): ``z ~ N(0, I)``, codes ``c``, ``x = G(z, c)``;
    its guide is the recognition distribution ``q(c | x)``.

    ``model(x, num_data=None)`` has, in the ``"data"`` plate, the sites ``"z"`` (event dim
    1), one site per code, ``"c_cat<i>" ~ Cat(1/K_i)`` (integers ``(batch,)``) and
    ``"c_cont<j>" ~ U(-1, 1)`` (``(batch,)``), and the deterministic ``"x"`` of the data's
    shape ``(batch, *x_shape)``; the data give only the batch size. ``guide(x,
    num_data=None)`` samples every code site from ``q(c | x)``: ``Cat(softmax(l_i(x)))``
    and ``N(mu_j(x), sigma_j(x)^2)`` with ``sigma = softplus(pre) + 1e-4`` (ppgen's Gaussian
    layer), all read off one recognition network's output ``[l_0, ..., mu, pre]``. The
    networks are the param sites ``generator$params`` (as :class:`Generator`'s) and
    ``recognition$params``.

    Args:
        x_shape: Shape of one example, as :class:`Generator`'s.
        z_dim: Width of the noise ``z``; ``None``: 2 for 2-D data, else 64.
        categorical: Sizes ``K_i >= 2`` of the categorical codes (``()``: none); InfoGAN's
            MNIST model has one 10-way code.
        continuous: Number of continuous codes ``U(-1, 1)`` (the paper's MNIST model: 2).
        architecture: ``"mlp"`` or ``"dcgan"`` (28x28 grey images only), for both networks.
        hidden: The generator's, as :class:`Generator`'s; the recognition MLP uses the same
            widths, the convolutional one ``hidden[1]`` channels (default 64).
        output: ``"sigmoid"`` (grey values in (0, 1)) or ``"identity"`` (real data).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: No code, a categorical size below 2, a negative number of continuous
            codes, and :class:`Generator`'s errors.
    """

    nets = ("generator", "recognition")

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int | None = None,
        categorical: int | Sequence[int] = (10,),
        continuous: int = 2,
        architecture: str = "mlp",
        hidden: Sequence[int] | None = None,
        output: str = "sigmoid",
        seed: int = 0,
    ) -> None:
        #: The code sites in the generator's input order: name -> K (categorical) or None.
        self.codes = _code_sizes(categorical, continuous)
        self.categorical = {k: v for k, v in self.codes.items() if v is not None}
        self.continuous = tuple(k for k, v in self.codes.items() if v is None)
        width = sum(self.categorical.values()) + len(self.continuous)
        x_dim = math.prod((x_shape,) if isinstance(x_shape, numbers.Integral) else x_shape)
        z_dim = (2 if x_dim == 2 else 64) if z_dim is None else z_dim
        if isinstance(z_dim, bool) or not isinstance(z_dim, numbers.Integral) or z_dim < 1:
            raise ConfigError(f"z_dim must be None or an integer >= 1, got {z_dim!r}")
        self.z_dim = int(z_dim)
        gen_seed, rec_seed = spawn_seeds(seed, 2)
        # gan.py's generator of [z, codes]: its checks, defaults and network.
        base = Generator(x_shape, z_dim=self.z_dim + width, architecture=architecture,
                         hidden=hidden, output=output, seed=gen_seed)  # fmt: skip
        self.x_shape, self.x_dim, self.output = base.x_shape, base.x_dim, output
        self.architecture = architecture
        self.generator = base.generator
        out = width + len(self.continuous)  # logits, then [mu, pre] of the continuous codes
        if architecture == "dcgan":
            channels = 64 if hidden is None else int(hidden[1])
            self.recognition = _ConvRecognition(self.x_shape, channels, out, rec_seed)
        else:
            sizes = [self.x_dim, *((128, 128, 128) if hidden is None else hidden), out]
            self.recognition = MLP(sizes, "relu", seed=rec_seed)

    def _check_data(self, x: jax.Array) -> jax.Array:
        if tuple(jnp.shape(x)[1:]) != self.x_shape:
            raise DataError(
                f"x must be an array of shape (batch, {', '.join(map(str, self.x_shape))})"
                f" for this generator, got {jnp.shape(x)}"
            )
        return x

    def _check_codes(self, codes: dict[str, jax.Array]) -> None:
        """Raise unless ``codes`` holds every code, categorical ones integers in range (the
        range checked on concrete arrays).

        Raises:
            DataError: A code missing or unknown, a categorical one not integers in range.
        """
        if set(codes) != set(self.codes):
            raise DataError(
                f"give every code of this generator, {', '.join(self.codes)}; got "
                f"{', '.join(codes) or 'none'}"
            )
        for name, k in self.categorical.items():
            c = codes[name]
            if not jnp.issubdtype(jnp.result_type(c), jnp.integer):
                kind = jnp.result_type(c)
                raise DataError(f"code {name!r} takes integer categories 0..{k - 1}, got {kind}")
            if not_jax_tracer(c) and jnp.size(c):
                c_np = np.asarray(c)  # numpy's reductions: not staged when called inside a trace
                if int(c_np.min()) < 0 or int(c_np.max()) >= k:
                    raise DataError(f"code {name!r} takes categories 0..{k - 1}")

    def _features(self, codes: dict[str, jax.Array], like: jax.Array) -> list[jax.Array]:
        """``[onehot(c_cat0), ..., c_cont0, ...]``, each ``(..., width)``, in ``like``'s dtype."""
        return [
            jax.nn.one_hot(codes[name], k, dtype=like.dtype)
            if k is not None
            else jnp.asarray(codes[name], dtype=like.dtype)[..., None]
            for name, k in self.codes.items()
        ]

    def _generate(self, net: Callable, z: jax.Array, codes: dict) -> jax.Array:
        """``G([z, codes])`` with the output nonlinearity, ``(..., *x_shape)``; the leading
        dims of ``z`` and the codes broadcast."""
        parts = [z, *self._features(codes, z)]
        batch = jnp.broadcast_shapes(*(p.shape[:-1] for p in parts))
        out = net(jnp.concatenate([jnp.broadcast_to(p, (*batch, p.shape[-1])) for p in parts], -1))
        if self.output == "sigmoid":
            out = jax.nn.sigmoid(out)
        return out.reshape(*batch, *self.x_shape)

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``z ~ N(0, I)``, ``c_cat<i> ~ Cat(1/K_i)``, ``c_cont<j> ~ U(-1, 1)``,
        ``x = G(z, c)`` (deterministic) for a minibatch; ``x`` gives the batch size.

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        x = self._check_data(x)
        net = eqx_module("generator", self.generator)
        with self._plate(x, num_data):
            z = numpyro.sample("z", dist.Normal(jnp.zeros(self.z_dim), 1.0).to_event(1))
            codes = {}
            for name, k in self.codes.items():
                if k is None:
                    prior = dist.Uniform(-jnp.ones(()), jnp.ones(()))
                else:
                    prior = dist.Categorical(logits=jnp.zeros(k))
                codes[name] = numpyro.sample(name, prior)  # (..., batch)
            numpyro.deterministic("x", self._generate(net, z, codes))  # (..., batch, *x_shape)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``c ~ q(c | x)``: each categorical code from its logits, each continuous one from
        its Gaussian, all read off the recognition network's output on ``x``.

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``.
        """
        x = self._check_data(x)
        net = eqx_module("recognition", self.recognition)
        inputs = x if self.architecture == "dcgan" else x.reshape(x.shape[0], self.x_dim)
        out = net(inputs)  # (batch, sum K_i + 2 * continuous)
        with self._plate(x, num_data):
            start = 0
            for name, k in self.categorical.items():
                numpyro.sample(name, dist.Categorical(logits=out[..., start : start + k]))
                start += k
            if self.continuous:
                loc, scale = normal_params(out[..., start:])  # each (batch, continuous)
                for j, name in enumerate(self.continuous):
                    numpyro.sample(name, dist.Normal(loc[..., j], scale[..., j]))

    def generate(self, z: jax.Array, **codes: jax.Array) -> jax.Array:
        """``x = G(z, c)``, ``(..., *x_shape)``, for noise ``z (..., z_dim)`` and every code by
        name (``c_cat<i>``: integers, ``c_cont<j>``: reals), their leading dims broadcasting
        (a traversal: ``z`` ``(rows, 1, z_dim)``, a code ``(rows, columns)``).

        Raises:
            DataError: ``z`` of another width; a code missing, unknown or out of range.
        """
        if jnp.shape(z)[-1:] != (self.z_dim,):
            raise DataError(f"z must have shape (..., {self.z_dim}), got {jnp.shape(z)}")
        self._check_codes(codes)
        return self._generate(self.generator, jnp.asarray(z), codes)

    def sample(self, rng_key: jax.Array, n: int, **codes: int | float | jax.Array) -> jax.Array:
        """``n`` draws ``x = G(z, c)``, ``(n, *x_shape)``: ``z`` from its prior, each code
        given by name (one value, or ``n``) or drawn from its prior.

        Raises:
            DataError: An unknown code, or one out of range.
        """
        unknown = sorted(set(codes) - set(self.codes))
        if unknown:
            raise DataError(f"unknown code(s) {unknown}; this generator's are {list(self.codes)}")
        z_key, *keys = jax.random.split(rng_key, 1 + len(self.codes))
        z = jax.random.normal(z_key, (n, self.z_dim))
        drawn = {}
        for key, (name, k) in zip(keys, self.codes.items(), strict=True):
            if name in codes:
                drawn[name] = jnp.broadcast_to(jnp.asarray(codes[name]), (n,))
            elif k is None:
                drawn[name] = jax.random.uniform(key, (n,), minval=-1.0, maxval=1.0)
            else:
                drawn[name] = jax.random.randint(key, (n,), 0, k)
        return self.generate(z, **drawn)
