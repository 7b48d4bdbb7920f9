"""Cut one window (plus an optional margin) out of an archive file and encode it as WAV or Ogg for playback."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from indexer.decode import TARGET_RATE, DecodeLimits, mono_48k_blocks, open_audio
from plugins.contract import DecodeError, Decoder

MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}
_FORMATS = {"wav": ("WAV", "PCM_16"), "ogg": ("OGG", "VORBIS")}


@dataclass
class AudioClip:
    """Encoded audio of a span of a file, with the span actually cut (seconds)."""

    data: bytes
    media_type: str
    start_s: float
    end_s: float


def _read_seekable(path: Path, start_s: float, end_s: float) -> tuple[np.ndarray, int] | None:
    """Mono samples of [start, end) at the file's own rate, seeking straight there (libsndfile formats only)."""
    try:
        with sf.SoundFile(str(path)) as fh:
            if not fh.seekable():
                return None
            rate = int(fh.samplerate)
            first = min(int(start_s * rate), fh.frames)
            fh.seek(first)
            audio = fh.read(max(0, int(end_s * rate) - first), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return audio.mean(axis=1, dtype=np.float32), rate


def _read_streaming(
    path: Path,
    start_s: float,
    end_s: float,
    decoders: Mapping[str, Decoder],
    plugin_settings: Mapping[str, Any],
    limits: DecodeLimits,
) -> np.ndarray:
    """Mono 48 kHz samples of [start, end) through the decoder plugins, stopping once ``end`` is read."""
    first, last = int(start_s * TARGET_RATE), int(end_s * TARGET_RATE)
    pieces, seen = [], 0
    blocks = mono_48k_blocks(open_audio(path, decoders, plugin_settings, limits), limits)
    try:
        for block in blocks:
            lo, hi = max(first - seen, 0), min(last - seen, len(block))
            if hi > lo:
                pieces.append(block[lo:hi])
            seen += len(block)
            if seen >= last:
                break
    finally:
        blocks.close()  # type: ignore[attr-defined]  # a generator: closing it closes the decoder
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


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
    found = _read_seekable(path, start_s, end_s)
    if found is not None:
        audio, rate = found
    else:
        audio, rate = _read_streaming(path, start_s, end_s, decoders, plugin_settings, limits), TARGET_RATE
    if not len(audio):
        raise DecodeError(f"no audio between {start_s:.2f} s and {end_s:.2f} s")
    audio = np.clip(np.nan_to_num(audio), -1.0, 1.0)
    buffer = io.BytesIO()
    container, subtype = _FORMATS[fmt]
    sf.write(buffer, audio, rate, format=container, subtype=subtype)
    return AudioClip(buffer.getvalue(), MEDIA_TYPES[fmt], start_s, start_s + len(audio) / rate)
