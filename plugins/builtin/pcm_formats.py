"""Raw PCM shared by the built-in slk, amr and pcm decoders: sample formats to float32, stream checks, block sizes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from soundsift import DecodeError

# The bounds every built-in decoder refuses outside of, before allocating anything they would size
# (the indexer checks the same bounds again from its settings, after open()).
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64

BLOCK_S = 1.0  # blocks() yields about one second at a time...
MAX_BLOCK_SAMPLES = 1 << 20  # ...but never more than 1 Mi samples (4 MiB of float32), whatever the channel count


def _u8(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.float32) - 128.0) * np.float32(1 / 128)


def _int_scaled(dtype: str, bits: int) -> Callable[[np.ndarray], np.ndarray]:
    scale = np.float32(2.0 ** -(bits - 1))

    def convert(raw: np.ndarray) -> np.ndarray:
        return raw.view(dtype).astype(np.float32) * scale

    return convert


def _s24le(raw: np.ndarray) -> np.ndarray:
    # Three bytes per sample: place them in the top of a little-endian int32 and shift back (sign-extends).
    triples = raw.reshape(-1, 3)
    wide = np.zeros((len(triples), 4), dtype=np.uint8)
    wide[:, 1:] = triples
    return (wide.view("<i4").ravel() >> 8).astype(np.float32) * np.float32(2.0**-23)


def _f32le(raw: np.ndarray) -> np.ndarray:
    # Float files may carry overs beyond full scale; the contract promises [-1, 1]. NaN stays NaN
    # (np.clip keeps it) so the indexer's finiteness check still refuses such a file.
    return np.clip(raw.view("<f4"), -1.0, 1.0).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SampleFormat:
    """One raw PCM sample layout: its name, bytes per sample and its conversion to float32 in [-1, 1]."""

    name: str
    width: int
    _convert: Callable[[np.ndarray], np.ndarray]

    def to_float32(self, raw: bytes | bytearray | memoryview | np.ndarray, channels: int) -> np.ndarray:
        """Whole frames of raw bytes -> float32 array shaped (frames, channels)."""
        if isinstance(raw, np.ndarray):
            data = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        else:
            data = np.frombuffer(raw, dtype=np.uint8)
        frame_bytes = self.width * channels
        if len(data) % frame_bytes:
            raise ValueError(f"{len(data)} bytes is not a whole number of {frame_bytes}-byte frames")
        return self._convert(data).reshape(-1, channels)


SAMPLE_FORMATS: dict[str, SampleFormat] = {
    f.name: f
    for f in (
        SampleFormat("u8", 1, _u8),
        SampleFormat("s16le", 2, _int_scaled("<i2", 16)),
        SampleFormat("s24le", 3, _s24le),
        SampleFormat("s32le", 4, _int_scaled("<i4", 32)),
        SampleFormat("f32le", 4, _f32le),
    )
}


def sample_format(name: Any) -> SampleFormat:
    """The `SampleFormat` called ``name`` (case-insensitive), or DecodeError naming the known ones."""
    fmt = SAMPLE_FORMATS.get(str(name).strip().lower())
    if fmt is None:
        raise DecodeError(f"unknown PCM sample format {name!r} (known: {', '.join(SAMPLE_FORMATS)})")
    return fmt


def integer_setting(settings: Mapping[str, Any], key: str, default: int) -> int:
    """``settings[key]`` as an int (settings from the environment arrive as strings); DecodeError if it is not one."""
    value = settings.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        raise DecodeError(f"setting {key} must be an integer, got {value!r}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: infinity
        raise DecodeError(f"setting {key} must be an integer, got {value!r}") from None
    if number != value and not isinstance(value, str):
        raise DecodeError(f"setting {key} must be an integer, got {value!r}")
    return number


def check_stream(sample_rate: int, channels: int) -> None:
    """Refuse absurd stream parameters before anything they would size is allocated."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise DecodeError(f"sample rate {sample_rate} Hz outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DecodeError(f"{channels} channels (expected 1..{MAX_CHANNELS})")


def block_frames(sample_rate: int, channels: int) -> int:
    """Frames per yielded block: about `BLOCK_S` seconds, capped at `MAX_BLOCK_SAMPLES` samples."""
    return max(1, min(int(sample_rate * BLOCK_S), MAX_BLOCK_SAMPLES // max(1, channels)))


def regroup(pieces: Iterable[np.ndarray], frames: int) -> Iterator[np.ndarray]:
    """Concatenate small (n, channels) pieces (codec frames) into blocks of exactly ``frames`` frames; the last may be shorter."""
    pending: list[np.ndarray] = []
    held = 0
    for piece in pieces:
        if not len(piece):
            continue
        pending.append(piece)
        held += len(piece)
        while held >= frames:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield np.ascontiguousarray(joined[:frames])
            rest = joined[frames:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]
