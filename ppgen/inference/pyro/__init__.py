"""Pyro inference for any model/guide pair: objectives, log-likelihoods, training, MCMC."""

from ppgen.inference.pyro.aae import AAE
from ppgen.inference.pyro.adversarial import Adversarial, FlowGAN
from ppgen.inference.pyro.bigan import BiGAN
from ppgen.inference.pyro.discrepancy import MMD, Sinkhorn
from ppgen.inference.pyro.implicit import SampleEvaluator
from ppgen.inference.pyro.infogan import InfoGAN
from ppgen.inference.pyro.interop import compute, draw
from ppgen.inference.pyro.loglik import (
    evaluate_log_likelihood,
    log_marginal_likelihood,
    log_weights,
)
from ppgen.inference.pyro.mcmc import compare_with_guide, mcmc_latents
from ppgen.inference.pyro.noise import DynamicBinarization, InputNoise, UniformNoise
from ppgen.inference.pyro.objectives import ELBO, IWAE
from ppgen.inference.pyro.score import NVIL, VIMCO
from ppgen.inference.pyro.ssvae import (
    ClassifierEvaluator,
    SemiSupervisedELBO,
    label_distribution,
)
from ppgen.inference.pyro.train import Trainer, TrainState

__all__ = [
    "AAE",
    "Adversarial",
    "BiGAN",
    "FlowGAN",
    "InfoGAN",
    "MMD",
    "SampleEvaluator",
    "Sinkhorn",
    "ClassifierEvaluator",
    "DynamicBinarization",
    "ELBO",
    "IWAE",
    "InputNoise",
    "UniformNoise",
    "NVIL",
    "SemiSupervisedELBO",
    "TrainState",
    "VIMCO",
    "Trainer",
    "compare_with_guide",
    "compute",
    "draw",
    "evaluate_log_likelihood",
    "label_distribution",
    "log_marginal_likelihood",
    "log_weights",
    "mcmc_latents",
]
