"""BiGAN / ALI (ppgen.models.{pyro,numpyro}.bigan, ppgen.inference.{pyro,numpyro}.bigan,
ppgen.recipes.bigan): both backends agree on both players' losses and on the joint gradient
penalty with the same weights and noise; the losses equal a hand computation on linear
networks, and the generator's is the critic's with the labels swapped; each player's update
leaves the other's parameters (the encoder's among the generator's) alone; bad input is
refused in one line; ``ppgen train bigan`` trains, evaluates, samples and draws its
reconstructions on a 2-D set."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers as nh
from pyro import poutine

import ppgen.inference.numpyro.bigan as nbig
import ppgen.inference.pyro.bigan as pbig
import ppgen.models.numpyro.bigan as nmod
import ppgen.models.numpyro.gan as ngan
import ppgen.models.pyro.bigan as pmod
import ppgen.models.pyro.gan as pgan
from ppgen import runs
from ppgen.errors import ConfigError, DataError
from ppgen.inference.numpyro.adversarial import critic_loss as n_critic_loss
from ppgen.inference.pyro.adversarial import critic_loss as p_critic_loss
from ppgen.models.numpyro.nets import load_net_weights
from ppgen.models.pyro.nets import net_weights
from ppgen.models.pyro.params import set_weights
from ppgen.recipes.base import backend as get_backend
from tests.cli_helpers import cli, one_line

D, Z, B, N = 3, 2, 16, 64
# float64 on both sides, the same weights and inputs: only the order of summation differs
# (~1e-15), so a wrong sign, pair or scale shows far above this.
RTOL = 1e-9


def models(encoder="deterministic", hidden=(8,), z_dim=Z):
    """The same BiGANModel on both backends (Pyro's weights copied into NumPyro's)."""
    kw = dict(z_dim=z_dim, hidden=hidden, encoder=encoder, output="identity", seed=0)
    mp, mn = pmod.BiGANModel((D,), **kw), nmod.BiGANModel((D,), **kw)
    mn.set_weights(mp.get_weights())
    return mp, mn


def critics(hidden=(8,), z_dim=Z):
    """The same joint critic D(x, z) on both backends."""
    cp = pgan.MLPCritic(D, hidden=hidden, z_dim=z_dim, seed=1)
    cn = load_net_weights(ngan.MLPCritic(D, hidden=hidden, z_dim=z_dim), net_weights(cp))
    return cp, cn


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, D)) + 1.0, rng.normal(size=(B, Z))


def run_both(mp, mn, cp, cn, x, z, **options):
    """Each backend's ``BiGAN(**options)`` losses as floats, the model's ``z`` fixed."""
    model_p = poutine.condition(mp.model, data={"z": torch.as_tensor(z)})
    out_p = pbig.BiGAN(cp, **options)(model_p, mp.guide, torch.as_tensor(x), num_data=N)
    model_n = nh.condition(mn.model, data={"z": jnp.asarray(z)})
    with nh.seed(rng_seed=0):  # the critic's eqx_module outside a trainer
        out_n = nbig.BiGAN(cn, **options)(
            jax.random.PRNGKey(0), model_n, mn.guide, jnp.asarray(x), num_data=N
        )
    return {k: v.item() for k, v in out_p.items()}, {k: float(v) for k, v in out_n.items()}


@pytest.mark.parametrize("loss", ["nonsaturating", "minimax", "lsgan", "hinge", "f-rkl"])
def test_backends_agree_on_both_players(float64, loss):
    mp, mn = models()
    cp, cn = critics()
    x, z = batch()
    out_p, out_n = run_both(mp, mn, cp, cn, x, z, loss=loss)
    assert set(out_p) == set(out_n) == {"critic", "generator"}
    for player in out_p:
        np.testing.assert_allclose(out_p[player], out_n[player], rtol=RTOL)
    for kind in ("deterministic", "gaussian"):  # the encoders, and the generator on codes
        mp, mn = models(kind)
        loc_p, scale_p = mp._code(mp.encoder, torch.as_tensor(x))
        loc_n, scale_n = mn._code(mn.encoder, jnp.asarray(x))
        np.testing.assert_allclose(loc_p.detach().numpy(), loc_n, rtol=RTOL)
        np.testing.assert_allclose(scale_p.detach().numpy(), scale_n, rtol=RTOL)
        rec_p = mp.reconstruct(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(rec_p, mn.reconstruct(jnp.asarray(x)), rtol=RTOL)
        assert rec_p.shape == (B, D) and (kind == "gaussian") == bool(np.all(scale_n > 0))


def test_joint_gradient_penalty_agrees_and_is_the_gradient_over_x_and_z(float64):
    """The penalty on ``[x, z]`` interpolates both halves and differentiates through both:
    ``(|grad_(x, z) D(x_hat, z_hat)| - 1)^2`` with the gradient by central differences."""
    cp, cn = critics(hidden=(8, 8))
    rng = np.random.default_rng(3)
    x, x_fake = rng.normal(size=(2, B, D))
    z_real, z_fake = rng.normal(size=(2, B, Z))
    u = rng.random(B)
    p = pbig._joint_penalty(cp, *map(torch.as_tensor, (x, z_real, x_fake, z_fake, u)))
    n = nbig._joint_penalty(cn, *map(jnp.asarray, (x, z_real, x_fake, z_fake, u)))
    np.testing.assert_allclose(p.detach().numpy(), n, rtol=RTOL)
    xz_hat = u[:, None] * np.hstack([x, z_real]) + (1 - u[:, None]) * np.hstack([x_fake, z_fake])

    def score(a):
        return np.asarray(cn(jnp.asarray(a[:, :D]), jnp.asarray(a[:, D:])))

    h = 1e-6
    grad = np.stack(
        [(score(xz_hat + h * e) - score(xz_hat - h * e)) / (2 * h) for e in np.eye(D + Z)], 1
    )
    np.testing.assert_allclose(n, (np.linalg.norm(grad, axis=1) - 1) ** 2, rtol=1e-6, atol=1e-9)
    # WGAN-GP's critic loss is the Wasserstein term plus lambda times that penalty (one
    # backend's noise: the difference to the run without penalty is lambda * penalty >= 0)
    mp, mn = models()
    xb, zb = batch()
    plain, _ = run_both(mp, mn, cp, cn, xb, zb, loss="wgan-gp", gradient_penalty=0.0)
    with_gp, _ = run_both(mp, mn, cp, cn, xb, zb, loss="wgan-gp")
    assert with_gp["critic"] > plain["critic"]
    assert with_gp["generator"] == pytest.approx(plain["generator"], rel=1e-12)


def softplus(v):
    return np.logaddexp(0.0, v)


def test_losses_equal_a_hand_computation_on_linear_networks(float64):
    """``G(z) = A z + b``, ``E(x) = C x + d``, ``D(x, z) = w.x + v.z + c`` (networks without
    hidden layers): the players' losses are ``N`` times the batch means of the table's terms,
    the generator's non-saturating loss is ``softplus(-D(fake)) + softplus(D(real))`` (the
    critic's loss with real and fake swapped), and the minimax and Wasserstein games are
    zero-sum."""
    rng = np.random.default_rng(4)
    A, b = rng.normal(size=(D, Z)), rng.normal(size=D)  # the generator's
    C, d = rng.normal(size=(Z, D)), rng.normal(size=Z)  # the encoder's
    w, c = rng.normal(size=D + Z), rng.normal()
    weights = {"generator.layers.0.weight": A, "generator.layers.0.bias": b,
               "encoder.layers.0.weight": C, "encoder.layers.0.bias": d}  # fmt: skip
    critic_weights = {"layers.0.weight": w[None], "layers.0.bias": np.array([c])}
    mp, mn = models(hidden=())
    mp.set_weights(weights)
    mn.set_weights(weights)
    cp, cn = critics(hidden=())
    set_weights(cp, critic_weights)
    cn = load_net_weights(cn, critic_weights)
    x, z = batch(5)
    real = np.hstack([x, x @ C.T + d]) @ w + c  # D(x, E(x))
    fake = np.hstack([z @ A.T + b, z]) @ w + c  # D(G(z), z)
    expect = {
        "nonsaturating": (softplus(-real) + softplus(fake), softplus(-fake) + softplus(real)),
        "lsgan": (((real - 1) ** 2 + fake**2) / 2, ((fake - 1) ** 2 + real**2) / 2),
        "hinge": (np.maximum(0, 1 - real) + np.maximum(0, 1 + fake), real - fake),
    }
    for loss, (critic_terms, generator_terms) in expect.items():
        for out in run_both(mp, mn, cp, cn, x, z, loss=loss):  # Pyro's, NumPyro's
            assert out["critic"] == pytest.approx(N * critic_terms.mean(), rel=1e-12), loss
            assert out["generator"] == pytest.approx(N * generator_terms.mean(), rel=1e-12)
    # the swapped-label identity, through each library's own critic_loss
    out_p, out_n = run_both(mp, mn, cp, cn, x, z)
    swapped_p = p_critic_loss("nonsaturating", torch.as_tensor(fake), torch.as_tensor(real))
    swapped_n = n_critic_loss("nonsaturating", jnp.asarray(fake), jnp.asarray(real))
    assert out_p["generator"] == pytest.approx(N * swapped_p.mean().item(), rel=1e-12)
    assert out_n["generator"] == pytest.approx(N * float(swapped_n.mean()), rel=1e-12)
    for loss in ("minimax", "wgan-gp"):
        for out in run_both(mp, mn, cp, cn, x, z, loss=loss, gradient_penalty=0.0):
            assert out["generator"] == pytest.approx(-out["critic"], rel=1e-12), loss


def _trainer(name, lr_critic, lr_generator, critic_first):
    backend = get_backend(name)
    model = backend.models.BiGANModel((D,), z_dim=Z, hidden=(8,), output="identity", seed=0)
    critic = backend.models.MLPCritic(D, hidden=(8,), z_dim=Z, seed=1)
    objective = backend.inference.BiGAN(critic)
    groups = objective.groups(lr_critic=lr_critic, lr_generator=lr_generator,
                              critic_first=critic_first)  # fmt: skip
    trainer = backend.inference.Trainer(model.model, model.guide, objective, groups=groups,
                                        batch_size=B)  # fmt: skip
    return trainer


def _params(trainer, state, prefix):
    """The params of the sites named ``prefix...`` as numpy copies, one entry per array."""
    out = {}
    for k, v in trainer.params(state).items():
        if k.startswith(prefix):
            if torch.is_tensor(v):
                out[k] = v.detach().numpy().copy()
            else:
                leaves = jax.tree_util.tree_leaves_with_path(v)
                out.update({k + jax.tree_util.keystr(q): np.asarray(a).copy() for q, a in leaves})
    return out


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_each_player_moves_only_its_own_parameters(name):
    """The critic's weights after a step are the same whatever the generator's learning
    rate (its update run after the critic's), and the generator's and the encoder's the
    same whatever the critic's (run after theirs); every player, the encoder too, moves."""
    x = batch()[0].astype(np.float32)
    prefixes = ("critic", "generator", "encoder")
    after = {}
    for critic_first in (True, False):
        for scale in (1.0, 100.0):
            lrs = (1e-3, 1e-3 * scale) if critic_first else (1e-3 * scale, 1e-3)
            trainer = _trainer(name, *lrs, critic_first)
            state = trainer.init(0, x)
            before = {p: _params(trainer, state, p) for p in prefixes}
            state, metrics = trainer.step(state, x)
            assert {"loss_critic", "loss_generator"} <= set(metrics)
            now = {p: _params(trainer, state, p) for p in prefixes}
            for p in prefixes:
                assert now[p] and any(not np.array_equal(now[p][k], before[p][k]) for k in now[p])
            after[critic_first, scale] = now
    for critic_first, kept in ((True, ("critic",)), (False, ("generator", "encoder"))):
        for p in kept:
            a, b = after[critic_first, 1.0][p], after[critic_first, 100.0][p]
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_bad_input_is_refused_in_one_line(name):
    p = name == "pyro"
    mod, big = (pmod, pbig) if p else (nmod, nbig)
    gan = pgan if p else ngan
    x = batch()[0]
    model = mod.BiGANModel((D,), z_dim=Z, hidden=(4,), output="identity")
    critic = gan.MLPCritic(D, hidden=(4,), z_dim=Z)
    other = mod.BiGANModel((D,), z_dim=Z + 1, hidden=(4,), output="identity")
    plain = gan.Generator((D,), z_dim=Z, hidden=(4,), output="identity")

    def call(model_fn, guide_fn, critic=critic, **options):
        objective = big.BiGAN(critic, **options)
        if p:
            return objective(model_fn, guide_fn, torch.as_tensor(x, dtype=torch.float32))
        with nh.seed(rng_seed=0):
            return objective(jax.random.PRNGKey(0), model_fn, guide_fn, jnp.asarray(x))

    cases = [
        (ConfigError, "the guide has no latent site 'z'", (model.model, plain.guide), {}),
        (ConfigError, "the model has no site 'w'", (model.model, model.guide), {"latent": "w"}),
        (DataError, "the guide's 'z' has shape", (model.model, other.guide), {}),
        (ConfigError, r"called as critic\(x\), got 2 inputs", (model.model, model.guide),
         {"critic": gan.MLPCritic(D, hidden=(4,))}),
        (ConfigError, "player must be one of", (model.model, model.guide), {"player": "encoder"}),
    ]  # fmt: skip
    for error, match, args, options in cases:
        player = options.pop("player", None)
        with pytest.raises(error, match=match) as err:
            if player is None:
                call(*args, **options)
            elif p:
                big.BiGAN(critic)(*args, torch.as_tensor(x, dtype=torch.float32), player=player)
            else:
                with nh.seed(rng_seed=0):
                    big.BiGAN(critic)(jax.random.PRNGKey(0), *args, jnp.asarray(x), player=player)
        assert "\n" not in str(err.value)
    for make, match in (
        (lambda: big.BiGAN(critic, loss="wgan"), "unknown adversarial loss 'wgan'"),
        (lambda: big.BiGAN(critic, n_critic=0), "n_critic must be an integer >= 1"),
        (lambda: big.BiGAN(critic, gradient_penalty=-1.0), "gradient_penalty must be"),
        (lambda: mod.BiGANModel((D,), encoder="vae"), "unknown encoder 'vae'"),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            make()
        assert "\n" not in str(err.value)
    assert big.BiGAN(critic, loss="wgan-gp").gradient_penalty == 10.0


@pytest.mark.parametrize(
    ("backend_name", "flags"),
    [("pyro", ("--loss", "wgan-gp", "--n-critic", "2")), ("numpyro", ("--encoder", "gaussian"))],
)
def test_recipe_trains_evaluates_samples_and_draws_reconstructions(tmp_path, backend_name, flags):
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "bigan", *flags, "--backend", backend_name, "--dataset", "grid25",
        "--hidden", "16,16", "--epochs", "2", "--batch-size", "1000", "--quiet", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    for picture in ("samples_2d.png", "curves.png", "reconstructions.png"):
        assert (out / picture).stat().st_size > 0, picture
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss_critic", "loss_generator", "valid_modes"} <= set(record)
    code, stdout, err = cli("eval", out, "--json", "--limit", "400")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["samples"] == result["reconstructed"] == 400
    assert result["reconstruction_mse"] > 0 and 0 <= result["reconstruction_same_mode"] <= 1
    run = runs.load_trained(out)
    test = run.data.test_x[:5]
    rec = np.asarray(run.backend.inference.compute(run.model.reconstruct, test))
    codes = np.asarray(run.backend.inference.compute(run.model.encode, test))
    assert rec.shape == (5, 2) and codes.shape == (5, 2) and np.all(np.isfinite(rec))
    alone = runs.load_trained(out, data=False)  # sampling needs no data
    np.testing.assert_array_equal(runs.sample(run, 7, seed=3), runs.sample(alone, 7, seed=3))
    line = one_line(cli("train", "bigan", "--encoder", "vae", "--out", tmp_path / "bad"))
    assert "invalid choice: 'vae'" in line
