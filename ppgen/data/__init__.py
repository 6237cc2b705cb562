"""Backend-free data: MNIST, scikit-learn's digits, toy 2-D densities, binarization,
minibatch indices and batch schedules, partial labels and input checks, all in numpy."""

from ppgen.data.batching import epoch_rng, iterate_minibatches, minibatch_indices, seeded_rng
from ppgen.data.binarization import (
    BINARIZE_MODES,
    bernoulli_binarize,
    binarize,
    check_binarize_mode,
)
from ppgen.data.checks import (
    check_images,
    check_input_scale,
    check_training_array,
    check_unit_interval,
)
from ppgen.data.dataset import SPLITS, Dataset, check_split, data_dir
from ppgen.data.digits import DIGITS_SPLIT_SIZES, load_digits
from ppgen.data.labels import (
    MISSING,
    check_labelled,
    check_labels,
    labelled_subset,
    partial_labels,
    semi_supervised_indices,
)
from ppgen.data.mnist import MNIST_MD5, MNIST_URLS, load_mnist, mnist_dir, read_idx
from ppgen.data.registry import DATASETS, IMAGE_DATASETS, load_dataset
from ppgen.data.schedules import LabelledBatches, Minibatches, Schedule
from ppgen.data.toy import TOY_DATASETS, TOY_DENSITIES, TOY_SPLIT_SIZES, load_toy, sample_toy

__all__ = [
    "BINARIZE_MODES",
    "DATASETS",
    "DIGITS_SPLIT_SIZES",
    "IMAGE_DATASETS",
    "MISSING",
    "MNIST_MD5",
    "MNIST_URLS",
    "SPLITS",
    "TOY_DATASETS",
    "TOY_DENSITIES",
    "TOY_SPLIT_SIZES",
    "Dataset",
    "LabelledBatches",
    "Minibatches",
    "Schedule",
    "bernoulli_binarize",
    "binarize",
    "check_binarize_mode",
    "check_images",
    "check_input_scale",
    "check_labelled",
    "check_labels",
    "check_split",
    "check_training_array",
    "check_unit_interval",
    "data_dir",
    "epoch_rng",
    "iterate_minibatches",
    "labelled_subset",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_toy",
    "minibatch_indices",
    "mnist_dir",
    "partial_labels",
    "read_idx",
    "sample_toy",
    "seeded_rng",
    "semi_supervised_indices",
]
