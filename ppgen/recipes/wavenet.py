"""The WaveNet family: ``wavenet``, dilated causal convolutions over mu-law audio (van den
Oord et al. 2016), fitted by exact maximum likelihood.

``ppgen train wavenet --dataset speech`` fits ``AutoregressiveDensity(WaveNet,
Categorical(256))`` (``ppgen.models.{pyro,numpyro}``) with the ordinary trainer and the
ELBO, which for a model without latent sites is the exact log-likelihood, by Adam at 1e-2
(batch 8) decayed on a cosine over the run's epochs, unless ``--lr`` or ``--lr-schedule``
say otherwise: measured on the speech corpus on a cosine over 3 epochs
(``benchmarks/wavenet.py --max-epochs 3``, ``docs/RESULTS.md``), 1e-2 reaches 3.83 test bits
per sample where 3e-3 reaches 4.29 and 1e-3 4.93, and 2e-2 and 4e-2 fall behind from the
first epoch. The rate was not measured at a constant schedule, hence the cosine default. The
training utterances (16 kHz) are companded to 8-bit mu-law codes
(``ppgen.data.mu_law_encode``) and cut into consecutive segments of ``--segment-len``
samples, shuffled every epoch; each segment is one example, its first sample read from the
network's zero padding (the causal convolutions see nothing before it).
``--global-conditioning voice`` conditions every gate on the one-hot voice of the utterance
(the corpus's voices, sorted, stored in the run's ``config.json`` as option ``voices``, so a run
samples without the corpus).

``ppgen eval`` scores every test utterance whole, from its first sample, and reports the
exact NLL in bits per audio sample (and nats). ``ppgen sample RUN`` draws clips with the
cached sampler (Paine et al. 2016), decodes the mu-law codes and writes one 16 kHz WAV file,
the clips one after another with a quarter second of silence between them (``--seconds``
per clip; ``--voice`` the voice of a conditioned model). The pictures are the training
curves and the spectrogram of a generated clip beside that of a test utterance.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
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
from ppgen.recipes.charrnn import ar_heads
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "CONDITIONING",
    "MAX_SAMPLE_SECONDS",
    "WaveNetOptions",
    "WaveNetRecipe",
    "WaveNetSampleOptions",
]

CONDITIONING = ("none", "voice")
"""``--global-conditioning`` choices."""

MAX_SAMPLE_SECONDS = 30.0
"""The longest clip ``ppgen sample`` draws."""

_GAP_SECONDS = 0.25  # silence between the clips of one WAV file


@dataclass(frozen=True)
class WaveNetOptions(Options):
    """Settings of ``wavenet`` (defaults: one stack of 10 dilated layers, receptive field
    1024 samples = 64 ms, 32 residual and 128 skip channels, segments of 4096 samples)."""

    layers: int = option(
        10, "dilated layers per stack (dilations 1, 2, ..., 2**(N-1))", parse=positive_int,
        metavar="N",
    )  # fmt: skip
    stacks: int = option(1, "repetitions of the dilation cycle", parse=positive_int)
    residual_channels: int = option(32, "width of the residual stream", parse=positive_int)
    skip_channels: int = option(
        128, "width of the skip connections and output layers", parse=positive_int
    )
    kernel_size: int = option(2, "taps of every dilated convolution", parse=positive_int)
    segment_len: int = option(4096, "samples per training segment", parse=positive_int, metavar="T")
    global_conditioning: str = option(
        "none", "condition on the utterance's voice (one-hot) or nothing", choices=CONDITIONING
    )
    max_utterances: int = option(
        0,
        "use only the first N utterances of every split (0: all; quick runs and tests)",
        parse=non_negative_int,
        metavar="N",
    )
    picture_seconds: float = option(
        1.0, "length of the generated clip in the spectrogram picture", parse=positive(float)
    )
    voices: tuple[str, ...] | None = option(
        None, "the corpus's voices, sorted: the one-hot order of the conditioning (stored)",
        cli=False,
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size < 2:
            raise ConfigError(f"--kernel-size must be at least 2, got {self.kernel_size}")
        if self.segment_len < 2:
            raise ConfigError(f"--segment-len must be at least 2, got {self.segment_len}")
        if not 0 < self.picture_seconds <= MAX_SAMPLE_SECONDS:
            raise ConfigError(
                f"--picture-seconds must be in (0, {MAX_SAMPLE_SECONDS:g}], got "
                f"{self.picture_seconds}"
            )
        voices = self.voices
        if voices is not None and not (
            isinstance(voices, tuple)
            and voices
            and all(isinstance(v, str) and v for v in voices)
            and len(set(voices)) == len(voices)
        ):
            raise ConfigError(f"the stored voices must be distinct non-empty names, got {voices!r}")


@dataclass(frozen=True)
class WaveNetSampleOptions(Options):
    """Settings of ``ppgen sample`` for a ``wavenet`` run."""

    seconds: float = option(1.0, "seconds per clip", parse=positive(float), metavar="S")
    voice: str = option(
        "",
        "the voice of a --global-conditioning voice run (default: the voices in turn)",
        metavar="NAME",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.seconds <= MAX_SAMPLE_SECONDS:
            raise ConfigError(
                f"--seconds must be in (0, {MAX_SAMPLE_SECONDS:g}], got {self.seconds}"
            )


def _corpus(config: RunConfig, split: str) -> ppdata.AudioCorpus:
    """``split`` of the run's audio dataset (``--max-utterances`` applied)."""
    corpus = ppdata.load_audio(config.dataset, split)
    n = config.options.max_utterances
    if n and n < len(corpus):
        corpus = ppdata.AudioCorpus(
            corpus.utterances[:n], corpus.rate, corpus.voices[:n], corpus.voice_names,
            corpus.texts[:n], corpus.name,
        )  # fmt: skip
    return corpus


def _one_hot(voices: np.ndarray, num_voices: int) -> np.ndarray:
    return np.eye(num_voices, dtype=np.float32)[np.asarray(voices)]


def _examples(config: RunConfig, split: str) -> Any:
    """Segments of ``split``: codes ``(N, segment_len)``, with their one-hot voices as
    ``(codes, voices)`` when conditioned on the voice (positional: the model's ``x`` and
    ``context``; by keyword Pyro's handlers would take ``context`` as their own)."""
    corpus = _corpus(config, split)
    codes, voices = corpus.segments(config.options.segment_len)
    if config.options.global_conditioning == "none":
        return codes
    return codes, _one_hot(voices, len(corpus.voice_names))


def _conditioned(config: RunConfig) -> bool:
    return config.options.global_conditioning == "voice"


def _voice_names(config: RunConfig) -> tuple[str, ...]:
    """The run's voices: the stored ones, else the corpus's."""
    if config.options.voices is not None:
        return config.options.voices
    return ppdata.load_audio(config.dataset, "test").voice_names


class WaveNetRecipe(Recipe):
    """``wavenet``: evaluated by the exact test NLL in bits per audio sample."""

    name = "wavenet"
    help = "WaveNet: dilated causal convolutions over mu-law audio, exact likelihood"
    description = __doc__.split("\n\n")[0]
    options = WaveNetOptions
    defaults = {"lr": 1e-2, "lr_schedule": "cosine", "dataset": "speech", "batch_size": 8}
    datasets = tuple(ppdata.AUDIO_DATASETS)
    eval_flags = ("limit",)
    eval_report = "the exact test NLL in bits and nats per audio sample"
    sample_suffix = ".wav"
    sample_options = WaveNetSampleOptions
    sample_count = 2

    def check_sample_count(self, n: int, options: Options | None = None) -> None:
        """Refuse more than ``MAX_SAMPLE_SECONDS`` of audio in all (``n`` clips of
        ``--seconds``) in one draw, before it starts.

        Raises:
            ConfigError: ``n`` is not a positive integer, or the clips are too long together.
        """
        super().check_sample_count(n, options)
        seconds = (options or WaveNetSampleOptions()).seconds
        if n * seconds > MAX_SAMPLE_SECONDS:
            raise ConfigError(
                f"{n} clips of {seconds:g} s are {n * seconds:g} s of audio, more than the "
                f"{MAX_SAMPLE_SECONDS:g} s ppgen draws at once; ask for fewer or shorter clips"
            )

    def loss_unit(self, config: RunConfig) -> str:
        """A training example is one segment of ``--segment-len`` samples."""
        return f"nats per {config.options.segment_len}-sample segment"

    def prepare(self, config: RunConfig) -> FitData:
        train = _examples(config, config.train_split)
        valid = _examples(config, "valid") if config.train_split == "train" else None
        test = _examples(config, "test")
        num = len(train[0] if isinstance(train, tuple) else train)
        return FitData(train=train, valid=valid, test=test, num_data=num)

    def shapes(self, config: RunConfig) -> FitData | None:
        """Placeholder segments: int32 codes ``(2, segment_len)``, as the training codes,
        with their one-hot voices when conditioned (``None`` for a conditioned run whose
        config.json does not store the voices: they are the corpus's)."""
        codes = np.zeros((STAND_IN_ROWS, config.options.segment_len), np.int32)
        if not _conditioned(config):
            return stand_in(config, codes)
        if config.options.voices is None:
            return None
        return stand_in(
            config, (codes, _one_hot(np.zeros(len(codes), int), len(config.options.voices)))
        )

    def settle(self, config: RunConfig, data: FitData) -> RunConfig:
        """The config with the corpus's voices stored (``options.voices``)."""
        if config.options.voices is not None:
            return config
        voices = _voice_names(config)
        return dataclasses.replace(
            config, options=dataclasses.replace(config.options, voices=voices)
        )

    def epoch_loop(self, config: RunConfig) -> str:
        return "steps"  # dilated convolutions: see Recipe.epoch_loop

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        o = config.options
        voices = _voice_names(config) if _conditioned(config) else ()
        net = backend.models.WaveNet(
            channels=ppdata.MU_LAW_CHANNELS,
            residual_channels=o.residual_channels,
            skip_channels=o.skip_channels,
            layers=o.layers,
            stacks=o.stacks,
            kernel_size=o.kernel_size,
            global_dim=len(voices) if _conditioned(config) else 0,
            seed=config.seed,
        )
        head = ar_heads(backend).Categorical(ppdata.MU_LAW_CHANNELS)
        model = backend.models.AutoregressiveDensity(net, head)
        return exact_likelihood(config, data, backend, model)

    def evaluate(
        self, run: Run, *, limit: int | None = None, progress: bool = True, **_: Any
    ) -> dict[str, Any]:
        """Exact NLL of every test utterance, whole (``limit``: the first ``limit``), in
        nats and bits per audio sample."""
        t0 = time.perf_counter()
        corpus = _corpus(run.config, "test")
        codes = corpus.mu_law()[:limit]
        compute = run.backend.inference.compute
        nats = 0.0
        for i, x in enumerate(codes):
            context = None
            if _conditioned(run.config):
                context = _one_hot(corpus.voices[i : i + 1], len(corpus.voice_names))
            log_p = compute(run.model.log_prob, np.array(x[None]), context)
            nats -= float(np.sum(np.asarray(log_p, dtype=np.float64)))
        samples = sum(len(x) for x in codes)
        return {
            "test_bits_per_sample": nats / samples / math.log(2),
            "test_nats_per_sample": nats / samples,
            "test_nll": nats,
            "samples": samples,
            "utterances": len(codes),
            "exact": True,
            "epoch": run.epoch + 1,
            "seconds": time.perf_counter() - t0,
        }

    def summary(self, out: dict[str, Any]) -> str:
        return (
            f"exact test NLL {out['test_bits_per_sample']:.4f} bits/sample "
            f"({out['test_nats_per_sample']:.4f} nats); {out['samples']} samples of "
            f"{out['utterances']} utterances, epoch {out['epoch']}, {out['seconds']:.0f} s"
        )

    def _context(self, run: Run, n: int, voice: str) -> np.ndarray | None:
        """One-hot voices ``(n, V)`` of ``n`` clips (``None`` for an unconditioned run).

        Raises:
            ConfigError: A voice the corpus does not have, or a voice for a run that is
                not conditioned on it.
        """
        if not _conditioned(run.config):
            if voice:
                raise ConfigError(
                    f"--voice {voice}: this run is not conditioned on the voice (it was "
                    "trained without --global-conditioning voice)"
                )
            return None
        names = _voice_names(run.config)
        if voice and voice not in names:
            raise ConfigError(f"unknown voice {voice!r}; choose one of {', '.join(names)}")
        ids = np.full(n, names.index(voice)) if voice else np.arange(n) % len(names)
        return _one_hot(ids, len(names))

    def sample(
        self, run: Run, n: int, seed: int = 0, options: WaveNetSampleOptions | None = None
    ) -> np.ndarray:
        """``n`` clips of mu-law codes ``(n, round(seconds * 16000))``, int, from the cached
        sampler with ``seed``."""
        o = options or WaveNetSampleOptions()
        length = max(1, round(o.seconds * ppdata.SPEECH_RATE))
        context = self._context(run, n, o.voice)
        x = run.backend.inference.draw(run.model.sample, n, context, length, seed=seed)
        return np.asarray(x).astype(np.int64)

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        """One 16 kHz WAV file: the clips mu-law decoded, a quarter second apart."""
        gap = np.zeros(round(_GAP_SECONDS * ppdata.SPEECH_RATE), np.float32)
        parts = []
        for i, codes in enumerate(samples):
            parts += [gap] if i else []
            parts.append(ppdata.mu_law_decode(np.asarray(codes)))
        return ppdata.write_wav(path, np.concatenate(parts), ppdata.SPEECH_RATE, overwrite=True)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """Training curves, and the spectrogram of a generated clip of ``picture_seconds``
        beside the start of the first test utterance (of the same voice when conditioned)."""
        out_dir = Path(out_dir)
        corpus = _corpus(run.config, "test")
        length = max(1, round(run.config.options.picture_seconds * ppdata.SPEECH_RATE))
        voice = corpus.voice_names[corpus.voices[0]] if _conditioned(run.config) else ""
        options = WaveNetSampleOptions(seconds=run.config.options.picture_seconds, voice=voice)
        generated = ppdata.mu_law_decode(self.sample(run, 1, seed=0, options=options)[0])
        real = ppdata.mu_law_decode(corpus.mu_law()[0][:length])
        spectrogram = plots.save_spectrograms(
            [generated, real],
            [
                f"generated ({voice or 'unconditioned'})",
                f"test utterance ({corpus.texts[0]!r})"[:60],
            ],
            ppdata.SPEECH_RATE,
            out_dir / "spectrogram.png",
            nfft=min(512, 2 ** int(math.log2(max(4, length // 4)))),
        )
        curves = plots.save_training_curves(
            run.directory / "metrics.jsonl", out_dir / "curves.png", unit=self.loss_unit(run.config)
        )
        return [curves, spectrogram]


WAVENET = register(WaveNetRecipe())
