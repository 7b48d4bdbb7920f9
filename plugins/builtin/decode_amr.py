"""Built-in decoder `amr`: AMR-NB (``#!AMR\\n``, 8 kHz) and AMR-WB (``#!AMR-WB\\n``, 16 kHz) files, through PyAV.

Files are recognised by their magic bytes whatever their name (phones and messengers save AMR as
.amr, .awb or even .mp3). The RFC 4867 storage format is parsed here, frame by frame (a frame
is a header byte whose frame type fixes the size, 20 ms of audio): open() walks it once to check it
and count frames (the exact duration), and blocks() feeds each frame to FFmpeg's decoder and streams
the PCM in ~1 s blocks. OpenCORE's decoders are preferred: FFmpeg's own ones refuse comfort-noise
(SID) and no-data frames, which phones write during silences; with them those frames become silence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from soundsift import DecodeError, Decoder, hookimpl, open_regular

from .pcm_formats import SAMPLE_FORMATS, block_frames, regroup

READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class AmrFlavour:
    """AMR-NB or AMR-WB: magic, rate, payload bytes after the header byte per frame type, decoders in preference order."""

    name: str
    magic: bytes
    sample_rate: int
    payload_bytes: tuple[int, ...]  # by frame type 0..15
    first_non_speech: int  # frame types from here on are SID / lost / no data
    decoders: tuple[str, ...]
    reserved: tuple[int, ...] = ()  # frame types no encoder writes (RFC 4867 5.3): a damaged file

    @property
    def frame_samples(self) -> int:
        return self.sample_rate // 50


# Sizes as in RFC 4867 section 5.3 (and FFmpeg's amr demuxer); reserved types carry no payload.
AMR_NB = AmrFlavour(
    "amrnb",
    b"#!AMR\n",
    8_000,
    (12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0),
    8,
    ("libopencore_amrnb", "amrnb"),
    reserved=(9, 10, 11, 12, 13, 14),
)
AMR_WB = AmrFlavour(
    "amrwb",
    b"#!AMR-WB\n",
    16_000,
    (17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0),
    9,
    ("libopencore_amrwb", "amrwb"),
    reserved=(10, 11, 12, 13),
)
MULTICHANNEL_MAGIC = (b"#!AMR_MC1.0\n", b"#!AMR-WB_MC1.0\n")


def amr_flavour(head: bytes) -> AmrFlavour:
    """The flavour announced by a file's first bytes, or DecodeError."""
    if head.startswith(MULTICHANNEL_MAGIC):
        raise DecodeError("multichannel AMR (#!AMR_MC1.0) is not supported")
    for flavour in (AMR_WB, AMR_NB):
        if head.startswith(flavour.magic):
            return flavour
    raise DecodeError("not an AMR file (no #!AMR or #!AMR-WB header)")


def amr_frames(fh: BinaryIO, flavour: AmrFlavour) -> Iterator[bytes]:
    """The frames (header byte + payload) of an open AMR file positioned after its magic; DecodeError if it ends mid-frame."""
    sizes = flavour.payload_bytes
    buf = b""
    pos = 0
    count = 0
    while True:
        chunk = fh.read(READ_BYTES)
        if not chunk:
            break
        buf = buf[pos:] + chunk
        pos = 0
        end = len(buf)
        while pos < end:
            mode = (buf[pos] >> 3) & 0x0F
            if mode in flavour.reserved:
                raise DecodeError(
                    f"unsupported AMR mode {mode} in frame {count + 1} (a reserved frame type: damaged data)"
                )
            size = 1 + sizes[mode]
            if pos + size > end:
                break
            yield buf[pos : pos + size]
            pos += size
            count += 1
    if pos < len(buf):
        needed = 1 + sizes[(buf[pos] >> 3) & 0x0F]
        raise DecodeError(f"truncated: frame {count + 1} needs {needed} bytes, {len(buf) - pos} remain")


def _decoder(flavour: AmrFlavour) -> av.CodecContext:
    for name in flavour.decoders:
        try:
            return av.CodecContext.create(name, "r")
        except Exception:  # not built into this FFmpeg
            continue
    raise DecodeError(f"this FFmpeg has no {flavour.name} decoder ({' or '.join(flavour.decoders)})")


def _frame_to_float32(frame: av.AudioFrame) -> np.ndarray:
    """One decoded mono frame (s16 from OpenCORE, fltp from FFmpeg's own decoders) -> (samples, 1) float32."""
    array = frame.to_ndarray().reshape(-1, 1)
    if array.dtype == np.int16:
        return SAMPLE_FORMATS["s16le"].to_float32(array.astype("<i2", copy=False), 1)
    return np.clip(array, -1.0, 1.0).astype(np.float32, copy=False)


class AmrSource:
    """An AMR-NB/WB file: frames parsed here, decoded by FFmpeg one by one, PCM yielded in ~1 s blocks."""

    channels = 1

    def __init__(self, path: Path):
        self._path = path
        try:
            with open_regular(path) as fh:
                self.flavour = amr_flavour(fh.read(16))
                fh.seek(len(self.flavour.magic))
                self.frames = sum(1 for _ in amr_frames(fh, self.flavour))  # validates the whole file
        except OSError as exc:
            raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
        if self.frames == 0:
            raise DecodeError(f"no {self.flavour.name} frame after the header")
        self.sample_rate = self.flavour.sample_rate
        self.codec = self.flavour.name
        self.duration_s = self.frames * self.flavour.frame_samples / self.sample_rate
        _decoder(self.flavour)  # fail at open, not mid-stream, if this FFmpeg lacks a decoder

    def _pcm_frames(self) -> Iterator[np.ndarray]:
        ctx = _decoder(self.flavour)
        silence = np.zeros((self.flavour.frame_samples, 1), dtype=np.float32)
        with open(self._path, "rb") as fh:
            fh.seek(len(self.flavour.magic))
            for index, data in enumerate(amr_frames(fh, self.flavour)):
                try:
                    decoded = ctx.decode(av.Packet(data))
                except av.FFmpegError as exc:
                    if (data[0] >> 3) & 0x0F >= self.flavour.first_non_speech:
                        yield silence  # FFmpeg's native decoders refuse SID / no-data frames
                        continue
                    raise DecodeError(f"frame {index + 1}: {exc.strerror or exc}") from None
                for frame in decoded:
                    yield _frame_to_float32(frame)
            try:
                for frame in ctx.decode(None):
                    yield _frame_to_float32(frame)
            except av.FFmpegError:
                pass  # nothing buffered: AMR decoders emit each frame as it comes

    def blocks(self) -> Iterator[np.ndarray]:
        yield from regroup(self._pcm_frames(), block_frames(self.sample_rate, 1))

    def close(self) -> None:
        pass  # blocks() opens and closes its own file handle


def open_amr(path: Path, settings: Mapping[str, Any]) -> AmrSource:
    """Open an AMR-NB or AMR-WB file (recognised by its magic bytes)."""
    return AmrSource(Path(path))


@hookimpl
def register_decoders(register):
    register(Decoder(name="amr", open=open_amr, extensions=("amr", "awb"), magic=(AMR_NB.magic, AMR_WB.magic)))
