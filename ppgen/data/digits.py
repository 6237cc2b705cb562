"""The 8x8 handwritten digits bundled with scikit-learn (UCI optical digits test set).

1,797 images with 17 grey levels (0..16), small enough for tests and quick experiments
that need no downloaded files. The split is a fixed permutation, independent of any user
seed, so ``test`` is the same set everywhere:

=============  ========
split          examples
=============  ========
``train``      1,297
``valid``      250
``train_full`` 1,547 (``train`` then ``valid``)
``test``       250
=============  ========
"""

import zlib

import numpy as np

from ppgen.data.batching import seeded_rng
from ppgen.data.binarization import bernoulli_binarize, check_binarize_mode
from ppgen.data.dataset import Dataset, check_split

__all__ = ["DIGITS_SPLIT_SIZES", "load_digits"]

DIGITS_SPLIT_SIZES = {"train": 1297, "valid": 250, "train_full": 1547, "test": 250}

_SPLIT_SEED = 20_240_101  # fixes the permutation that defines the splits; never change it
_N_TRAIN, _N_VALID = DIGITS_SPLIT_SIZES["train"], DIGITS_SPLIT_SIZES["valid"]
_SPLIT_ROWS = {
    "train": slice(0, _N_TRAIN),
    "valid": slice(_N_TRAIN, _N_TRAIN + _N_VALID),
    "train_full": slice(0, _N_TRAIN + _N_VALID),
    "test": slice(_N_TRAIN + _N_VALID, None),
}


def load_digits(split: str = "train", *, binarize: str = "none", seed: int = 0) -> Dataset:
    """Load a split of scikit-learn's 8x8 digits as flat images in [0, 1] (grey level / 16).

    Args:
        split: ``"train"``, ``"valid"``, ``"train_full"`` or ``"test"`` (sizes in
            `DIGITS_SPLIT_SIZES`).
        binarize: ``"none"`` or ``"dynamic"`` for grey values (dynamic binarization is
            drawn per epoch by the trainers), ``"static"`` for one fixed Bernoulli draw made
            over all 1,797 images with ``seed`` before splitting, so an example is
            binarized the same way in every split.
        seed: seed of the static binarization.

    Returns:
        A `Dataset` named ``"digits-<split>"`` with ``x`` of shape ``(N, 64)``.

    Raises:
        ConfigError: for an unknown ``split`` or ``binarize`` mode.
    """
    import sklearn.datasets  # deferred: importing scikit-learn takes about a second

    check_split(split)
    check_binarize_mode(binarize)
    images, labels = sklearn.datasets.load_digits(return_X_y=True)  # (1797, 64) in 0..16
    x = (images / 16).astype(np.float32)
    if binarize == "static":
        x = bernoulli_binarize(x, seeded_rng(seed, zlib.crc32(b"sklearn-digits")))
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(x))[_SPLIT_ROWS[split]]
    return Dataset(
        x=x[order],
        y=labels[order].astype(np.int64),
        image_shape=(8, 8),
        name=f"digits-{split}",
        num_classes=10,
    )
