"""soundsift's public plugin API: everything a plugin imports, from one place.

    from soundsift import hookimpl, Decoder, DecodeError, ScoringPolicy, PolicyResult, per_label, softmax

This package only re-exports the contract (plugins/contract.py, plugins/hookspecs.py,
plugins/scoring.py) and, for plugin tests, ``build_plugin_manager``; the names and their meaning are documented in docs/plugins.md. In the
repository it lives in plugins/soundsift_api/ and installs as the top-level package ``soundsift``.
"""

from __future__ import annotations

from plugins.contract import (
    ALWAYS_GIVEN_OPTIONS,
    ArchiveStats,
    AudioClassifier,
    AudioSource,
    ClassifierLoadError,
    DecodeError,
    Decoder,
    LabelTexts,
    OpenAudio,
    PolicyOptionError,
    PolicyResult,
    QueryTranslation,
    ScoreFunction,
    ScoringPolicy,
    Seconds,
    SpeechTranscriber,
    SpokenWord,
    TagFunction,
    Transcriber,
    TranscriberLoadError,
    WindowTagger,
    WindowTranscript,
    check_options,
)
from plugins.hookspecs import PROJECT, hookimpl, hookspec
from plugins.manager import PluginHost, build_plugin_manager
from plugins.scoring import best_label_fired, number, per_label, sigmoid, softmax

__all__ = [
    "ALWAYS_GIVEN_OPTIONS",
    "PROJECT",
    "ArchiveStats",
    "AudioClassifier",
    "AudioSource",
    "ClassifierLoadError",
    "DecodeError",
    "Decoder",
    "LabelTexts",
    "OpenAudio",
    "PluginHost",
    "PolicyOptionError",
    "PolicyResult",
    "QueryTranslation",
    "ScoreFunction",
    "ScoringPolicy",
    "Seconds",
    "SpeechTranscriber",
    "SpokenWord",
    "TagFunction",
    "Transcriber",
    "TranscriberLoadError",
    "WindowTagger",
    "WindowTranscript",
    "best_label_fired",
    "build_plugin_manager",
    "check_options",
    "hookimpl",
    "hookspec",
    "number",
    "per_label",
    "sigmoid",
    "softmax",
]
