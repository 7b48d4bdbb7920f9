"""The small types the hooks pass: decoders and their streaming sources, policies, taggers, translations."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Seconds = float


class DecodeError(Exception):
    """A decoder could not read a file; the message says why in one line."""


@runtime_checkable
class AudioSource(Protocol):
    """An opened audio file, read as a stream of blocks.

    ``blocks()`` yields float32 arrays shaped (frames, channels) with values in [-1, 1];
    a source never has to hold the whole file in memory. A source may also carry ``warnings``
    (a list of one-line notes on what it left out, e.g. a partial last frame): optional, read with
    getattr, and recorded with the file so nothing is dropped silently.

    A source may also offer ``seek(seconds) -> float | None`` (optional, read with getattr): move so the
    next block starts at or just before ``seconds`` and return the position reached in seconds (None:
    this file cannot seek; raise `DecodeError` if the seek failed). Playback and localisation then read
    a window without decoding the file from its start.
    """

    sample_rate: int
    channels: int
    duration_s: Seconds | None
    codec: str

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class OpenAudio(Protocol):
    """``open(path, settings)``: an opened `AudioSource`, or `DecodeError` saying in one line why not.

    ``settings`` is the flat dotted view of the settings (``{"pcm.sample_rate": 16000, ...}``).
    """

    def __call__(self, path: Path, settings: Mapping[str, Any], /) -> AudioSource: ...


class ScoreFunction(Protocol):
    """``score(logits, negative_logits, labels, stats, options)`` -> `PolicyResult` (see `ScoringPolicy`)."""

    def __call__(
        self,
        logits: np.ndarray,
        negative_logits: np.ndarray,
        labels: Sequence[LabelTexts],
        stats: ArchiveStats | None,
        options: Mapping[str, Any],
        /,
    ) -> PolicyResult: ...


class TagFunction(Protocol):
    """``tag(windows, sample_rate)``: (n, samples) float32 mono windows -> tag name -> n values."""

    def __call__(self, windows: np.ndarray, sample_rate: int, /) -> Mapping[str, Sequence[Any] | np.ndarray]: ...


@dataclass(frozen=True)
class Decoder:
    """A way to open audio files.

    ``extensions`` are lower-case without the dot; ``magic`` are byte prefixes sniffed from the
    file head (a magic match wins over an extension match, whatever the file is named).
    ``generic`` decoders (FFmpeg, libsndfile) are tried after every specific one that applies.
    ``open(path, settings)`` (an `OpenAudio`) returns an `AudioSource` or raises `DecodeError`.
    ``sidecar_suffixes`` name the files next to an audio file that change how this decoder reads it
    (``take1.pcm`` + ``.toml`` -> ``take1.pcm.toml``): editing one re-indexes the file, and the scan
    does not report them as skipped audio. The indexer scans every extension a loaded decoder declares.
    """

    name: str
    open: OpenAudio
    extensions: tuple[str, ...] = ()
    magic: tuple[bytes, ...] = ()
    generic: bool = False
    magic_offset: int = 0
    sidecar_suffixes: tuple[str, ...] = ()

    def matches_magic(self, head: bytes) -> bool:
        """True when the file head starts (at ``magic_offset``) with one of this decoder's magic prefixes."""
        return any(head[self.magic_offset :].startswith(m) for m in self.magic)

    def handles_extension(self, path: str | Path) -> bool:
        """True when ``path``'s extension is one this decoder declares."""
        return os.path.splitext(str(path))[1].lower().lstrip(".") in self.extensions

    def sidecars(self, path: str | Path) -> list[Path]:
        """The sidecar files of ``path`` that exist as regular files (none unless this decoder handles its extension)."""
        if not self.sidecar_suffixes or not self.handles_extension(path):
            return []
        candidates = (Path(str(path) + suffix) for suffix in self.sidecar_suffixes)
        return [c for c in candidates if c.is_file()]


@dataclass(frozen=True)
class LabelTexts:
    """One label as the user wrote it and the English texts embedded for it."""

    label: str
    texts: tuple[str, ...]
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchiveStats:
    """Per-label statistics of logits over the whole index (for policies that ask for them)."""

    mean: np.ndarray  # (labels,)
    std: np.ndarray  # (labels,)
    count: int


@dataclass
class PolicyResult:
    """Per window x label scores and which labels fire for each window."""

    scores: np.ndarray  # (windows, labels) float32
    fired: np.ndarray  # (windows, labels) bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # per-window values, e.g. "confidence"


@dataclass(frozen=True)
class ScoringPolicy:
    """Turns logits into scores.

    ``score(logits, negative_logits, labels, stats, options)``: ``logits`` is (windows, labels) =
    logit_scale * cosine; ``negative_logits`` is the same shape, the max over each label's negative
    texts (-inf where a label has none); ``stats`` is given when ``needs_archive_stats`` is set.
    ``options`` carries user options such as ``threshold`` (a float or one per label).
    ``option_help`` names the options the policy reads (name -> one line), for docs and ``soundsift plugins``;
    soundsift refuses any other option name (besides ``threshold`` and ``logit_scale``, which every policy is
    given) with `PolicyOptionError` before ``score`` runs, so a policy checks only its values.
    """

    name: str
    score: ScoreFunction
    description: str = ""
    needs_archive_stats: bool = False
    option_help: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # The core checks option names against option_help on every call, so no policy repeats the check.
        if not getattr(self.score, "_soundsift_checked", False):
            object.__setattr__(self, "score", _checking_options(self.name, self.score, self.option_help))

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse option names this policy does not declare in ``option_help`` (`PolicyOptionError`)."""
        check_options(self.name, options, self.option_help)


class ClassifierLoadError(ValueError):
    """A tagger's model cannot be loaded or used (missing, not an audio classifier, bad option); one line says why."""


class PolicyOptionError(ValueError):
    """A scoring-policy option the user gave is unusable; the message names the option and says why."""


@runtime_checkable
class AudioClassifier(Protocol):
    """A loaded fixed-label audio classification model (AST, wav2vec2, HuBERT...), run over windows.

    ``model_id`` is the id or directory as configured, ``revision`` what identifies its weights (a hub
    commit or a content hash), ``alias`` the short name tag filters use, ``labels`` the model's whole
    label set in id order. ``classify(windows, sample_rate)`` takes (n, samples) float32 mono windows (or a
    list of 1-D windows, a file's short last one shorter) and returns, per window, the ``top_k`` (label, score) pairs best first, after ``function_to_apply``.
    """

    model_id: str
    revision: str
    alias: str
    labels: tuple[str, ...]
    sample_rate: int
    top_k: int
    function_to_apply: str

    def classify(self, windows: np.ndarray, sample_rate: int) -> list[list[tuple[str, float]]]: ...


# soundsift puts these in every policy's options: the --threshold flag and the model's logit scale.
ALWAYS_GIVEN_OPTIONS = frozenset({"threshold", "logit_scale"})


def check_options(policy: str, options: Mapping[str, Any], known: Mapping[str, str] | Iterable[str]) -> None:
    """Refuse option names the policy does not read (a typo would otherwise be ignored silently)."""
    unknown = sorted(set(options) - ALWAYS_GIVEN_OPTIONS - set(known))
    if unknown:
        raise PolicyOptionError(
            f"the {policy} policy has no option {', '.join(map(repr, unknown))}; "
            f"it reads: {', '.join(sorted(known)) or 'none'}"
        )


def _checking_options(name: str, score: ScoreFunction, known: Mapping[str, str]) -> ScoreFunction:
    """``score`` preceded by the check of option names against the policy's declared options."""
    known = dict(known)

    @functools.wraps(score)
    def checked(logits, negative_logits, labels, stats, options, /):
        check_options(name, options, known)
        return score(logits, negative_logits, labels, stats, options)

    checked._soundsift_checked = True  # type: ignore[attr-defined]
    return checked


@dataclass(frozen=True)
class WindowTagger:
    """Adds named values to each window at index time.

    ``tag(windows, sample_rate)`` takes a (n, samples) float32 array of mono windows and returns a
    mapping of tag name -> array of n values (bool, int, float or str).

    A tagger that runs fixed-label models also sets ``classifiers(settings)``: given the plugin settings
    view (``device`` and its own ``<name>.*`` keys) it returns the `AudioClassifier` objects configured
    there; their (label, score) results are stored per window, keyed by model and revision, apart from
    the flat tags (its ``tag`` may then return nothing).
    """

    name: str
    tag: TagFunction
    description: str = ""
    classifiers: Callable[[Mapping[str, Any]], Sequence[AudioClassifier]] | None = None


@dataclass
class QueryTranslation:
    """English phrasings for one query or label.

    ``texts`` are embedded and combined; ``negatives`` push a label down (the contrast policy);
    ``untranslated`` lists parts no English was found for (reported, never embedded as-is).
    """

    texts: list[str]
    negatives: list[str] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)
    translator: str = ""


@dataclass(frozen=True)
class SpokenWord:
    """One word a speech model heard: its text and its times in seconds from the start of the window."""

    text: str
    start: Seconds
    end: Seconds


@dataclass
class WindowTranscript:
    """What was said in one window: the whole ``text`` and, where the model times its words, the ``words``.

    ``words`` is empty for a model without word times (the text then spans the whole window);
    ``language`` is the language the model was asked for or detected, None when unknown.
    """

    text: str
    words: list[SpokenWord] = field(default_factory=list)
    language: str | None = None


@runtime_checkable
class SpeechTranscriber(Protocol):
    """A loaded speech-recognition model (Whisper, wav2vec2/HuBERT CTC...), run over windows.

    ``model_id``, ``revision`` and ``alias`` mean what they mean for `AudioClassifier`; ``sample_rate`` is the
    rate the model reads; ``language`` the language asked for (None: the model's own choice).
    ``transcribe(windows, sample_rate)`` takes a list of 1-D float32 mono windows and returns one
    `WindowTranscript` per window, each window transcribed on its own.
    """

    model_id: str
    revision: str
    alias: str
    sample_rate: int
    language: str | None

    def transcribe(self, windows: Sequence[np.ndarray], sample_rate: int) -> list[WindowTranscript]: ...


class TranscriberLoadError(ClassifierLoadError):
    """A speech model cannot be loaded or used (missing, not speech recognition, a bad option); one line says why."""


@dataclass(frozen=True)
class Transcriber:
    """Turns speech in windows into text at index time and in `soundsift transcribe`.

    ``load(settings)``: given the plugin settings view (``device`` and its own ``<name>.*`` keys, e.g.
    ``transcriber.models``) it returns the `SpeechTranscriber` objects configured there (none when none is).
    Their transcripts are stored per window, keyed by model and revision, and searched with ``--said``.
    """

    name: str
    load: Callable[[Mapping[str, Any]], Sequence[SpeechTranscriber]]
    description: str = ""
