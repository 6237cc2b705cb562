"""Adversarial objectives (ppgen.inference.{pyro,numpyro}.adversarial): the two backends agree
on the same weights and samples for every loss, the f-GAN conjugates give each divergence at
the optimal critic, the gradient penalty equals finite differences, each player's update
leaves the other's parameters alone, and bad input is refused in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro.contrib.module import eqx_module
from scipy import integrate, stats

import ppgen.inference.numpyro.adversarial as nadv
import ppgen.inference.pyro.adversarial as padv
from ppgen.errors import ConfigError, DataError
from ppgen.inference.games import ADVERSARIAL_LOSSES, F_DIVERGENCES, adversarial_groups
from ppgen.models.numpyro import nets as nnets
from ppgen.models.pyro import nets as pnets
from ppgen.models.pyro.params import local_module

D, Z, B = 3, 2, 16


def pair_of_nets(sizes, seed):
    """The same MLP on both backends (torch's weights copied into the Equinox one)."""
    p = pnets.MLP(sizes, "tanh", seed=seed)
    n = nnets.load_net_weights(nnets.MLP(sizes, "tanh"), pnets.net_weights(p))
    return p, n


def generators(gen_p, gen_n):
    """A generator program on each backend: ``x = G(z)`` with ``z`` given (no noise), so
    both backends see the same samples."""

    def pyro_model(x, z, num_data=None):
        net = local_module("generator", gen_p)
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            pyro.deterministic("x", net(z), event_dim=1)

    def numpyro_model(x, z, num_data=None):
        net = eqx_module("generator", gen_n)
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            numpyro.deterministic("x", net(z))

    def guide(x, z, num_data=None):
        pass

    return pyro_model, numpyro_model, guide


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, D)) + 1.0, rng.normal(size=(B, Z))


@pytest.mark.parametrize("loss", ADVERSARIAL_LOSSES)
def test_backends_agree_on_every_loss(float64, loss):
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(2, 40)) * 2
    for fn, args in (("critic_loss", (real, fake)), ("generator_loss", (fake,))):
        p = getattr(padv, fn)(loss, *map(torch.as_tensor, args)).numpy()
        n = np.asarray(getattr(nadv, fn)(loss, *map(jnp.asarray, args)))
        np.testing.assert_allclose(p, n, rtol=1e-10, atol=1e-12)
    # The whole objective on a generator program, with the same weights and samples.
    crit_p, crit_n = pair_of_nets((D, 8, 1), seed=2)
    gen_p, gen_n = pair_of_nets((Z, 8, D), seed=3)
    pyro_model, numpyro_model, guide = generators(gen_p, gen_n)
    x, z = batch()
    objective_p = padv.Adversarial(crit_p, loss=loss, gradient_penalty=0.0)
    objective_n = nadv.Adversarial(crit_n, loss=loss, gradient_penalty=0.0)
    out_p = objective_p(pyro_model, guide, torch.as_tensor(x), z=torch.as_tensor(z), num_data=64)
    key = jax.random.PRNGKey(0)
    with numpyro.handlers.seed(rng_seed=0):  # the critic's eqx_module outside a trainer
        out_n = objective_n(key, numpyro_model, guide, jnp.asarray(x), z=jnp.asarray(z),
                            num_data=64)  # fmt: skip
    assert set(out_p) == set(out_n) == {"critic", "generator"}
    for player in out_p:
        np.testing.assert_allclose(out_p[player].item(), float(out_n[player]), rtol=1e-10)
    # Per-dataset estimates: N = 64 times the batch mean.
    scores = lambda a: crit_p(torch.as_tensor(a))[:, 0]  # noqa: E731
    with torch.no_grad():
        expect = 64 * padv.generator_loss(loss, scores(gen_p(torch.as_tensor(z)))).mean()
    assert out_p["generator"].item() == pytest.approx(float(expect), rel=1e-12)


def test_backends_agree_on_the_gradient_penalty(float64):
    crit_p, crit_n = pair_of_nets((D, 8, 8, 1), seed=4)
    rng = np.random.default_rng(5)
    x, x_fake, u = rng.normal(size=(B, D)), rng.normal(size=(B, D)), rng.random(B)
    p = padv.gradient_penalty(crit_p, *map(torch.as_tensor, (x, x_fake, u))).detach().numpy()
    n = np.asarray(nadv.gradient_penalty(crit_n, *map(jnp.asarray, (x, x_fake, u))))
    np.testing.assert_allclose(p, n, rtol=1e-10)
    assert p.shape == (B,) and np.all(p > 0)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_gradient_penalty_equals_finite_differences(float64, name):
    """``(|grad D(x_hat)| - 1)^2`` with the gradient from central differences of the scores."""
    crit_p, crit_n = pair_of_nets((D, 8, 8, 1), seed=6)
    rng = np.random.default_rng(7)
    x, x_fake, u = rng.normal(size=(B, D)), rng.normal(size=(B, D)), rng.random(B)
    if name == "pyro":
        penalty = padv.gradient_penalty(crit_p, *map(torch.as_tensor, (x, x_fake, u)))
        penalty = penalty.detach().numpy()

        def score(a):
            with torch.no_grad():
                return crit_p(torch.as_tensor(a))[:, 0].numpy()
    else:
        penalty = np.asarray(nadv.gradient_penalty(crit_n, *map(jnp.asarray, (x, x_fake, u))))

        def score(a):
            return np.asarray(crit_n(jnp.asarray(a)))[:, 0]

    x_hat = u[:, None] * x + (1 - u[:, None]) * x_fake
    h = 1e-6
    grad = np.stack(
        [(score(x_hat + h * e) - score(x_hat - h * e)) / (2 * h) for e in np.eye(D)], axis=1
    )
    expected = (np.linalg.norm(grad, axis=1) - 1) ** 2
    np.testing.assert_allclose(penalty, expected, rtol=1e-6, atol=1e-9)


# f'(r) at the density ratio r = p / q, and the inverse of each output activation g.
F_PRIME = {
    "f-kl": lambda r: 1 + np.log(r),
    "f-rkl": lambda r: -1 / r,
    "f-pearson": lambda r: 2 * (r - 1),
    "f-hellinger": lambda r: 1 - 1 / np.sqrt(r),
    "f-js": lambda r: np.log(2 * r / (r + 1)),
}
G_INVERSE = {
    "f-kl": lambda t: t,
    "f-rkl": lambda t: -np.log(-t),
    "f-pearson": lambda t: t,
    "f-hellinger": lambda t: -np.log(1 - t),
    "f-js": lambda t: -np.log(np.expm1(np.log(2) - t)),  # softplus(-v) = log 2 - t
}
F = {
    "f-kl": lambda u: u * np.log(u),
    "f-rkl": lambda u: -np.log(u),
    "f-pearson": lambda u: (u - 1) ** 2,
    "f-hellinger": lambda u: (np.sqrt(u) - 1) ** 2,
    "f-js": lambda u: u * np.log(u) - (u + 1) * np.log((u + 1) / 2),
}


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_gan_critic_at_its_optimum_estimates_the_divergence(float64, name):
    """With the optimal critic ``g(V*) = f'(p / q)`` (Nowozin et al. 2016, eq. 5), minus the
    critic's mean loss is ``D_f(P || Q)`` (computed by quadrature); a worse critic gives a
    lower bound."""
    mu = 0.75
    p, q = stats.norm(mu, 1), stats.norm(0, 1)
    exact = integrate.quad(lambda x: q.pdf(x) * F[name](p.pdf(x) / q.pdf(x)), -12, 12)[0]
    rng = np.random.default_rng(8)
    x_p, x_q = rng.normal(mu, 1, 400_000), rng.normal(0, 1, 400_000)
    v = lambda x: G_INVERSE[name](F_PRIME[name](np.exp(p.logpdf(x) - q.logpdf(x))))  # noqa: E731
    for module, array in ((padv, torch.as_tensor), (nadv, jnp.asarray)):
        bound = -float(module.critic_loss(name, array(v(x_p)), array(v(x_q))).mean())
        assert bound == pytest.approx(exact, rel=0.02), (module.__name__, bound, exact)
        worse = -float(module.critic_loss(name, array(0.5 * v(x_p)), array(0.5 * v(x_q))).mean())
        assert worse < bound


def two_player_trainer(name, lr_critic, lr_generator, critic_first):
    """A trainer of the non-saturating GAN with an MLP generator and critic on ``name``."""
    x, _ = batch()
    if name == "pyro":
        from ppgen.inference.pyro import Trainer

        crit, gen = pnets.MLP((D, 8, 1), seed=1), pnets.MLP((Z, 8, D), seed=2)

        def model(x, num_data=None):
            net = local_module("generator", gen)
            with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
                z = pyro.sample(
                    "z", pyro.distributions.Normal(torch.zeros(len(x), Z), 1.0).to_event(1)
                )
                pyro.deterministic("x", net(z), event_dim=1)

        objective = padv.Adversarial(crit)
    else:
        from ppgen.inference.numpyro import Trainer

        crit, gen = nnets.MLP((D, 8, 1), seed=1), nnets.MLP((Z, 8, D), seed=2)

        def model(x, num_data=None):
            net = eqx_module("generator", gen)
            with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
                z = numpyro.sample(
                    "z", numpyro.distributions.Normal(jnp.zeros((len(x), Z)), 1).to_event(1)
                )
                numpyro.deterministic("x", net(z.reshape(len(x), Z)))

        objective = nadv.Adversarial(crit)

    def guide(x, num_data=None):
        pass

    groups = adversarial_groups(
        lr_critic=lr_critic, lr_generator=lr_generator, critic_first=critic_first
    )
    trainer = Trainer(model, guide, objective, groups=groups, batch_size=B)
    return trainer, x.astype(np.float32)


def _params(trainer, state, prefix):
    """The player's parameters as numpy copies, one entry per array."""
    out = {}
    for k, v in trainer.params(state).items():
        if k.startswith(prefix):
            if torch.is_tensor(v):
                out[k] = v.detach().numpy().copy()
            else:
                leaves = jax.tree_util.tree_leaves_with_path(v)
                out.update({k + jax.tree_util.keystr(p): np.asarray(a).copy() for p, a in leaves})
    return out


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_each_player_moves_only_its_own_parameters(name):
    """The critic's step is the same whatever the generator's learning rate (run after it),
    and the generator's step the same whatever the critic's (run after it)."""
    after = {}
    for critic_first in (True, False):
        for scale in (1.0, 100.0):
            lr_c, lr_g = (1e-3, 1e-3 * scale) if critic_first else (1e-3 * scale, 1e-3)
            trainer, x = two_player_trainer(name, lr_c, lr_g, critic_first)
            state = trainer.init(0, x)
            before = {p: _params(trainer, state, p) for p in ("critic", "generator")}
            state, metrics = trainer.step(state, x)
            assert {"loss_critic", "loss_generator"} <= set(metrics)
            now = {p: _params(trainer, state, p) for p in ("critic", "generator")}
            for p in now:  # both players moved
                assert any(not np.array_equal(now[p][k], before[p][k]) for k in now[p])
            after[critic_first, scale] = now
    for first, (kept) in ((True, "critic"), (False, "generator")):
        a, b = after[first, 1.0][kept], after[first, 100.0][kept]
        assert a.keys() == b.keys() and a
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("module", [padv, nadv], ids=["pyro", "numpyro"])
def test_bad_options_are_refused_in_one_line(module):
    crit = (pnets.MLP if module is padv else nnets.MLP)((D, 4, 1))
    for kwargs, match in (
        ({"loss": "wgan"}, "unknown adversarial loss 'wgan'"),
        ({"n_critic": 0}, "n_critic must be an integer >= 1"),
        ({"n_critic": 2.5}, "n_critic must be an integer >= 1"),
        ({"gradient_penalty": -1.0}, "gradient_penalty must be a finite number >= 0"),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            module.Adversarial(crit, **kwargs)
        assert "\n" not in str(err.value)
    assert module.Adversarial(crit, loss="wgan-gp").gradient_penalty == 10.0
    assert module.Adversarial(crit).gradient_penalty == 0.0


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_bad_critics_and_generators_are_refused_in_one_line(float64, name):
    x, z = batch()
    wide_p, wide_n = pair_of_nets((D, 4, 2), seed=0)  # two scores per example
    crit_p, crit_n = pair_of_nets((D, 4, 1), seed=0)
    gen_p, gen_n = pair_of_nets((Z, 4, D), seed=0)
    short_p, short_n = pair_of_nets((Z, 4, D - 1), seed=0)  # samples of the wrong shape
    pm, nm, guide = generators(gen_p, gen_n)
    pm_short, nm_short, _ = generators(short_p, short_n)

    def call(critic, model, **kwargs):
        if name == "pyro":
            objective = padv.Adversarial(critic, **kwargs)
            return objective(model, guide, torch.as_tensor(x), z=torch.as_tensor(z))
        objective = nadv.Adversarial(critic, **kwargs)
        key = jax.random.PRNGKey(0)
        with numpyro.handlers.seed(rng_seed=0):
            return objective(key, model, guide, jnp.asarray(x), z=jnp.asarray(z))

    p = name == "pyro"
    cases = (
        (ConfigError, "one score per example", (wide_p if p else wide_n, pm if p else nm), {}),
        (DataError, "samples at site 'x' have shape", (crit_p if p else crit_n,
                                                      pm_short if p else nm_short), {}),
        (ConfigError, "model has no site 'x_gen'", (crit_p if p else crit_n, pm if p else nm),
         {"site": "x_gen"}),
    )  # fmt: skip
    for error, match, args, kwargs in cases:
        with pytest.raises(error, match=match) as err:
            call(*args, **kwargs)
        assert "\n" not in str(err.value)


def test_the_players_groups_split_every_parameter():
    from ppgen.inference.optim import Group, assign_params

    sites = ["critic$$$layers.0.weight", "generator$$$layers.0.weight", "my_decoder_w"]
    critic, generator = adversarial_groups(n_critic=5)
    assert critic.updates == 5 and generator.updates == 1
    owned = assign_params(sites, [critic, generator])
    assert owned == {"critic": (sites[0],), "generator": tuple(sites[1:])}
    assert [g.name for g in adversarial_groups(critic_first=False)] == ["generator", "critic"]
    with pytest.raises(ConfigError, match="n_critic must be an integer >= 1"):
        adversarial_groups(n_critic=0)
    with pytest.raises(ConfigError, match="exclude must be glob patterns"):
        Group("generator", exclude=("",))


@pytest.mark.parametrize("loss", ["wgan-gp", "f-js"])
def test_backends_agree_on_a_class_conditional_game(float64, loss):
    """cGAN: ppgen's conditional generator (``y`` observed) and critic ``D(x, y)`` with the
    same weights and the same ``z`` give the same losses on both backends, and the labels
    reach the critic (other labels, other losses)."""
    import ppgen.models.numpyro.gan as gan_n
    import ppgen.models.pyro.gan as gan_p

    gen_p = gan_p.Generator((D,), z_dim=Z, hidden=(8,), num_classes=3, output="identity")
    gen_n = gan_n.Generator((D,), z_dim=Z, hidden=(8,), num_classes=3, output="identity")
    gen_n.set_weights(gen_p.get_weights())
    crit_p = gan_p.MLPCritic(D, hidden=(8,), num_classes=3, seed=1)
    crit_n = nnets.load_net_weights(gan_n.MLPCritic(D, hidden=(8,), num_classes=3),
                                    pnets.net_weights(crit_p))  # fmt: skip
    x, z = batch()
    y = np.arange(B) % 3
    options = {"loss": loss, "gradient_penalty": 0.0, "conditions": ("y",)}

    def both(labels):
        model_p = pyro.poutine.condition(gen_p.model, data={"z": torch.as_tensor(z)})
        out_p = padv.Adversarial(crit_p, **options)(
            model_p, gen_p.guide, torch.as_tensor(x), torch.as_tensor(labels)
        )
        model_n = numpyro.handlers.condition(gen_n.model, data={"z": jnp.asarray(z)})
        with numpyro.handlers.seed(rng_seed=0):
            out_n = nadv.Adversarial(crit_n, **options)(
                jax.random.PRNGKey(0), model_n, gen_n.guide, jnp.asarray(x), jnp.asarray(labels)
            )
        for player in ("critic", "generator"):
            np.testing.assert_allclose(out_p[player].item(), float(out_n[player]), rtol=1e-10)
        return out_p["critic"].item()

    assert both(y) != pytest.approx(both((y + 1) % 3), rel=1e-6)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_flow_gan_adds_lambda_times_the_exact_nll(name):
    """Flow-GAN (Grover et al. 2018) on ppgen's flow density: the generator's loss is the
    adversarial one plus lambda times the exact NLL (the ELBO of a model without latents),
    the flow's samples drawn by its reparameterised sampler; the critic's loss is unchanged."""
    models = __import__(f"ppgen.models.{name}", fromlist=["build_flow"])
    inference = __import__(f"ppgen.inference.{name}", fromlist=["FlowGAN"])
    nets = pnets if name == "pyro" else nnets
    density = models.FlowDensity((2,), models.build_flow("realnvp", (2,), layers=2, hidden=(8,)))
    critic = nets.MLP((2, 8, 1), seed=3)
    x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    flowgan = inference.FlowGAN(critic, loss="hinge", weight=0.5)
    adversarial = inference.Adversarial(critic, loss="hinge")
    if name == "pyro":
        xt = torch.as_tensor(x)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            out = flowgan(density.model, density.guide, xt)
            torch.manual_seed(1)
            adv = adversarial(density.model, density.guide, xt)
        nll = inference.ELBO()(density.model, density.guide, xt)
        out, adv, nll = {k: v.item() for k, v in out.items()}, {
            k: v.item() for k, v in adv.items()}, nll.item()  # fmt: skip
    else:
        key_adv, key_nll = jax.random.split(jax.random.PRNGKey(1))
        with numpyro.handlers.seed(rng_seed=0):
            out = flowgan(jax.random.PRNGKey(1), density.model, density.guide, jnp.asarray(x))
            adv = adversarial(key_adv, density.model, density.guide, jnp.asarray(x))
            nll = inference.ELBO()(key_nll, density.model, density.guide, jnp.asarray(x))
        out, adv, nll = {k: float(v) for k, v in out.items()}, {
            k: float(v) for k, v in adv.items()}, float(nll)  # fmt: skip
    exact = -np.asarray(
        inference.compute(density.log_prob, x) if name == "numpyro" else
        density.log_prob(torch.as_tensor(x)).detach().numpy()
    ).sum()  # fmt: skip
    assert nll == pytest.approx(exact, rel=1e-4)
    assert out["critic"] == pytest.approx(adv["critic"], rel=1e-6)
    assert out["generator"] == pytest.approx(adv["generator"] + 0.5 * nll, rel=1e-6)
    with pytest.raises(ConfigError, match="likelihood weight must be a finite number >= 0"):
        inference.FlowGAN(critic, weight=-1.0)


def test_review_fixes_labels_players_and_critics(float64):
    """From the fresh-clone review: labels out of range anywhere in the data are refused
    once, before training; a two-player objective without groups, and a critic of (x, y)
    without conditions, say what to do."""
    from ppgen.data.schedules import Minibatches
    from ppgen.inference.pyro import Trainer

    x = np.zeros((50, 2), np.float32)
    y = np.arange(50) % 3
    for bad, match in ((np.where(np.arange(50) == 49, 3, y), "some are 3"),
                       (np.where(np.arange(50) == 49, -1, y), "negative"),
                       (y + 0.5, "not whole numbers")):  # fmt: skip
        with pytest.raises(DataError, match=match):
            Minibatches(labels=(1,), num_classes=3).arrays((x, bad), 10)
    import ppgen.models.pyro.gan as gan_p

    gen = gan_p.Generator((2,), hidden=(4,), num_classes=3, output="identity")
    with pytest.raises(DataError, match=r"labels must lie in 0..2, got values in \[0, 5\]"):
        pyro.enable_validation(False)
        try:
            gen.generate(torch.zeros(2, 2), torch.tensor([0, 5]))
        finally:
            pyro.enable_validation(True)
    critic = pnets.MLP((2, 4, 1))
    trainer = Trainer(gen.model, gen.guide, padv.Adversarial(critic), batch_size=10,
                      schedule=Minibatches(labels=(1,), num_classes=3))  # fmt: skip
    with pytest.raises(ConfigError, match=r"groups=objective.groups\(\.\.\.\)"):
        trainer.init(0, (x, y))

    class CriticOfXY(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = pnets.MLP((3, 4, 1))

        def forward(self, x, y):
            return self.net(torch.cat([x, y[:, None].to(x.dtype)], -1))

    gen_p, gen_n = pair_of_nets((Z, 4, D), seed=0)
    pm, _, guide = generators(gen_p, gen_n)
    xb, z = batch()
    with pytest.raises(ConfigError, match=r'conditions=\("y",\)'):
        padv.Adversarial(CriticOfXY())(pm, guide, torch.as_tensor(xb), z=torch.as_tensor(z))
