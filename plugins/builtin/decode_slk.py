"""Built-in decoder `slk`: SILK v3 as WeChat/QQ (leading 0x02 byte) and Skype write it, through silk-python (pysilk).

A SILK file is ``[0x02]#!SILK_V3`` then packets, each a little-endian int16 byte count and that many
bytes; the SILK SDK's own encoder ends Skype-style files with a count of -1 (0xFFFF), which pysilk
would misread, so the stream is cut there. SILK carries no sample rate: the decoder synthesises at
``slk.sample_rate`` (default 24000, SILK's highest internal rate; one of 8000, 12000, 16000, 24000,
32000, 44100, 48000).

The compressed file is read whole (about 3 KB per second of audio; files beyond `MAX_FILE_BYTES`,
some ten hours, are refused); the PCM is streamed: pysilk.decode runs in a thread, writing into a
bounded queue that blocks() drains about one second at a time, so a long file is never held as PCM.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pysilk

from soundsift import DecodeError, Decoder, hookimpl, open_regular

from .pcm_formats import SAMPLE_FORMATS, block_frames, check_stream, integer_setting

MAGIC = b"#!SILK_V3"
TENCENT_MAGIC = b"\x02" + MAGIC
SILK_RATES = (8000, 12000, 16000, 24000, 32000, 44100, 48000)
DEFAULT_RATE = 24_000
MAX_PACKET_BYTES = 5 * 1024  # the SDK's MAX_BYTES_PER_FRAME * MAX_INPUT_FRAMES
MAX_FILE_BYTES = 128 * 1024 * 1024
QUEUE_BLOCKS = 4  # decoded blocks the thread may run ahead of the consumer

log = logging.getLogger(__name__)
_S16 = SAMPLE_FORMATS["s16le"]
_END = object()


class _Stopped(Exception):
    """Raised inside pysilk's write callback to end a decode nobody reads any more."""


def silk_payload(data: bytes) -> tuple[bytes, int, int]:
    """Header and whole packets of a SILK file, the packet count and the count of empty packets left out.

    The -1 end mark and anything after it are cut. An empty packet is how the SDK marks a lost one;
    pysilk cannot conceal it (DEC_PAYLOAD_ERROR), so it is left out (20 ms shorter, logged).
    DecodeError if the header is missing, a packet is over SILK's maximum or the file ends mid-packet.
    """
    if data.startswith(TENCENT_MAGIC):
        start = len(TENCENT_MAGIC)
    elif data.startswith(MAGIC):
        start = len(MAGIC)
    else:
        raise DecodeError("not a SILK v3 file (no #!SILK_V3 header)")
    pos, packets, empty = start, 0, 0
    kept = [data[:start]]  # pysilk reads the 0x02 byte itself; the header stays as written
    while pos < len(data):
        if pos + 2 > len(data):
            raise DecodeError(f"truncated: 1 stray byte after packet {packets + empty}")
        (size,) = struct.unpack_from("<h", data, pos)
        if size < 0:  # the SDK encoder's end mark
            break
        if size > MAX_PACKET_BYTES:
            raise DecodeError(
                f"corrupt: packet {packets + empty + 1} claims {size} bytes (SILK's maximum is {MAX_PACKET_BYTES})"
            )
        if pos + 2 + size > len(data):
            raise DecodeError(
                f"truncated: packet {packets + empty + 1} needs {size} bytes, {len(data) - pos - 2} remain"
            )
        if size:
            kept.append(data[pos : pos + 2 + size])
            packets += 1
        else:
            empty += 1
        pos += 2 + size
    if packets == 0:
        raise DecodeError("no SILK packet after the header")
    return b"".join(kept), packets, empty


class _QueueSink(io.RawIOBase):
    """The file object pysilk writes PCM into: gathers ~1 s of bytes, then hands it to the queue (blocking when full)."""

    def __init__(self, out: queue.Queue, stop: threading.Event, block_bytes: int):
        super().__init__()
        self._out, self._stop, self._block_bytes = out, stop, block_bytes
        self._held = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._held += data
        while len(self._held) >= self._block_bytes:
            put(self._out, bytes(self._held[: self._block_bytes]), self._stop)
            del self._held[: self._block_bytes]
        return len(data)

    def hand_over(self) -> None:
        """Hand over what is left (the last, shorter block)."""
        if self._held:
            put(self._out, bytes(self._held), self._stop)
            self._held.clear()


def put(out: queue.Queue, item: object, stop: threading.Event) -> None:
    """Put ``item`` on ``out``, waiting while it is full, unless the reader has stopped (then raise _Stopped)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stopped


class SilkSource:
    """A SILK v3 file decoded to mono 16-bit PCM at ``slk.sample_rate``, streamed in ~1 s blocks."""

    channels = 1
    codec = "silk"
    duration_s = None  # a packet holds 1 to 5 frames of 20 ms: only decoding tells how many

    def __init__(self, path: Path, settings: Mapping[str, Any]):
        self.sample_rate = integer_setting(settings, "slk.sample_rate", DEFAULT_RATE)
        check_stream(self.sample_rate, self.channels)
        if self.sample_rate not in SILK_RATES:
            raise DecodeError(
                f"slk.sample_rate {self.sample_rate} Hz: SILK decodes at {', '.join(map(str, SILK_RATES))} Hz"
            )
        try:
            with open_regular(path) as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    raise DecodeError(
                        f"{size} bytes is beyond any SILK recording (limit {MAX_FILE_BYTES // 2**20} MiB)"
                    )
                data = fh.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise DecodeError(f"grew beyond any SILK recording while read (limit {MAX_FILE_BYTES // 2**20} MiB)")
        except OSError as exc:
            raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
        self._payload, self.packets, self.lost_packets = silk_payload(data)
        self.warnings: list[str] = []
        if self.lost_packets:
            self.warnings.append(f"left out {self.lost_packets} empty (lost) SILK packet(s)")
            log.warning("%s: left out %d empty (lost) SILK packet(s)", path, self.lost_packets)
        self._stops: list[threading.Event] = []

    def blocks(self) -> Iterator[np.ndarray]:
        out: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        stop = threading.Event()
        self._stops.append(stop)
        sink = _QueueSink(out, stop, block_frames(self.sample_rate, 1) * _S16.width)

        def decode() -> None:
            try:
                pysilk.decode(io.BytesIO(self._payload), sink, self.sample_rate)
                sink.hand_over()
                put(out, _END, stop)
            except _Stopped:
                pass
            except Exception as exc:  # pysilk.SilkError and friends: handed to the reader
                try:
                    put(out, exc, stop)
                except _Stopped:
                    pass

        worker = threading.Thread(target=decode, name="silk-decode", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    item = out.get(timeout=0.5)
                except queue.Empty:
                    if worker.is_alive():
                        continue
                    if out.empty():  # stopped by close() from elsewhere, or died without a word
                        raise DecodeError("SILK decoder stopped before the end of the file") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise DecodeError(f"SILK decoder: {item}") from None
                raw = item[: len(item) - len(item) % _S16.width]
                yield _S16.to_float32(raw, 1)
        finally:
            stop.set()  # the thread's next write (or its wait on a full queue) ends it
            worker.join(timeout=5)

    def close(self) -> None:
        for stop in self._stops:
            stop.set()


def open_silk(path: Path, settings: Mapping[str, Any]) -> SilkSource:
    """Open a SILK v3 file (WeChat/QQ or Skype flavour)."""
    return SilkSource(Path(path), settings)


@hookimpl
def register_decoders(register):
    register(Decoder(name="slk", open=open_silk, extensions=("slk", "silk"), magic=(MAGIC, TENCENT_MAGIC)))
