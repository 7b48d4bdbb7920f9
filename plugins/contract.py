"""The small types the hooks pass: decoders and their streaming sources, policies, taggers, translations."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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
    """

    sample_rate: int
    channels: int
    duration_s: Seconds | None
    codec: str

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Decoder:
    """A way to open audio files.

    ``extensions`` are lower-case without the dot; ``magic`` are byte prefixes sniffed from the
    file head (a magic match wins over an extension match, whatever the file is named).
    ``generic`` decoders (FFmpeg, libsndfile) are tried after every specific one that applies.
    ``open(path, settings)`` returns an `AudioSource` or raises `DecodeError`.
    """

    name: str
    open: Callable[[Path, Mapping[str, Any]], AudioSource]
    extensions: tuple[str, ...] = ()
    magic: tuple[bytes, ...] = ()
    generic: bool = False
    magic_offset: int = 0

    def matches_magic(self, head: bytes) -> bool:
        return any(head[self.magic_offset:].startswith(m) for m in self.magic)


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
    a bad option value raises `PolicyOptionError`.
    """

    name: str
    score: Callable[..., PolicyResult]
    description: str = ""
    needs_archive_stats: bool = False
    option_help: Mapping[str, str] = field(default_factory=dict, hash=False)


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
    tag: Callable[[np.ndarray, int], Mapping[str, Sequence[Any] | np.ndarray]]
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
