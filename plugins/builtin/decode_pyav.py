"""Built-in decoder: FFmpeg through PyAV, for everything FFmpeg reads (mp3, m4a/aac, opus, wma, video tracks...)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np

from soundsift import DecodeError, Decoder, hookimpl

from .pcm_formats import regroup

BLOCK_FRAMES = 1 << 16

# FFmpeg demuxers of audio (or audio-bearing) containers; the extensions each declares are scanned, minus
# image and subtitle ones, plus common audio names FFmpeg leaves to probing (.oga, .opus, .spx are Ogg).
AUDIO_DEMUXERS = (
    "aac",
    "ac3",
    "aiff",
    "amr",
    "amrnb",
    "amrwb",
    "ape",
    "asf",
    "au",
    "caf",
    "dsf",
    "dts",
    "eac3",
    "flac",
    "matroska,webm",
    "mov,mp4,m4a,3gp,3g2,mj2",
    "mp3",
    "mpc",
    "mpc8",
    "ogg",
    "oma",
    "tak",
    "tta",
    "voc",
    "w64",
    "wav",
    "wv",
    "xwma",
)
EXTRA_EXTENSIONS = {"ogg": ("oga", "opus", "spx"), "mov,mp4,m4a,3gp,3g2,mj2": ("m4r",), "asf": ("wma",)}
NOT_AUDIO = frozenset(
    {
        "heic",
        "heif",
        "avif",
        "psp",
        "ism",
        "isma",
        "ismv",
        "mj2",
        "f4v",
        "mks",
        "mk3d",
        "mkv",
        "mov",
        "wmv",
        "apl",
        "mac",
    }
)


def ffmpeg_extensions() -> tuple[str, ...]:
    """Extensions of the audio containers this FFmpeg build can demux (av.formats_available)."""
    available = av.formats_available
    out: set[str] = set()
    for name in AUDIO_DEMUXERS:
        if name not in available:
            continue
        try:
            declared = av.ContainerFormat(name).extensions
        except Exception:  # a demuxer PyAV cannot describe: its extras only
            declared = set()
        out |= {e.lower() for e in declared} | set(EXTRA_EXTENSIONS.get(name, ()))
    return tuple(sorted(out - NOT_AUDIO))


def _ffmpeg_reason(exc: Exception) -> str:
    """PyAV's message without the errno and the repeated file name."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return exc.strerror
    if not isinstance(exc, av.FFmpegError):  # a binding's own error: named, so the indexer reports it as internal
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return str(exc).replace("\n", " ")


class PyAVSource:
    """The first audio stream of a container, decoded to float32 frames at its own rate."""

    def __init__(self, path: Path):
        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except Exception as exc:
            raise DecodeError(_ffmpeg_reason(exc)) from None
        streams = self._container.streams.audio
        if not streams:
            self._container.close()
            raise DecodeError("no audio stream")
        self._stream = streams[0]
        ctx = self._stream.codec_context
        if ctx is None:  # a stream whose codec this FFmpeg does not know (PyAV leaves no context)
            self._container.close()
            raise DecodeError("unsupported audio codec: this FFmpeg has no decoder for it")
        self.sample_rate = int(ctx.sample_rate or 0)
        self.channels = int(ctx.channels or 0)
        self.codec = ctx.name or "unknown"
        self.duration_s = None
        if self._stream.duration is not None and self._stream.time_base is not None:
            self.duration_s = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration:
            self.duration_s = self._container.duration / 1_000_000

    def blocks(self) -> Iterator[np.ndarray]:
        return regroup(self._frames(), BLOCK_FRAMES)

    def _frames(self) -> Iterator[np.ndarray]:
        # Packed float32 at the stream's own rate and layout; soxr resamples later, in one place.
        layout = self._stream.codec_context.layout
        resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)
        try:
            for frame in self._container.decode(self._stream):
                if frame.sample_rate != self.sample_rate or frame.layout.nb_channels != self.channels:
                    # A damaged frame header (an MP3 bit flip) announces another rate or layout mid-stream.
                    raise DecodeError(
                        f"a frame switches to {frame.sample_rate} Hz, {frame.layout.nb_channels} channel(s) "
                        f"mid-stream (the stream is {self.sample_rate} Hz, {self.channels}): damaged data"
                    )
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1, self.channels)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1, self.channels)
        except av.FFmpegError as exc:
            raise DecodeError(_ffmpeg_reason(exc)) from None

    def close(self) -> None:
        self._container.close()


def open_pyav(path: Path, settings: Mapping[str, Any]) -> PyAVSource:
    """Open ``path`` with FFmpeg (PyAV)."""
    return PyAVSource(path)


@hookimpl
def register_decoders(register):
    register(
        Decoder(
            name="ffmpeg",
            open=open_pyav,
            extensions=ffmpeg_extensions(),
            generic=True,
        )
    )
