"""Why a file failed, in words a person can act on.

Decoders fail in their libraries' words: libsndfile's "Internal psf_fseek() failed.", FFmpeg's
"Operation not permitted" for a corrupt MP4 or "Not yet implemented in FFmpeg, patches welcome", and
now and then a Python error from a binding ("'NoneType' object has no attribute 'sample_rate'").
This module turns what each decoder said into one reason: what is wrong with the file first
("corrupt or truncated MP4", "not an audio file", "unsupported AMR mode"), then what each decoder
found, in plain words. An internal error never becomes the reason; it is logged for whoever debugs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# (magic test, name) on the first bytes of the file, most specific first.
_MAGIC: list[tuple[re.Pattern[bytes], str]] = [
    (re.compile(rb"^(RIFF|RIFX|RF64)....WAVE", re.S), "WAV"),
    (re.compile(rb"^FORM....AIF[FC]", re.S), "AIFF"),
    (re.compile(rb"^fLaC"), "FLAC"),
    (re.compile(rb"^OggS.{22,}OpusHead", re.S), "Opus"),
    (re.compile(rb"^OggS.{22,}\x01vorbis", re.S), "Ogg Vorbis"),
    (re.compile(rb"^OggS"), "Ogg"),
    (re.compile(rb"^....ftyp", re.S), "MP4"),
    (re.compile(rb"^\x02?#!SILK_V3"), "SILK"),
    (re.compile(rb"^#!AMR-WB"), "AMR-WB"),
    (re.compile(rb"^#!AMR"), "AMR"),
    (re.compile(rb"^ID3"), "MP3"),
    (re.compile(rb"^\xff[\xf2\xf3\xfa\xfb]"), "MP3"),
    (re.compile(rb"^\xff[\xf1\xf9]"), "AAC"),
]
_BY_EXTENSION = {
    "wav": "WAV",
    "w64": "WAV",
    "rf64": "WAV",
    "flac": "FLAC",
    "ogg": "Ogg",
    "oga": "Ogg",
    "opus": "Opus",
    "mp3": "MP3",
    "m4a": "MP4",
    "mp4": "MP4",
    "3gp": "MP4",
    "aac": "AAC",
    "aif": "AIFF",
    "aiff": "AIFF",
    "caf": "CAF",
    "wma": "WMA",
    "webm": "WebM",
    "mka": "Matroska",
    "slk": "SILK",
    "silk": "SILK",
    "amr": "AMR",
    "awb": "AMR-WB",
    "pcm": "raw PCM",
    "raw": "raw PCM",
    "au": "AU",
}


def format_name(path: str | Path, head: bytes = b"") -> str | None:
    """The file's format in words: from its magic bytes, else its extension; None when neither says."""
    for pattern, name in _MAGIC:
        if pattern.match(head):
            return name
    return _BY_EXTENSION.get(Path(path).suffix.lower().lstrip("."))


def has_known_magic(head: bytes) -> bool:
    return any(pattern.match(head) for pattern, _ in _MAGIC)


# What a decoder said -> (kind, plain words). Kinds: unrecognised (not this format), unsupported (a valid file
# using something no decoder here reads), corrupt (damaged data). Matched in order, on the whole message.
_PLAIN: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"Format not recognised|File does not exist or is not a regular file \(possibly a pipe\?\)", re.I),
        "unrecognised",
        "format not recognised",
    ),
    (re.compile(r"^Invalid data found when processing input", re.I), "unrecognised", "invalid data"),
    (re.compile(r"^not an? [\w -]+ file \(no ", re.I), "unrecognised", ""),
    (re.compile(r"^End of file$", re.I), "corrupt", "ends before any audio"),
    (
        re.compile(r"^Error in [\w/]+ file\. (Malformed|Short|No) '?(\w+ ?)'? chunk( marker)?\.?$", re.I),
        "corrupt",
        "a missing or malformed chunk in the header",
    ),
    (re.compile(r"^Error in [\w/]+ file", re.I), "corrupt", "a malformed header"),
    (re.compile(r"Supported file format but file is malformed", re.I), "corrupt", "malformed file"),
    (
        re.compile(r"File contains data in an unimplemented format", re.I),
        "unsupported",
        "an encoding it does not implement",
    ),
    (re.compile(r"patches welcome|Not yet implemented", re.I), "unsupported", "a feature FFmpeg does not implement"),
    (
        re.compile(r"Function not implemented|Decoder not found|codec not (currently )?supported", re.I),
        "unsupported",
        "no decoder for this codec",
    ),
    (re.compile(r"flac decoder lost sync", re.I), "corrupt", "FLAC frames out of sync (damaged or cut data)"),
    (re.compile(r"unknown error in flac decoder", re.I), "corrupt", "FLAC data that does not decode"),
    (re.compile(r"channel changed mid stream", re.I), "corrupt", "the channel count changes mid-stream"),
    (
        re.compile(r"psf_fseek|psf_fread|psf_\w+\(\) failed", re.I),
        "corrupt",
        "the data ends before its header says it does",
    ),
    (
        re.compile(r"^Operation not permitted$|^Permission denied$", re.I),
        "corrupt",
        "a damaged container FFmpeg refuses to read",
    ),
    (
        re.compile(r"DEC_PAYLOAD_ERROR|DEC_\w+_ERROR|^SILK decoder: [A-Z_]+$"),
        "corrupt",
        "a packet that does not decode",
    ),
    (re.compile(r"SF_INFO|^Internal error", re.I), "corrupt", "a header with missing or impossible values"),
    (
        re.compile(r"^Immediate exit requested|^Resource temporarily unavailable", re.I),
        "corrupt",
        "a read that could not finish",
    ),
    (re.compile(r"^Cannot allocate memory", re.I), "corrupt", "sizes too large to allocate"),
    (re.compile(r"^No such file or directory", re.I), "corrupt", "a reference to data that is not there"),
    (re.compile(r"^Error number -?\d+ occurred", re.I), "corrupt", "data that does not decode"),
]
# A message that gives away an internal error of a decoder or its binding, not something about the file.
INTERNAL = re.compile(
    r"NoneType|Traceback|^\s*[A-Z][A-Za-z]*(Error|Exception|Warning)\b|\b[A-Z][A-Za-z]*(Error|Exception)\b|"
    r"object has no attribute|not subscriptable|object is not|unexpected keyword|positional argument|"
    r"index out of range|division by zero|unpack requires|invalid literal|cannot convert|can't convert|"
    r"out of bounds|overflow|unhashable|not iterable|got an unexpected|\bassert"
)
_OWN_KIND = [  # our own decoders' sentences, by what they mean
    (re.compile(r"^truncated|ends? mid|needs \d+ bytes|no complete frame|shrank", re.I), "corrupt"),
    (re.compile(r"^corrupt|claims \d+ bytes|checksum|CRC", re.I), "corrupt"),
    (re.compile(r"unsupported|not supported|has no \w+ decoder", re.I), "unsupported"),
    (re.compile(r"^no \w+ (frame|packet)", re.I), "corrupt"),
]


def plain_message(message: str) -> tuple[str, str]:
    """(kind, plain words) for one decoder's message. Kinds: unrecognised, unsupported, corrupt, internal, own."""
    message = " ".join(str(message).split())
    for pattern, kind, words in _PLAIN:
        if pattern.search(message):
            return kind, words or message
    if INTERNAL.search(message):
        return "internal", "an internal error of the decoder"
    for pattern, kind in _OWN_KIND:
        if pattern.search(message):
            return kind, message
    return "own", message


def _lead(kinds: list[str], fmt: str | None, known_magic: bool) -> str:
    what = fmt or "audio file"
    found = [k for k in kinds if k != "internal"]
    if found and all(k == "unrecognised" for k in found) and not known_magic:
        if len(found) < len(kinds):
            return "could not be decoded (one decoder failed internally, the others do not recognise the file)"
        return (
            "not an audio file (no decoder recognises it)"
            if fmt is None
            else f"not an audio file, or too damaged to read as {fmt}"
        )
    if "unsupported" in found and "corrupt" not in found:
        return f"unsupported {what} encoding"
    if not found:
        return "could not be decoded (the decoders failed internally)"
    return f"corrupt or truncated {what}"


def failure_reason(path: str | Path, head: bytes, said: Sequence[tuple[str, str]]) -> str:
    """One reason from what each decoder said (``(decoder, message)``, in the order they were tried).

    A message of our own that already says what to do (a limit, a sidecar, non-finite samples) leads
    as it is; otherwise the lead says what is wrong with the file, then each decoder's finding in plain
    words. Never an exception class name or a binding's internals.
    """
    fmt = format_name(path, head)
    plain = []
    for decoder, message in said:
        kind, words = plain_message(message)
        if kind == "internal":
            log.info("%s: decoder %s failed internally: %s", path, decoder, message)
        plain.append((decoder, kind, words))
    if not plain:
        return "no decoder handles this file"
    details = "; ".join(f"{d}: {w}" for d, _, w in plain)
    first_decoder, first_kind, first_words = plain[0]
    if first_kind == "own":  # our decoders' and checks' sentences are already plain and specific
        others = [(d, w) for d, k, w in plain[1:] if k not in ("unrecognised", "internal")]
        if not others:  # the rest do not recognise the file: their words add nothing
            return first_words
        return f"{first_decoder}: {first_words}" + "".join(f"; {d}: {w}" for d, w in others)
    lead = _lead([k for _, k, _ in plain], fmt, has_known_magic(head))
    return f"{lead}: {details}"


def stream_failure_reason(
    path: str | Path, head: bytes, decoder: str, message: str, refused: Sequence[tuple[str, str]] = ()
) -> str:
    """The reason for a file that opened but failed while decoding, with what the decoders tried before said."""
    kind, words = plain_message(message)
    if kind == "own" and not refused:
        return words
    if kind == "internal":
        log.info("%s: decoder %s failed internally while decoding: %s", path, decoder, message)
    if kind == "own":
        return f"{decoder}: {words}"
    said = [*refused, (decoder, message)]
    return failure_reason(path, head, said)
