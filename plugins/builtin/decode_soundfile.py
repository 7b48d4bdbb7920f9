"""Built-in decoder: libsndfile through soundfile (wav, flac, ogg/vorbis/opus, aiff, au, caf...)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from soundsift import DecodeError, Decoder, hookimpl

BLOCK_FRAMES = 1 << 16

# libsndfile's major formats (soundfile.available_formats()) -> the file extensions they are saved under.
# RAW is headerless (the pcm decoder's job, with a layout); MAT4/MAT5 are Matlab data files, rarely audio.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "WAV": ("wav",),
    "WAVEX": ("wav",),
    "RF64": ("rf64",),
    "W64": ("w64",),
    "AIFF": ("aiff", "aif", "aifc"),
    "AU": ("au", "snd"),
    "CAF": ("caf",),
    "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"),
    "MP3": ("mp3",),
    "AVR": ("avr",),
    "HTK": ("htk",),
    "SVX": ("8svx", "16sv"),
    "MPC2K": ("mpc2k",),
    "PAF": ("paf",),
    "PVF": ("pvf",),
    "SD2": ("sd2",),
    "SDS": ("sds",),
    "IRCAM": ("ircam",),
    "VOC": ("voc",),
    "NIST": ("nist", "sph"),
    "WVE": ("wve",),
    "XI": ("xi",),
    "RAW": (),
    "MAT4": (),
    "MAT5": (),
}


def soundfile_extensions() -> tuple[str, ...]:
    """The extensions of the formats this libsndfile build reads (an unlisted new format by its own name)."""
    out: list[str] = []
    for name in sorted(sf.available_formats()):
        for ext in FORMAT_EXTENSIONS.get(name, (name.lower(),)):
            if ext not in out:
                out.append(ext)
    return tuple(out)


def _reason(exc: Exception) -> str:
    """libsndfile's own sentence, without the file name soundfile wraps around it."""
    if not isinstance(exc, sf.LibsndfileError):  # a binding's own error: named, so the indexer reports it as internal
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return (getattr(exc, "error_string", None) or str(exc)).replace("\n", " ")


class SoundFileSource:
    """An open libsndfile handle read in blocks of 64k frames."""

    def __init__(self, path: Path):
        try:
            # The name's own bytes: soundfile encodes a str strictly, which fails on names that are not UTF-8.
            self._file = sf.SoundFile(os.fsencode(path))
        except Exception as exc:
            raise DecodeError(_reason(exc)) from None
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        frames = self._file.frames
        self.duration_s = frames / self.sample_rate if frames and self.sample_rate > 0 else None
        self.codec = f"{self._file.format}/{self._file.subtype}".lower()

    def blocks(self) -> Iterator[np.ndarray]:
        try:
            while True:
                block = self._file.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
        except sf.LibsndfileError as exc:
            raise DecodeError(_reason(exc)) from None

    def seek(self, seconds: float) -> float | None:
        """Move to ``seconds`` (clipped to the end); the position reached in seconds, None where the file cannot seek."""
        if not self._file.seekable():
            return None
        frame = min(int(seconds * self.sample_rate), self._file.frames)
        try:
            self._file.seek(frame)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DecodeError(_reason(exc)) from None
        return frame / self.sample_rate

    def close(self) -> None:
        self._file.close()


def open_soundfile(path: Path, settings: Mapping[str, Any]) -> SoundFileSource:
    """Open ``path`` with libsndfile."""
    return SoundFileSource(path)


@hookimpl
def register_decoders(register):
    register(
        Decoder(
            name="soundfile",
            open=open_soundfile,
            extensions=soundfile_extensions(),
            generic=True,
        )
    )
