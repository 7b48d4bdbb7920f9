"""A window's audio in the archive: where it lives (only files in the index, inside their root), and cutting
one window (plus an optional margin) out of its file, encoded as WAV or Ogg for playback."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from indexer.decode import DecodeLimits, read_span
from plugins.contract import DecodeError, Decoder

if TYPE_CHECKING:
    from search.sound_index import SoundIndex

MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}
_FORMATS = {"wav": ("WAV", "PCM_16"), "ogg": ("OGG", "VORBIS")}


class NotServable(Exception):
    """The file is not (or no longer) one the index may serve; the API answers 404."""


@dataclass
class WindowLocation:
    """Where a window's audio lives: an archive file that is in the index and inside its root."""

    path: str
    start: float
    end: float
    duration: float | None


def window_location(sx: SoundIndex, window_id: int) -> WindowLocation:
    """The archive file and span of a window; NotServable unless the file is indexed and really inside its root."""
    place = sx.store.window_place(window_id)
    if place is None:
        raise NotServable(f"no window {window_id} in the index")
    path, root, size, mtime, start, end, duration = place
    roots = sx.store.roots()
    real = os.path.realpath(path)
    inside = any(
        real == os.path.realpath(r) or real.startswith(os.path.realpath(r).rstrip(os.sep) + os.sep)
        for r in [root, *roots]
        if r
    )
    if not inside or not os.path.isfile(real):
        raise NotServable(f"the file of window {window_id} is no longer in the archive")
    st = os.stat(real)
    if st.st_size != size or st.st_mtime != mtime:
        raise NotServable(f"the file of window {window_id} changed since it was indexed; re-index it")
    return WindowLocation(path=path, start=float(start), end=float(end), duration=duration)


@dataclass
class AudioClip:
    """Encoded audio of a span of a file, with the span actually cut (seconds)."""

    data: bytes
    media_type: str
    start_s: float
    end_s: float


def cut_clip(
    path: Path,
    start_s: float,
    end_s: float,
    fmt: str,
    decoders: Mapping[str, Decoder],
    plugin_settings: Mapping[str, Any],
    limits: DecodeLimits,
) -> AudioClip:
    """The audio of ``path`` between ``start_s`` and ``end_s`` as ``fmt`` (wav or ogg); raises DecodeError."""
    if fmt not in _FORMATS:
        raise ValueError(f"format must be one of {sorted(_FORMATS)}")
    audio, rate = read_span(path, start_s, end_s, decoders, plugin_settings, limits)  # a seek where the source can
    if not len(audio):
        raise DecodeError(f"no audio between {start_s:.2f} s and {end_s:.2f} s")
    audio = np.clip(np.nan_to_num(audio), -1.0, 1.0)
    buffer = io.BytesIO()
    container, subtype = _FORMATS[fmt]
    sf.write(buffer, audio, rate, format=container, subtype=subtype)
    return AudioClip(buffer.getvalue(), MEDIA_TYPES[fmt], start_s, start_s + len(audio) / rate)
