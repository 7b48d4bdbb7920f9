"""Built-in decoder `pcm`: headerless PCM (.pcm, .raw), its layout from settings or from a sidecar file next to it.

The layout comes from the settings ``pcm.sample_rate`` (default 16000), ``pcm.channels`` (default 1) and
``pcm.sample_format`` (default ``s16le``; also ``s24le``, ``s32le``, ``f32le``, ``u8``). A sidecar file
named after the audio file plus ``.toml`` or ``.json`` (``take1.pcm`` -> ``take1.pcm.toml`` or
``take1.pcm.json``) overrides them for that one file; it holds the same keys without the ``pcm.`` prefix::

    # take1.pcm.toml
    sample_rate = 8000
    channels = 2
    sample_format = "s24le"

Keys left out of the sidecar keep their settings value; an unknown key, or both a .toml and a .json
sidecar, is a DecodeError (a typo must not silently decode the file at the wrong rate). A trailing
partial frame (a recording cut mid-frame) is dropped with a logged warning and the rest decodes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from soundsift import (
    SIDECAR_LIMIT,
    DecodeError,
    Decoder,
    FileTooLarge,
    NotRegularFile,
    hookimpl,
    open_regular,
    read_limited,
)

from .pcm_formats import SampleFormat, block_frames, check_stream, integer_setting, sample_format

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"sample_rate": 16_000, "channels": 1, "sample_format": "s16le"}
SIDECAR_SUFFIXES = (".toml", ".json")  # declared on the Decoder: the scan re-indexes a file when its sidecar changes
MAX_SIDECAR_BYTES = SIDECAR_LIMIT


def sidecar_for(path: Path) -> Path | None:
    """The sidecar of ``path`` (``<name>.toml`` or ``<name>.json``), None if there is none; DecodeError if both exist.

    Anything by that name counts, a FIFO or a broken link included: it is refused when read, never silently ignored.
    """
    found = [p for p in (path.with_name(path.name + s) for s in SIDECAR_SUFFIXES) if os.path.lexists(p)]
    if len(found) > 1:
        raise DecodeError(f"two sidecars, {found[0].name} and {found[1].name}: keep one")
    return found[0] if found else None


def read_sidecar(sidecar: Path) -> dict[str, Any]:
    """The keys of a sidecar file; DecodeError if it is unreadable, not a table or has unknown keys."""
    try:
        # Regular files only, opened without blocking and read with a limit: a FIFO, /dev/zero or a huge file is refused.
        text = read_limited(sidecar, MAX_SIDECAR_BYTES).decode("utf-8")
        values = tomllib.loads(text) if sidecar.suffix == ".toml" else json.loads(text)
    except (NotRegularFile, FileTooLarge) as exc:
        raise DecodeError(f"sidecar {sidecar.name} refused: {exc}") from None
    except OSError as exc:
        raise DecodeError(f"sidecar {sidecar.name} unreadable: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DecodeError(f"sidecar {sidecar.name} unreadable: not UTF-8 text") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"sidecar {sidecar.name} unreadable: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise DecodeError(f"sidecar {sidecar.name} must hold a table of {', '.join(DEFAULTS)}")
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise DecodeError(f"sidecar {sidecar.name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    return values


def pcm_layout(path: Path, settings: Mapping[str, Any]) -> tuple[int, int, SampleFormat]:
    """Sample rate, channels and sample format for ``path``: settings, overridden by its sidecar if any."""
    values = {key: settings.get(f"pcm.{key}", default) for key, default in DEFAULTS.items()}
    sidecar = sidecar_for(path)
    if sidecar is not None:
        values.update(read_sidecar(sidecar))
    try:
        sample_rate = integer_setting(values, "sample_rate", DEFAULTS["sample_rate"])
        channels = integer_setting(values, "channels", DEFAULTS["channels"])
        fmt = sample_format(values["sample_format"])
        check_stream(sample_rate, channels)
    except DecodeError as exc:
        raise DecodeError(
            f"sidecar {sidecar.name}: {exc}" if sidecar is not None else f"settings pcm.*: {exc}"
        ) from None
    return sample_rate, channels, fmt


class PcmSource:
    """A headerless PCM file read in blocks of whole frames (np.frombuffer on each read, no per-sample loop)."""

    def __init__(self, path: Path, settings: Mapping[str, Any]):
        self.sample_rate, self.channels, self.format = pcm_layout(path, settings)
        self.codec = f"pcm_{self.format.name}"
        self._frame_bytes = self.format.width * self.channels
        try:
            self._file = open_regular(path)
            size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
        self.frames = size // self._frame_bytes
        self.dropped_bytes = size % self._frame_bytes  # a partial final frame, never decoded
        if self.frames == 0:
            self._file.close()
            raise DecodeError(
                f"no complete frame: {size} bytes, one {self.codec} frame of {self.channels} channel(s) is {self._frame_bytes}"
            )
        self.warnings: list[str] = []
        if self.dropped_bytes:
            self.warnings.append(f"dropped a partial final frame ({self.dropped_bytes} of {self._frame_bytes} bytes)")
            log.warning(
                "%s: dropping a partial final frame (%d of %d bytes)", path, self.dropped_bytes, self._frame_bytes
            )
        self.duration_s = self.frames / self.sample_rate

    def blocks(self) -> Iterator[np.ndarray]:
        self._file.seek(0)
        step = block_frames(self.sample_rate, self.channels) * self._frame_bytes
        remaining = self.frames * self._frame_bytes  # the partial final frame is never read
        while remaining > 0:
            raw = self._file.read(min(step, remaining))
            whole = len(raw) - len(raw) % self._frame_bytes
            if whole:
                yield self.format.to_float32(raw[:whole] if whole != len(raw) else raw, self.channels)
            if len(raw) < min(step, remaining):
                raise DecodeError(f"file shrank while being read ({remaining - len(raw)} bytes missing)")
            remaining -= len(raw)

    def close(self) -> None:
        self._file.close()


def open_pcm(path: Path, settings: Mapping[str, Any]) -> PcmSource:
    """Open a headerless PCM file with the layout from settings or its sidecar."""
    return PcmSource(Path(path), settings)


@hookimpl
def register_decoders(register):
    register(Decoder(name="pcm", open=open_pcm, extensions=("pcm", "raw"), sidecar_suffixes=SIDECAR_SUFFIXES))
