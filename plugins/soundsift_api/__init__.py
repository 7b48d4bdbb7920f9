"""soundsift's public plugin API: everything a plugin imports, from one place.

    from soundsift import hookimpl, Decoder, DecodeError, ScoringPolicy, PolicyResult, per_label, softmax

This package only re-exports the contract (plugins/contract.py, plugins/hookspecs.py,
plugins/scoring.py); the names and their meaning are documented in docs/plugins.md. In the
repository it lives in plugins/soundsift_api/ and installs as the top-level package ``soundsift``.
"""
from __future__ import annotations

from plugins.contract import (
    ALWAYS_GIVEN_OPTIONS,
    ArchiveStats,
    AudioSource,
    Decoder,
    DecodeError,
    LabelTexts,
    OpenAudio,
    PolicyOptionError,
    PolicyResult,
    QueryTranslation,
    ScoreFunction,
    ScoringPolicy,
    Seconds,
    TagFunction,
    WindowTagger,
    check_options,
)
from plugins.hookspecs import PROJECT, hookimpl, hookspec
from plugins.scoring import best_label_fired, number, per_label, sigmoid, softmax

__all__ = [
    "ALWAYS_GIVEN_OPTIONS",
    "PROJECT",
    "ArchiveStats",
    "AudioSource",
    "DecodeError",
    "Decoder",
    "LabelTexts",
    "OpenAudio",
    "PolicyOptionError",
    "PolicyResult",
    "QueryTranslation",
    "ScoreFunction",
    "ScoringPolicy",
    "Seconds",
    "TagFunction",
    "WindowTagger",
    "best_label_fired",
    "check_options",
    "hookimpl",
    "hookspec",
    "number",
    "per_label",
    "sigmoid",
    "softmax",
]
