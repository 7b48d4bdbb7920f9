"""A compact picture of audio for the page: min/max per bucket and a small log-mel image, built block by block.

Nothing holds the whole file: 10 ms buckets (min, max, power) and 0.1 s mel columns are kept as blocks
stream past, then pooled to the number of points and columns asked for. An indexed file is read at its own
sample rate (no resampling to 48 kHz for a picture).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from indexer.decode import DecodeLimits, open_audio
from search.core.results import AudioInfo, Envelope

BUCKET_S = 0.01
MEL_COLUMN_S = 0.1
MEL_BANDS = 64
MEL_FMAX = 14_000.0  # CLAP's own mel range ends here
MAX_POINTS = 20_000
MAX_MEL_WIDTH = 4_000
MAX_MEL_FRAMES = 100_000  # frames analysed per file at most (longer files: every n-th frame)
FLOOR_DB = -100.0
# a dark-to-bright colour ramp (black, purple, red, orange, pale yellow) for the mel image
_RAMP = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64)


def mel_filters(sample_rate: int, n_fft: int, bands: int = MEL_BANDS, fmax: float = MEL_FMAX) -> np.ndarray:
    """(n_fft // 2 + 1, bands) triangular filters on the HTK mel scale from 0 Hz to min(fmax, Nyquist)."""
    fmax = min(fmax, sample_rate / 2)
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(0.0, mel(fmax), bands + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower = (freqs[:, None] - edges[None, :-2]) / np.maximum(edges[1:-1] - edges[:-2], 1e-9)
    upper = (edges[None, 2:] - freqs[:, None]) / np.maximum(edges[2:] - edges[1:-1], 1e-9)
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


class EnvelopeBuilder:
    """Feed mono float32 blocks at ``sample_rate``; `build` pools what was seen into an `Envelope`."""

    def __init__(self, sample_rate: int, start_s: float = 0.0, mel: bool = True, expected_s: float | None = None):
        self.sample_rate = int(sample_rate)
        self.start_s = float(start_s)
        self.bucket = max(1, int(round(self.sample_rate * BUCKET_S)))
        self.samples = 0
        self._tail = np.zeros(0, np.float32)  # samples not yet making a whole bucket
        self._mins: list[np.ndarray] = []
        self._maxs: list[np.ndarray] = []
        self._power: list[np.ndarray] = []
        self.mel = mel
        self.n_fft = 1 << int(np.clip(round(np.log2(self.sample_rate * 0.02)), 7, 11))  # ~20 ms frames
        self._filters = mel_filters(self.sample_rate, self.n_fft) if mel else None
        # Each band's non-zero bins: the projection runs band by band (no threaded BLAS call on tiny matrices,
        # which crawls on a busy machine).
        self._bands = (
            []
            if self._filters is None
            else [
                (int(nz[0]), int(nz[-1]) + 1, self._filters[nz[0] : nz[-1] + 1, k].copy())
                for k, nz in ((k, np.flatnonzero(self._filters[:, k])) for k in range(self._filters.shape[1]))
                if len(nz)
            ]
        )
        # A long file is pictured from every stride-th frame: the image has a few hundred columns, not 300,000.
        expected_frames = (expected_s or 0) * self.sample_rate / self.n_fft
        self.stride = max(1, int(np.ceil(expected_frames / MAX_MEL_FRAMES)))
        self._hann = np.hanning(self.n_fft).astype(np.float32)
        self.column = max(self.n_fft, int(round(self.sample_rate * MEL_COLUMN_S)))
        self._mel_tail = np.zeros(0, np.float32)
        self._mel_frames = 0  # frames analysed so far (frame f starts at sample f * n_fft)
        self._mel_cols: list[np.ndarray] = []
        self._mel_sums: list[np.ndarray] = []
        self._mel_counts: list[np.ndarray] = []

    def feed(self, block: np.ndarray) -> None:
        """Add the next samples of the stream."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not len(block):
            return
        self.samples += len(block)
        x = np.concatenate([self._tail, block]) if len(self._tail) else block
        whole = len(x) // self.bucket * self.bucket
        if whole:
            b = x[:whole].reshape(-1, self.bucket)
            self._mins.append(b.min(axis=1))
            self._maxs.append(b.max(axis=1))
            self._power.append(np.einsum("ij,ij->i", b, b, dtype=np.float64).astype(np.float32) / self.bucket)
        self._tail = x[whole:].copy()
        if self.mel:
            self._feed_mel(block)

    def _feed_mel(self, block: np.ndarray) -> None:
        # Frames side by side (hop = frame length): a picture needs coverage, not overlap, and it halves the work.
        x = np.concatenate([self._mel_tail, block]) if len(self._mel_tail) else block
        n = len(x) // self.n_fft
        self._mel_tail = x[n * self.n_fft :].copy()
        if not n:
            return
        index = np.arange(self._mel_frames, self._mel_frames + n)
        self._mel_frames += n
        keep = np.flatnonzero(index % self.stride == 0)
        if not len(keep):
            return
        frames = x[: n * self.n_fft].reshape(n, self.n_fft)[keep] * self._hann
        spectrum = np.fft.rfft(frames, axis=1)
        spec_power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        power = np.zeros((len(keep), len(self._bands)), np.float32)
        for k, (lo, hi, weights) in enumerate(self._bands):
            power[:, k] = spec_power[:, lo:hi] @ weights
        cols = (index[keep] * self.n_fft) // self.column
        n = len(keep)
        edges = np.flatnonzero(np.diff(cols)) + 1
        starts = np.concatenate([[0], edges])
        self._mel_cols.append(cols[starts])
        self._mel_sums.append(np.add.reduceat(power, starts, axis=0))
        self._mel_counts.append(np.diff(np.concatenate([starts, [n]])))

    def build(self, points: int = 1000, mel_width: int = 600) -> Envelope:
        """Pool the buckets into ``points`` (min, max, RMS) and the mel columns into a ``mel_width``-wide PNG."""
        points = int(np.clip(points, 1, MAX_POINTS))
        mins, maxs, power = self._buckets()
        duration = self.samples / self.sample_rate
        n = len(mins)
        if n == 0:
            return Envelope(
                start=self.start_s, duration=duration, points=0, min=[], max=[], sample_rate=self.sample_rate
            )
        points = min(points, n)
        groups = np.linspace(0, n, points + 1).astype(np.int64)[:-1]
        lo = np.minimum.reduceat(mins, groups)
        hi = np.maximum.reduceat(maxs, groups)
        counts = np.diff(np.concatenate([groups, [n]]))
        rms = np.sqrt(np.add.reduceat(power.astype(np.float64), groups) / counts)
        env = Envelope(
            start=self.start_s,
            duration=duration,
            points=points,
            min=np.round(lo, 4).tolist(),
            max=np.round(hi, 4).tolist(),
            rms_db=np.round(20 * np.log10(np.maximum(rms, 1e-5)), 1).tolist(),
            sample_rate=self.sample_rate,
        )
        if self.mel and mel_width > 0:
            image = self._mel_image(int(np.clip(mel_width, 1, MAX_MEL_WIDTH)))
            if image is not None:
                env.mel_png = base64.b64encode(png_rgb(colourise(image))).decode()
                env.mel_bands, env.mel_width = image.shape[0], image.shape[1]
                env.mel_fmax = float(min(MEL_FMAX, self.sample_rate / 2))
        return env

    def _buckets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mins, maxs, power = list(self._mins), list(self._maxs), list(self._power)
        if len(self._tail):  # the last, partial bucket
            mins.append(self._tail.min(keepdims=True))
            maxs.append(self._tail.max(keepdims=True))
            power.append(np.array([np.mean(np.square(self._tail, dtype=np.float64))], np.float32))
        if not mins:
            return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(mins), np.concatenate(maxs), np.concatenate(power)

    def _mel_image(self, width: int) -> np.ndarray | None:
        """(bands, columns) log-mel in dB, low frequencies in the last row (so the image reads bottom-up)."""
        if not self._mel_cols:
            return None
        cols = np.concatenate(self._mel_cols)
        total = int(cols.max()) + 1
        sums = np.zeros((total, len(self._bands)), np.float64)
        counts = np.zeros(total, np.float64)
        np.add.at(sums, cols, np.concatenate(self._mel_sums))
        np.add.at(counts, cols, np.concatenate(self._mel_counts))
        width = min(width, total)
        groups = np.linspace(0, total, width + 1).astype(np.int64)[:-1]
        pooled = np.add.reduceat(sums, groups, axis=0) / np.maximum(np.add.reduceat(counts, groups), 1)[:, None]
        db = 10.0 * np.log10(np.maximum(pooled, 1e-10))
        return db.T[::-1]


def colourise(db: np.ndarray, dynamic_range: float = 80.0) -> np.ndarray:
    """dB values to RGB bytes: the loudest cell bright, ``dynamic_range`` dB below it black."""
    top = float(np.max(db)) if db.size else 0.0
    t = np.clip((db - (top - dynamic_range)) / dynamic_range, 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(np.int64), len(_RAMP) - 2)
    f = (t - i)[..., None]
    return np.round(_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).astype(np.uint8)


def png_rgb(rgb: np.ndarray) -> bytes:
    """A minimal PNG (8-bit RGB, no filtering) of an (height, width, 3) uint8 array."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _mono_native_blocks(source, limits: DecodeLimits) -> Iterator[np.ndarray]:
    seen, most = 0, int(limits.max_duration_s * source.sample_rate)
    for block in source.blocks():
        block = np.asarray(block, dtype=np.float32)
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 and block.shape[1] > 1 else block.reshape(-1)
        seen += len(mono)
        if seen > most:
            break
        yield np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)


def file_envelope(
    path: Path,
    decoders: Mapping[str, Any],
    plugin_settings: Mapping[str, Any],
    limits: DecodeLimits,
    points: int = 1000,
    mel_width: int = 600,
    start_s: float = 0.0,
    end_s: float | None = None,
    mel: bool = True,
) -> tuple[Envelope, AudioInfo]:
    """The envelope of ``path`` (or of its span [start_s, end_s)) read block by block at the file's own rate."""
    opened = open_audio(Path(path), decoders, plugin_settings, limits)
    source = opened.source
    info = AudioInfo(
        duration=source.duration_s,
        sample_rate=source.sample_rate,
        channels=source.channels,
        codec=getattr(source, "codec", None),
        decoder=opened.decoder,
    )
    rate = int(source.sample_rate)
    first = int(round(start_s * rate))
    last = None if end_s is None else int(round(end_s * rate))
    span = (
        None if info.duration is None else (min(info.duration, end_s) if end_s is not None else info.duration) - start_s
    )
    builder = EnvelopeBuilder(rate, start_s=first / rate, mel=mel, expected_s=span)
    seen = 0
    try:
        for mono in _mono_native_blocks(source, limits):
            lo, hi = max(first - seen, 0), len(mono) if last is None else min(last - seen, len(mono))
            if hi > lo:
                builder.feed(mono[lo:hi])
            seen += len(mono)
            if last is not None and seen >= last:
                break
    finally:
        try:
            source.close()
        except Exception:
            pass
    if info.duration is None and last is None:
        info.duration = seen / rate
    return builder.build(points, mel_width), info
