"""NumPyro models: model/guide pairs with Equinox networks (mirrors ``ppgen.models.pyro``)."""

from ppgen.models.numpyro.ar import (
    AutoregressiveDensity,
    AutoregressiveDistribution,
    DiscretizedMixLogistic,
)
from ppgen.models.numpyro.autoregressive import MaskedAutoregressive
from ppgen.models.numpyro.bigan import BiGANModel
from ppgen.models.numpyro.charrnn import CharRNN
from ppgen.models.numpyro.coupling import Additive, Affine, Coupling, RationalQuadraticSpline
from ppgen.models.numpyro.flow import (
    ConditionalFlowDensity,
    Flow,
    FlowDensity,
    build_flow,
    flow_distribution,
    with_logit,
)
from ppgen.models.numpyro.flow_vae import FlowVAE, LatentFlow
from ppgen.models.numpyro.fvsbn import FVSBN
from ppgen.models.numpyro.gan import DCGANCritic, DCGANGenerator, Generator, MLPCritic
from ppgen.models.numpyro.image_flows import (
    ActNorm,
    ConvNet,
    Dequantize,
    FactorOut,
    GlowNet,
    Invertible1x1Conv,
    Logit,
    Squeeze,
    Squeezed,
    glow,
    initialize_flow,
    multiscale_realnvp,
)
from ppgen.models.numpyro.infogan import InfoGenerator
from ppgen.models.numpyro.linear_gaussian import LinearGaussian
from ppgen.models.numpyro.made import MADE
from ppgen.models.numpyro.mixture import GaussianMixture
from ppgen.models.numpyro.nade import NADE
from ppgen.models.numpyro.nets import MLP
from ppgen.models.numpyro.pixelcnn import GatedPixelCNN, PixelCNN
from ppgen.models.numpyro.sbn import SigmoidBeliefNet
from ppgen.models.numpyro.ssvae import SSVAE
from ppgen.models.numpyro.transforms import (
    ConditionalPlanar,
    ConditionalRadial,
    ConditionedPlanar,
    ConditionedRadial,
    DiagonalScaling,
    LULinear,
    Permutation,
    Planar,
    Radial,
    random_permutation,
    reverse_permutation,
)
from ppgen.models.numpyro.vae import VAE, HierarchicalVAE
from ppgen.models.numpyro.wavenet import WaveNet

__all__ = [
    "BiGANModel",
    "DCGANCritic",
    "DCGANGenerator",
    "Generator",
    "InfoGenerator",
    "MLPCritic",
    "AutoregressiveDensity",
    "AutoregressiveDistribution",
    "DiscretizedMixLogistic",
    "ActNorm",
    "ConvNet",
    "Dequantize",
    "FactorOut",
    "GlowNet",
    "Invertible1x1Conv",
    "Logit",
    "Squeeze",
    "Squeezed",
    "glow",
    "initialize_flow",
    "multiscale_realnvp",
    "Additive",
    "Affine",
    "Coupling",
    "RationalQuadraticSpline",
    "MADE",
    "MaskedAutoregressive",
    "MLP",
    "SSVAE",
    "VAE",
    "HierarchicalVAE",
    "LinearGaussian",
    "GaussianMixture",
    "SigmoidBeliefNet",
    "ConditionalFlowDensity",
    "Flow",
    "FlowDensity",
    "build_flow",
    "flow_distribution",
    "with_logit",
    "FlowVAE",
    "LatentFlow",
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionedPlanar",
    "ConditionedRadial",
    "DiagonalScaling",
    "LULinear",
    "Permutation",
    "Planar",
    "Radial",
    "random_permutation",
    "reverse_permutation",
    "FVSBN",
    "NADE",
    "GatedPixelCNN",
    "PixelCNN",
    "WaveNet",
    "CharRNN",
]
