"""The soundsift hooks: the whole public contract for plugin authors, one place.

Hooks only ever gain arguments (pluggy passes an implementation just the ones it names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from plugins.contract import Decoder, QueryTranslation, ScoringPolicy, Transcriber, WindowTagger

PROJECT = "soundsift"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """Register `Decoder` objects: the extensions/magic bytes they handle and how they open a file."""


@hookspec
def register_scoring_policies(register: Callable[[ScoringPolicy], None]) -> None:
    """Register `ScoringPolicy` objects that turn windows x labels logits into scores and decisions."""


@hookspec(firstresult=True)
def translate_query(text: str, settings: Mapping[str, Any]) -> QueryTranslation | None:
    """Return English phrasings for a query or label (first non-None wins), or None to pass."""


@hookspec
def register_window_taggers(register: Callable[[WindowTagger], None]) -> None:
    """Register `WindowTagger` objects that add named tags/values to each window at index time."""


@hookspec
def register_transcribers(register: Callable[[Transcriber], None]) -> None:
    """Register `Transcriber` objects that load speech-recognition models whose per-window text is stored and searched."""
