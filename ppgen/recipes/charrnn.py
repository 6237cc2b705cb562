"""The char-RNN family: ``charrnn``, an LSTM over characters (Karpathy 2015) fitted by exact
maximum likelihood.

``ppgen train charrnn --dataset shakespeare`` fits ``AutoregressiveDensity(CharRNN,
Categorical(V))`` (``ppgen.models.{pyro,numpyro}``) with the ordinary trainer and the ELBO,
which for a model without latent sites is the exact log-likelihood, by Adam at 5e-3 (batch
64) decayed on a cosine over the run's epochs, unless ``--lr`` or ``--lr-schedule`` say
otherwise: measured against Karpathy's 2e-3 on this network, both on a cosine
(``benchmarks/charrnn_lr.py`` and ``charrnn.py``, ``docs/RESULTS.md``), 5e-3 passes in 6
epochs the validation figure 2e-3 reaches in 26, and 1e-2 stalls; over 14 epochs it
reaches 1.541-1.547 nats per character on Tiny Shakespeare's validation text (two seeds),
where longer runs overfit. The rate was not measured at a constant schedule, hence the
cosine default. It trains on the
training text (nanoGPT's split: the first 90% of Tiny Shakespeare) cut into consecutive
windows of ``--seq-len`` characters, shuffled every epoch; each window is one example whose
first character is read from the LSTM's learned start input (no earlier text), as
``CharRNN`` models it. The vocabulary (the sorted characters of the whole text, nanoGPT's)
is stored in the run's ``config.json`` (option ``vocabulary``), so sampling and scoring a new
text use the trained one.

``ppgen eval`` scores the whole test text (for Tiny Shakespeare nanoGPT's validation text,
the last 10%) in consecutive windows of ``--seq-len`` characters plus the shorter tail, each
window scored from the LSTM's start state exactly as in training (its first character has
no context), and reports the exact NLL in nats and bits per character (``nats / ln 2``).
``ppgen sample RUN`` writes (and prints) a text file; ``--temperature`` divides the logits,
``--prompt`` primes every sample with a text, ``--length`` characters follow it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.checkpoint import write_atomic
from ppgen.errors import ConfigError, DataError
from ppgen.models.charrnn import check_temperature
from ppgen.recipes.base import (
    STAND_IN_ROWS,
    Backend,
    Built,
    FitData,
    Options,
    Recipe,
    exact_likelihood,
    non_negative_int,
    option,
    positive,
    positive_int,
    stand_in,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "MAX_SAMPLE_LENGTH",
    "CharRNNOptions",
    "CharRNNRecipe",
    "CharRNNSampleOptions",
    "ar_heads",
    "open_uniform",
    "score_text",
]

MAX_SAMPLE_LENGTH = 100_000
"""The most characters ``ppgen sample`` draws per sample (prompt included)."""


def ar_heads(backend: Backend) -> ModuleType:
    """The backend's ``ppgen.models.<backend>.ar`` module: the heads (``Categorical``, ...)
    of the autoregressive family, which its package does not export by name."""
    return importlib.import_module(f"{backend.models.__name__}.ar")


def open_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform noise in the open interval (0, 1), float32 ``shape``: what every head of
    ``ppgen.models.*.ar`` draws from (Gumbel and logistic draws need ``0 < u < 1``), made
    in numpy so both backends draw the same samples for the same seed."""
    u = rng.random(shape, dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    return np.clip(u, tiny, np.float32(1.0) - np.finfo(np.float32).epsneg)


@dataclass(frozen=True)
class CharRNNOptions(Options):
    """Settings of ``charrnn`` (defaults: two LSTM layers of 256 on one-hot characters,
    windows of 128)."""

    hidden: int = option(256, "LSTM units per layer", parse=positive_int, metavar="H")
    layers: int = option(2, "stacked LSTM layers", parse=positive_int, metavar="N")
    embedding: int = option(
        0,
        "width of a learned character embedding (0: one-hot inputs, Karpathy's char-rnn)",
        parse=non_negative_int,
        metavar="E",
    )
    seq_len: int = option(
        128, "characters per training and scoring window", parse=positive_int, metavar="T"
    )
    max_chars: int = option(
        0,
        "use only the first N characters of every split (0: all; quick runs and tests)",
        parse=non_negative_int,
        metavar="N",
    )
    vocabulary: str | None = option(
        None, "the characters of the trained model, in token order (stored)", cli=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 2:
            raise ConfigError(
                f"--seq-len must be at least 2 (a window scores its characters), got {self.seq_len}"
            )
        if self.max_chars and self.max_chars < self.seq_len:
            raise ConfigError(
                f"--max-chars {self.max_chars} is shorter than one window (--seq-len "
                f"{self.seq_len}); raise it or shorten the windows"
            )
        if self.vocabulary is not None:
            try:
                ppdata.Vocabulary(tuple(self.vocabulary))
            except DataError as e:
                raise ConfigError(f"the stored vocabulary is not usable: {e}") from None


@dataclass(frozen=True)
class CharRNNSampleOptions(Options):
    """Settings of ``ppgen sample`` for a ``charrnn`` run."""

    temperature: float = option(
        1.0,
        "divide the logits by T > 0 (below 1: more likely characters; above: more varied)",
        parse=positive(float),
        metavar="T",
    )
    prompt: str = option(
        "", "priming text every sample starts with (default: none)", metavar="TEXT"
    )
    length: int = option(500, "characters drawn after the prompt", parse=positive_int, metavar="N")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            check_temperature(self.temperature)
        except ConfigError as err:
            raise ConfigError(f"--{err}") from None
        if len(self.prompt) + self.length > MAX_SAMPLE_LENGTH:
            raise ConfigError(
                f"a sample of {len(self.prompt)} prompt characters and {self.length} drawn ones is "
                f"longer than the {MAX_SAMPLE_LENGTH} ppgen draws; lower --length"
            )


def _vocabulary(config: RunConfig) -> ppdata.Vocabulary:
    """The run's vocabulary: the stored one, else the dataset's."""
    if config.options.vocabulary is not None:
        return ppdata.Vocabulary(tuple(config.options.vocabulary))
    return ppdata.load_text(config.dataset, "test").vocabulary


def _ids(config: RunConfig, split: str) -> np.ndarray:
    """The token ids of ``split`` in the run's vocabulary (``--max-chars`` applied).

    Raises:
        DataError: The text has characters outside the run's stored vocabulary.
    """
    corpus = ppdata.load_text(config.dataset, split)
    vocabulary = _vocabulary(config)
    ids = corpus.ids
    if corpus.vocabulary != vocabulary:
        try:
            ids = vocabulary.encode(corpus.text)
        except DataError as e:
            raise DataError(f"{config.dataset} {split}: {e}") from None
    return ids[: config.options.max_chars] if config.options.max_chars else ids


def _windows(ids: np.ndarray, length: int, what: str) -> np.ndarray:
    """Consecutive non-overlapping windows ``(len // length, length)`` (the tail dropped).

    Raises:
        ConfigError: The text is shorter than one window.
    """
    if len(ids) < length:
        raise ConfigError(
            f"the {what} text has {len(ids)} characters, fewer than one window of --seq-len "
            f"{length}; shorten the windows"
        )
    n = len(ids) // length
    return np.ascontiguousarray(ids[: n * length].reshape(n, length))


def score_text(run: Run, text: str | np.ndarray, batch_size: int = 100) -> dict[str, Any]:
    """The exact NLL of a text under a trained ``charrnn`` run, in the run's vocabulary.

    The text is scored in consecutive windows of the run's ``seq_len`` characters and the
    shorter tail, each from the LSTM's start state (as in training: a window's first
    character has no context), every window by the model's ``log_prob``.

    Args:
        run: A trained ``charrnn`` run.
        text: A string, or its token ids ``(N,)`` in the run's vocabulary.
        batch_size: Windows per call of the model.

    Returns:
        ``{"nats": total, "nats_per_char", "bits_per_char", "chars", "windows"}``.

    Raises:
        DataError: The text has characters outside the run's vocabulary (naming them), or
            is empty.
    """
    if isinstance(text, str):
        if not text:
            raise DataError("the text to score is empty")
        try:
            ids = _vocabulary(run.config).encode(text)
        except DataError as e:
            raise DataError(f"the text to score: {e}") from None
    else:
        ids = np.asarray(text)
    length = run.config.options.seq_len
    n = len(ids) // length
    windows = ids[: n * length].reshape(n, length)
    compute = run.backend.inference.compute
    nats = 0.0
    for i in range(0, n, batch_size):
        rows = np.array(windows[i : i + batch_size])  # a writable copy
        nats -= float(np.sum(np.asarray(compute(run.model.log_prob, rows), dtype=np.float64)))
    tail = ids[n * length :]
    if len(tail):
        nats -= float(np.sum(compute(run.model.log_prob, np.array(tail[None]))))
    chars = len(ids)
    return {
        "nats": nats,
        "nats_per_char": nats / chars,
        "bits_per_char": nats / chars / math.log(2),
        "chars": chars,
        "windows": n + bool(len(tail)),
    }


class CharRNNRecipe(Recipe):
    """``charrnn``: evaluated by the exact test NLL in nats and bits per character."""

    name = "charrnn"
    help = "char-RNN: an LSTM over characters (Karpathy 2015), exact likelihood"
    description = __doc__.split("\n\n")[0]
    options = CharRNNOptions
    defaults = {"lr": 5e-3, "lr_schedule": "cosine", "dataset": "shakespeare", "batch_size": 64}
    datasets = tuple(ppdata.TEXT_DATASETS)
    eval_flags = ("limit", "batch_size")
    eval_report = "the exact test NLL in nats and bits per character"
    sample_suffix = ".txt"
    sample_options = CharRNNSampleOptions
    sample_count = 3

    def check_sample_count(self, n: int, options: Options | None = None) -> None:
        """Refuse more than ``MAX_SAMPLE_LENGTH`` characters in all (``n`` samples of the
        prompt and ``--length`` drawn characters) in one draw, before it starts.

        Raises:
            ConfigError: ``n`` is not a positive integer, or the samples are too long together.
        """
        super().check_sample_count(n, options)
        o = options or CharRNNSampleOptions()
        total = n * (len(o.prompt) + o.length)
        if total > MAX_SAMPLE_LENGTH:
            raise ConfigError(
                f"{n} samples of {len(o.prompt) + o.length} characters are {total} in all, "
                f"more than the {MAX_SAMPLE_LENGTH} ppgen draws at once; ask for fewer or "
                "shorter samples"
            )

    def loss_unit(self, config: RunConfig) -> str:
        """A training example is one window of ``--seq-len`` characters."""
        return f"nats per {config.options.seq_len}-character window"

    def prepare(self, config: RunConfig) -> FitData:
        length = config.options.seq_len
        train = _windows(_ids(config, config.train_split), length, config.train_split)
        valid = None
        if config.train_split == "train":
            valid = _windows(_ids(config, "valid"), length, "valid")
        test = _windows(_ids(config, "test"), length, "test")
        return FitData(train=train, valid=valid, test=test, num_data=len(train))

    def shapes(self, config: RunConfig) -> FitData | None:
        """Placeholder windows ``(2, seq_len)`` (int32 token ids, as the training windows);
        the model's size is the stored vocabulary's (``None`` for a run whose config.json
        has none: its vocabulary is the text's)."""
        if config.options.vocabulary is None:
            return None
        return stand_in(config, np.zeros((STAND_IN_ROWS, config.options.seq_len), np.int32))

    def settle(self, config: RunConfig, data: FitData) -> RunConfig:
        """The config with the vocabulary stored (``options.vocabulary``)."""
        if config.options.vocabulary is not None:
            return config
        chars = "".join(_vocabulary(config).chars)
        return dataclasses.replace(
            config, options=dataclasses.replace(config.options, vocabulary=chars)
        )

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        o = config.options
        size = _vocabulary(config).size
        models = backend.models
        net = models.CharRNN(size, o.hidden, o.layers, o.embedding or None, seed=config.seed)
        model = models.AutoregressiveDensity(net, ar_heads(backend).Categorical(size))
        return exact_likelihood(config, data, backend, model)

    def evaluate(
        self,
        run: Run,
        *,
        limit: int | None = None,
        batch_size: int = 100,
        progress: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        """Exact NLL of the whole test text (:func:`score_text`); ``limit``: its first
        ``limit`` windows only."""
        t0 = time.perf_counter()
        ids = _ids(run.config, "test")
        if limit is not None:
            ids = ids[: limit * run.config.options.seq_len]
        score = score_text(run, ids, batch_size)
        return {
            "test_nats_per_char": score["nats_per_char"],
            "test_bits_per_char": score["bits_per_char"],
            "test_nll": score["nats"],
            "chars": score["chars"],
            "windows": score["windows"],
            "window": run.config.options.seq_len,
            "exact": True,
            "epoch": run.epoch + 1,
            "seconds": time.perf_counter() - t0,
        }

    def summary(self, out: dict[str, Any]) -> str:
        return (
            f"exact test NLL {out['test_nats_per_char']:.4f} nats/char "
            f"({out['test_bits_per_char']:.4f} bits/char); {out['chars']} characters in "
            f"{out['windows']} windows of {out['window']}, epoch {out['epoch']}, "
            f"{out['seconds']:.0f} s"
        )

    def sample(
        self, run: Run, n: int, seed: int = 0, options: CharRNNSampleOptions | None = None
    ) -> np.ndarray:
        """``n`` token sequences ``(n, P + length)``, int, each starting with the prompt's
        ``P`` characters; drawn with numpy noise from ``seed`` (the same on both backends).

        Raises:
            DataError: A prompt with characters outside the run's vocabulary (naming them).
        """
        o = options or CharRNNSampleOptions()
        vocabulary = _vocabulary(run.config)
        try:
            prompt = vocabulary.encode(o.prompt)
        except DataError as e:
            raise DataError(f"--prompt: {e}") from None
        total = len(prompt) + o.length
        noise = open_uniform(np.random.default_rng(seed), (n, total, vocabulary.size))
        prefix = np.broadcast_to(prompt, (n, len(prompt))).copy() if len(prompt) else None
        model = run.model
        x = run.backend.inference.compute(
            model.net.sample, noise, model.head, prefix=prefix, temperature=o.temperature
        )
        return np.asarray(x).astype(np.int64)

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        """One text file: every sample decoded, under a ``--- sample i ---`` line."""
        vocabulary = _vocabulary(run.config)
        text = "\n\n".join(
            f"--- sample {i + 1} ---\n{vocabulary.decode(row)}" for i, row in enumerate(samples)
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text + "\n")
        return path

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """Training curves (nats per window of ``--seq-len`` characters)."""
        return [
            plots.save_training_curves(
                run.directory / "metrics.jsonl",
                Path(out_dir) / "curves.png",
                unit=self.loss_unit(run.config),
            )
        ]


CHARRNN = register(CharRNNRecipe())
