"""What the scan indexes: the extensions the loaded decoders declare, container sniffing for other names, sidecars.

A file whose extension no decoder declares is not skipped outright: its first bytes are compared with the
signatures of the audio containers the decoders read (RIFF/WAVE, FLAC, Ogg, MP3, MP4/3GP, AMR, SILK,
Wave64, CAF, AIFF, ...) and with the magic bytes decoders declare, so a renamed recording is still found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from plugins.contract import Decoder
from plugins.safe_files import open_regular

SNIFF_BYTES = 64


def _mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header (MP1/2/3) or an ADTS AAC header: 11 sync bits and valid layer/rate fields."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    if layer == 0:  # ADTS AAC: MPEG-4/2, layer bits 00, a valid sampling-frequency index
        return (head[1] & 0xF6) == 0xF0 and ((head[2] >> 2) & 0xF) < 13
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and bitrate not in (0, 15) and rate != 3


def _riff(form: bytes):
    return lambda h: h[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and h[8:12] == form


# (container name, test on the file head): signatures of audio containers the built-in decoders read.
CONTAINERS: tuple[tuple[str, object], ...] = (
    ("wav", _riff(b"WAVE")),
    ("w64", lambda h: h.startswith(b"riff\x2e\x91\xcf\x11")),
    ("flac", lambda h: h.startswith(b"fLaC")),
    ("ogg", lambda h: h.startswith(b"OggS")),
    ("mp3", lambda h: h.startswith(b"ID3")),
    ("mp4", lambda h: h[4:8] == b"ftyp"),  # MP4, M4A, 3GP, 3G2, MOV
    ("amr", lambda h: h.startswith(b"#!AMR")),
    ("silk", lambda h: h.startswith(b"#!SILK") or h.startswith(b"\x02#!SILK")),
    ("caf", lambda h: h.startswith(b"caff")),
    ("aiff", lambda h: h.startswith(b"FORM") and h[8:12] in (b"AIFF", b"AIFC")),
    ("au", lambda h: h.startswith(b".snd")),
    ("matroska", lambda h: h.startswith(b"\x1a\x45\xdf\xa3")),  # MKA, WebM
    ("asf", lambda h: h.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")),  # WMA
    ("ape", lambda h: h.startswith(b"MAC ")),
    ("wavpack", lambda h: h.startswith(b"wvpk")),
    ("mpeg-audio", _mpeg_audio_frame),  # last: the weakest signature
)


def sniff_container(head: bytes) -> str | None:
    """The name of the audio container ``head`` (a file's first bytes) starts like, or None."""
    for name, test in CONTAINERS:
        if test(head):  # type: ignore[operator]
            return name
    return None


@dataclass
class ScanFormats:
    """What the loaded decoders open: extensions to index, magic bytes to sniff, sidecar files they read."""

    extensions: frozenset[str]
    decoders: tuple[Decoder, ...] = ()
    sidecar_suffixes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls, decoders: Mapping[str, Decoder] | Iterable[Decoder], extra_extensions: Iterable[str] = ()
    ) -> ScanFormats:
        """The formats of ``decoders`` (a registry dict or a list), plus ``extra_extensions`` from the settings."""
        found = tuple(decoders.values() if isinstance(decoders, Mapping) else decoders)
        exts = {e.lower().lstrip(".") for d in found for e in d.extensions}
        exts |= {e.lower().lstrip(".") for e in extra_extensions}
        return cls(frozenset(exts), found, frozenset(s for d in found for s in d.sidecar_suffixes))

    def indexed_extension(self, path: str) -> bool:
        """True when a loaded decoder declares ``path``'s extension."""
        return os.path.splitext(path)[1].lower().lstrip(".") in self.extensions

    def sniff(self, path: str) -> str | None:
        """The container or decoder ``path``'s first bytes match (None: not audio we know); OSError if unreadable."""
        with open_regular(path) as fh:  # never blocks on a FIFO swapped in after the scan's stat
            head = fh.read(SNIFF_BYTES)
        for decoder in self.decoders:
            if decoder.magic and decoder.matches_magic(head):
                return decoder.name
        return sniff_container(head)

    def sidecars(self, path: str) -> list[str]:
        """The sidecar files of ``path`` that the decoders of its extension declare and that exist.

        Anything by a sidecar's name counts, a FIFO or a link to a device included: it is never read (the
        hash records what it is), and its file fails with the reason, not as a twin of another file.
        """
        out: list[str] = []
        for decoder in self.decoders:
            found = [str(s) for s in decoder.sidecars(path)]
            if decoder.sidecar_suffixes and decoder.handles_extension(path):
                found += [
                    str(path) + suffix for suffix in decoder.sidecar_suffixes if os.path.lexists(str(path) + suffix)
                ]
            for sidecar in found:
                if sidecar not in out:
                    out.append(sidecar)
        return out

    def sidecar_of(self, path: str) -> str | None:
        """The audio file ``path`` is a sidecar of (``take1.pcm.toml`` -> ``take1.pcm``), or None."""
        base, suffix = os.path.splitext(path)
        if suffix not in self.sidecar_suffixes or not os.path.isfile(base):
            return None
        if any(suffix in d.sidecar_suffixes and d.handles_extension(base) for d in self.decoders):
            return base
        return None
