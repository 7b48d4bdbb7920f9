"""soundsift's public plugin API: everything a plugin imports, from one place.

    from soundsift import hookimpl, Decoder, DecodeError, ScoringPolicy, PolicyResult, per_label, softmax

This package only re-exports the contract (plugins/contract.py, plugins/hookspecs.py,
plugins/scoring.py), the safe-file helpers a decoder opens files and sidecars with (plugins/safe_files.py:
``open_regular``, ``read_limited``) and, for plugin tests, ``build_plugin_manager``. The built-in plugins
import from here only, so they can do nothing a third-party plugin cannot; the names and their meaning are documented in docs/plugins.md. In the
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
from plugins.safe_files import SIDECAR_LIMIT, FileTooLarge, NotRegularFile, open_regular, read_limited
from plugins.scoring import best_label_fired, number, per_label, sigmoid, softmax

__all__ = [
    "ALWAYS_GIVEN_OPTIONS",
    "SIDECAR_LIMIT",
    "FileTooLarge",
    "NotRegularFile",
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
    "open_regular",
    "per_label",
    "read_limited",
    "sigmoid",
    "softmax",
]
