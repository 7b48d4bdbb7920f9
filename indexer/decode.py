"""Decoding: pick decoders for a file (plugins), stream it, validate it, downmix to mono and resample to 48 kHz.

This module never imports torch: it runs inside decode worker processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from indexer.reasons import failure_reason
from plugins.contract import AudioSource, DecodeError, Decoder
from plugins.safe_files import not_regular_reason, open_regular, special_kind

TARGET_RATE = 48_000
HEAD_BYTES = 64


@dataclass(frozen=True)
class DecodeLimits:
    """Headers outside these bounds are refused before anything they would size is allocated."""

    min_sample_rate: int = 4_000
    max_sample_rate: int = 768_000
    max_channels: int = 64
    max_duration_s: float = 48 * 3600.0

    @classmethod
    def of(cls, settings) -> DecodeLimits:
        """The limits a `Settings` sets (min/max sample rate, max channels, max duration)."""
        return cls(settings.min_sample_rate, settings.max_sample_rate, settings.max_channels, settings.max_duration_s)


@dataclass
class OpenedAudio:
    """A file opened by the first decoder that accepted it."""

    decoder: str
    source: AudioSource
    refused: list[tuple[str, str]] = field(default_factory=list)  # (decoder, message) of those tried before it
    head: bytes = b""  # the first bytes, for naming the format in a reason


def read_head(path: Path) -> bytes:
    """The first bytes of a regular file (DecodeError if it cannot be read or is not a regular file)."""
    try:
        with open_regular(path) as fh:
            return fh.read(HEAD_BYTES)
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from None


def decoder_order(path: Path, decoders: Mapping[str, Decoder], head: bytes | None = None) -> list[Decoder]:
    """Decoders to try for ``path``: magic-byte matches, then specific by extension, then generic ones."""
    if head is None:
        head = read_head(path)
    ext = path.suffix.lower().lstrip(".")
    by_magic = [d for d in decoders.values() if d.magic and d.matches_magic(head)]
    specific = [d for d in decoders.values() if not d.generic and ext in d.extensions and d not in by_magic]
    generic_ext = [d for d in decoders.values() if d.generic and ext in d.extensions and d not in by_magic]
    generic_rest = [d for d in decoders.values() if d.generic and d not in generic_ext and d not in by_magic]
    return by_magic + specific + generic_ext + generic_rest


def open_audio(
    path: Path, decoders: Mapping[str, Decoder], settings: Mapping[str, Any], limits: DecodeLimits
) -> OpenedAudio:
    """Open ``path`` with the first decoder that accepts it; one error lists what each decoder said."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
    kind = special_kind(st.st_mode)
    if kind is not None:  # decoders would open it and block (a FIFO) or read forever (a device)
        raise DecodeError(not_regular_reason(kind))
    if st.st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    head = read_head(path)
    said: list[tuple[str, str]] = []
    for decoder in decoder_order(path, decoders, head):
        try:
            source = decoder.open(path, settings)
            check_header(source, limits)
            return OpenedAudio(decoder.name, source, said, head)
        except DecodeError as exc:
            said.append((decoder.name, str(exc) or "refused the file"))
        except Exception as exc:  # a plugin's bug is this file's failure, not the run's
            said.append((decoder.name, f"{type(exc).__name__}: {exc}"))
    # What each decoder said, in plain words: never a library's internals or a Python error.
    raise DecodeError(failure_reason(path, head, said))


def check_header(source: AudioSource, limits: DecodeLimits) -> None:
    """Refuse absurd sample rates, channel counts and durations (before any allocation they size)."""
    if not limits.min_sample_rate <= source.sample_rate <= limits.max_sample_rate:
        _close_quietly(source)
        raise DecodeError(
            f"sample rate {source.sample_rate} Hz outside {limits.min_sample_rate}..{limits.max_sample_rate} Hz"
        )
    if not 1 <= source.channels <= limits.max_channels:
        _close_quietly(source)
        raise DecodeError(f"{source.channels} channels (expected 1..{limits.max_channels})")
    if source.duration_s is not None and source.duration_s > limits.max_duration_s:
        _close_quietly(source)
        raise DecodeError(f"duration {source.duration_s:.0f} s exceeds the limit of {limits.max_duration_s:.0f} s")


def _close_quietly(source: AudioSource) -> None:
    try:
        source.close()
    except Exception:
        pass


def mono_48k_blocks(opened: OpenedAudio, limits: DecodeLimits) -> Iterator[np.ndarray]:
    """Stream ``opened`` as mono float32 blocks at 48 kHz (channel mean, soxr HQ), checking every sample is finite."""
    source = opened.source
    resampler = None
    if source.sample_rate != TARGET_RATE:
        resampler = soxr.ResampleStream(source.sample_rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
    max_frames = int(limits.max_duration_s * source.sample_rate)
    seen = 0
    try:
        for block in source.blocks():
            block = np.asarray(block, dtype=np.float32)
            if block.ndim == 1:
                block = block[:, None]
            if block.shape[1] != source.channels:
                raise DecodeError(f"decoder gave {block.shape[1]} channels, header said {source.channels}")
            seen += len(block)
            if seen > max_frames:
                raise DecodeError(f"longer than the limit of {limits.max_duration_s:.0f} s")
            mono = block.mean(axis=1, dtype=np.float32) if source.channels > 1 else block[:, 0]
            if not np.isfinite(mono).all():
                raise DecodeError("non-finite samples (NaN or Inf) in the audio")
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield tail
    finally:
        _close_quietly(source)


def read_span(
    path: Path,
    start_s: float,
    end_s: float,
    decoders: Mapping[str, Decoder],
    settings: Mapping[str, Any],
    limits: DecodeLimits,
) -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``path`` in [``start_s``, ``end_s``) and their rate, through the decoder plugins.

    A source that can seek (the optional ``AudioSource.seek``) is read from there at its own rate; any
    other is streamed from the start, resampled to 48 kHz, and closed once ``end_s`` is read.
    """
    opened = open_audio(path, decoders, settings, limits)
    source = opened.source
    seek = getattr(source, "seek", None)
    if callable(seek):
        try:
            at = seek(max(0.0, float(start_s)))
        except DecodeError:
            at = None
        if at is not None:
            try:
                return _read_after_seek(source, float(at), start_s, end_s), int(source.sample_rate)
            finally:
                _close_quietly(source)
        _close_quietly(source)  # the seek failed: read it again from the start
        opened = open_audio(path, decoders, settings, limits)
    blocks = mono_48k_blocks(opened, limits)
    try:
        pieces = frames_between(blocks, int(start_s * TARGET_RATE), int(end_s * TARGET_RATE))
    finally:
        blocks.close()  # type: ignore[attr-defined]  # a generator: closing it closes the decoder
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), TARGET_RATE


def frames_between(blocks: Iterable[np.ndarray], first: int, last: int) -> list[np.ndarray]:
    """The frames [``first``, ``last``) of a stream of blocks, counted from its start, in pieces; reads no block past
    ``last``."""
    pieces, seen = [], 0
    for block in blocks:
        lo, hi = max(first - seen, 0), min(last - seen, len(block))
        if hi > lo:
            pieces.append(block[lo:hi])
        seen += len(block)
        if seen >= last:
            break
    return pieces


def _read_after_seek(source: AudioSource, at_s: float, start_s: float, end_s: float) -> np.ndarray:
    """Mono samples up to ``end_s`` from a source just sought to ``at_s`` (at or before ``start_s``)."""
    rate = int(source.sample_rate)
    first = int(round(at_s * rate))
    skip, wanted = max(int(start_s * rate) - first, 0), max(int(end_s * rate) - max(first, int(start_s * rate)), 0)
    pieces, have = [], 0
    for block in source.blocks():
        block = np.asarray(block, dtype=np.float32)
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block
        if skip:
            dropped = min(skip, len(mono))
            mono, skip = mono[dropped:], skip - dropped
        take = mono[: wanted - have]
        if len(take):
            pieces.append(take)
            have += len(take)
        if have >= wanted:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
