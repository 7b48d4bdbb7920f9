"""A fuzz corpus: valid files of every format we decode, mutated in ways real archives and attackers do.

Each format starts from one small valid file made here (the demo encoders, pysilk for SILK, OpenCORE for
AMR, raw samples plus a sidecar for PCM) and is mutated deterministically from a seed: truncation (inside
the header and after it), bit flips (in the header and anywhere), header fields overwritten with absurd
values (sample rates, channel counts, sizes and durations), chunks repeated or cut out, garbage spliced
in, zero-length files and pure garbage with and without the format's magic bytes. PCM files are fuzzed
through their sidecars (absurd or malformed layouts) and their samples (NaN, partial frames).

Run ``python tests/fuzz_corpus.py --out DIR --per-format 300`` to write a corpus and index it; it prints
per-format figures (tried, indexed, failed with a reason, crashes, hangs, unclear reasons).
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FORMATS = ("wav", "flac", "ogg", "mp3", "m4a", "opus", "slk", "amr", "pcm")
BASE_SECONDS = 1.5

# A reason a person can act on: plain words. These give away an internal error instead.
UNCLEAR_REASON = re.compile(
    r"NoneType|Traceback|[A-Za-z]*(Error|Exception)\b|_ERROR\b|Internal error|SF_INFO|psf_|: [A-Z_]{4,}$|"
    r"object has no attribute|not subscriptable|"
    r"unexpected keyword|positional argument|psf_|patches welcome|Operation not permitted|"
    r"index out of range|division by zero|unpack requires|invalid literal"
)


def unclear(reason: str) -> bool:
    """True when ``reason`` leaks an internal error (an exception class, 'NoneType', a library's internals)."""
    return bool(UNCLEAR_REASON.search(reason))


# --- valid base files -----------------------------------------------------------------------


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)


def _silk_bytes(rate: int = 24_000) -> bytes:
    import pysilk

    pcm = (_tone(BASE_SECONDS, rate) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    pysilk.encode(io.BytesIO(pcm), out, rate, 24_000, tencent=True)
    return out.getvalue()


def _amr_bytes(tmp: Path) -> bytes:
    import av

    path = tmp / "base.amr"
    with av.open(str(path), "w", format="amr") as out:
        stream = out.add_stream("libopencore_amrnb", rate=8000)
        stream.layout = "mono"
        stream.bit_rate = 12_200
        frame = av.AudioFrame.from_ndarray(
            (_tone(BASE_SECONDS, 8000) * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path.read_bytes()


def base_file(fmt: str, tmp: Path) -> bytes:
    """The bytes of one small valid file of ``fmt`` (1.5 s of tones)."""
    from search.demo_audio import write_audio

    tmp.mkdir(parents=True, exist_ok=True)
    if fmt == "slk":
        return _silk_bytes()
    if fmt == "amr":
        return _amr_bytes(tmp)
    if fmt == "pcm":
        return (_tone(BASE_SECONDS, 16_000) * 32767).astype("<i2").tobytes()
    rate = 48_000 if fmt == "opus" else 16_000
    return write_audio(tmp / f"base.{fmt}", _tone(BASE_SECONDS, rate), rate).read_bytes()


# --- mutations ------------------------------------------------------------------------------

ABSURD_U32 = (0, 1, 3, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 1_000_000_000, 44_100 * 1000)
ABSURD_U16 = (0, 1, 0xFFFF, 0x8000, 255, 1000)


def _header_fields(fmt: str, data: bytes) -> list[tuple[int, str]]:
    """(offset, struct code) of header fields that size things: rates, channels, lengths."""
    fields: list[tuple[int, str]] = []
    if fmt == "wav" and data[:4] == b"RIFF":
        fields += [(4, "<I"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H"), (16, "<I"), (20, "<H")]
        pos = data.find(b"data")
        if pos > 0:
            fields.append((pos + 4, "<I"))
    elif fmt == "flac" and data[:4] == b"fLaC":
        # STREAMINFO: block sizes (8..11), frame sizes (12..17), rate/channels/bits/total samples (18..25)
        fields += [(8, ">H"), (10, ">H"), (12, ">I"), (18, ">I"), (21, ">I"), (22, ">I"), (5, ">H")]
    elif fmt in ("ogg", "opus"):
        for m in re.finditer(rb"OggS", data[:4096]):
            fields += [(m.start() + 6, "<Q"), (m.start() + 14, "<I"), (m.start() + 26, "B")]
        for magic, offs in (
            (b"\x01vorbis", [(11, "B"), (12, "<I"), (16, "<I"), (28, "B")]),
            (b"OpusHead", [(9, "B"), (10, "<H"), (12, "<I"), (18, "B")]),
        ):
            pos = data.find(magic)
            if pos >= 0:
                fields += [(pos + o, c) for o, c in offs]
    elif fmt == "m4a":
        for atom in (
            b"mdhd",
            b"mvhd",
            b"stsz",
            b"stco",
            b"stts",
            b"esds",
            b"mp4a",
            b"stsd",
            b"tkhd",
            b"moov",
            b"mdat",
            b"stsc",
        ):
            pos = data.find(atom)
            if pos >= 4:
                fields += [(pos - 4, ">I"), (pos + 12, ">I"), (pos + 16, ">I"), (pos + 20, ">I"), (pos + 24, ">H")]
    elif fmt == "mp3":
        pos = data.find(b"\xff\xfb")
        pos = pos if pos >= 0 else data.find(b"\xff\xf3")
        if pos >= 0:
            fields += [(pos + 1, "B"), (pos + 2, "B"), (pos + 3, "B")]
        if data[:3] == b"ID3":
            fields += [(6, ">I"), (3, "B")]
        for tag in (b"Xing", b"Info", b"LAME"):
            pos = data.find(tag)
            if pos >= 0:
                fields += [(pos + 4, ">I"), (pos + 8, ">I"), (pos + 12, ">I")]
    elif fmt == "slk":
        fields += [(0, "B"), (10, "<H"), (12, "<H")]
    elif fmt == "amr":
        fields += [(6, "B"), (7, "B"), (38, "B")]
    return [(o, c) for o, c in fields if o + struct.calcsize(c) <= len(data)]


def _overwrite_field(rng: random.Random, fmt: str, data: bytes) -> bytes:
    fields = _header_fields(fmt, data)
    out = bytearray(data)
    if not fields:
        return _overwrite_bytes(rng, data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        off, code = rng.choice(fields)
        size = struct.calcsize(code)
        value = rng.choice(
            ABSURD_U32 if size >= 4 else ABSURD_U16 if size == 2 else (0, 1, 0x7F, 0x80, 0xFF, 0x0F, 0xF0)
        )
        value &= (1 << (8 * size)) - 1
        out[off : off + size] = struct.pack(code, value)
    return bytes(out)


def _overwrite_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        off = rng.randrange(min(len(out), 128))
        width = rng.choice((1, 2, 4))
        out[off : off + width] = bytes([rng.choice((0x00, 0xFF, 0x7F, 0x80))]) * width
    return bytes(out[: len(data)])


def _flip_bits(rng: random.Random, data: bytes, region: int | None) -> bytes:
    out = bytearray(data)
    span = min(len(out), region) if region else len(out)
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        i = rng.randrange(span)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes, in_header: bool) -> bytes:
    cut = rng.randrange(1, min(len(data), 200)) if in_header else rng.randrange(len(data) // 8, len(data))
    return data[:cut]


def _splice(rng: random.Random, data: bytes) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 4096))
    kind = rng.choice(("repeat", "cut", "garbage"))
    if kind == "repeat":
        return data[:b] + data[a:b] * rng.randint(1, 20) + data[b:]
    if kind == "cut":
        return data[:a] + data[b:]
    return data[:a] + rng.randbytes(rng.randint(1, 2048)) + data[a:]


def _garbage(rng: random.Random, data: bytes, magic_len: int) -> bytes:
    head = data[:magic_len] if magic_len else b""
    return head + rng.randbytes(rng.choice((1, 7, 64, 500, 4096, 30_000)))


MAGIC_LEN = {"wav": 12, "flac": 4, "ogg": 36, "opus": 36, "mp3": 10, "m4a": 12, "slk": 10, "amr": 6, "pcm": 0}

# PCM: how a headerless file decodes is in its sidecar, so that is what is fuzzed (plus the samples themselves).
PCM_SIDECARS = [
    "sample_rate = 0",
    "sample_rate = -8000",
    "sample_rate = 1000000000000",
    "sample_rate = 3",
    "sample_rate = 800000",
    "sample_rate = 8000.5",
    'sample_rate = "fast"',
    "sample_rate = nan",
    "sample_rate = inf",
    "sample_rate = true",
    "channels = 0",
    "channels = -1",
    "channels = 1000",
    "channels = 65",
    "channels = 2.5",
    'channels = "two"',
    'sample_format = "mp3"',
    'sample_format = ""',
    "sample_format = 16",
    'sample_format = "s24le"',
    'sample_format = "f32le"',
    'sample_format = "u8"',
    'sample_format = "s32le"',
    "rate = 8000",
    "[pcm]\nsample_rate = 8000",
    "sample_rate = [8000]",
    "sample_rate = {a = 1}",
    "= broken",
    "sample_rate = 8000\nsample_rate = 9000",
    "\x00\x01\x02",
    "\xff\xfe",
    'sample_rate = 8000\nchannels = 64\nsample_format = "f32le"',
]
PCM_JSON_SIDECARS = [
    '{"sample_rate": 0}',
    "[1, 2]",
    '"text"',
    '{"channels": null}',
    '{"sample_rate": 1e400}',
    "{",
    "null",
    '{"sample_format": "s16le", "extra": 1}',
    '{"sample_rate": 44100, "channels": 2}',
]


def mutate(fmt: str, base: bytes, seed: int) -> tuple[bytes, str, dict[str, bytes]]:
    """(bytes, what was done, sidecars: suffix -> bytes) for the ``seed``-th mutation of ``base``."""
    rng = random.Random(f"{fmt}:{seed}")
    if fmt == "pcm":
        return _mutate_pcm(rng, base, seed)
    kind = [
        "truncate-header",
        "truncate",
        "flip-header",
        "flip",
        "field",
        "field",
        "field",
        "overwrite",
        "splice",
        "garbage-magic",
        "garbage",
        "flip+truncate",
    ][seed % 12]
    if seed == 0:
        return b"", "zero-length", {}
    if kind == "truncate-header":
        data = _truncate(rng, base, True)
    elif kind == "truncate":
        data = _truncate(rng, base, False)
    elif kind == "flip-header":
        data = _flip_bits(rng, base, 256)
    elif kind == "flip":
        data = _flip_bits(rng, base, None)
    elif kind == "field":
        data = _overwrite_field(rng, fmt, base)
    elif kind == "overwrite":
        data = _overwrite_bytes(rng, base)
    elif kind == "splice":
        data = _splice(rng, base)
    elif kind == "garbage-magic":
        data = _garbage(rng, base, MAGIC_LEN[fmt])
    elif kind == "garbage":
        data = _garbage(rng, base, 0)
    else:
        data = _truncate(rng, _flip_bits(rng, base, 512), False)
    return data, kind, {}


def _mutate_pcm(rng: random.Random, base: bytes, seed: int) -> tuple[bytes, str, dict[str, bytes]]:
    if seed == 0:
        return b"", "zero-length", {}
    kind = ["sidecar-toml", "sidecar-json", "samples", "odd-length", "both-sidecars", "nan-samples"][seed % 6]
    data = base
    if kind == "sidecar-toml":
        return data, kind, {".toml": PCM_SIDECARS[(seed // 6) % len(PCM_SIDECARS)].encode("utf-8", "surrogateescape")}
    if kind == "sidecar-json":
        return data, kind, {".json": PCM_JSON_SIDECARS[(seed // 6) % len(PCM_JSON_SIDECARS)].encode()}
    if kind == "samples":
        return _flip_bits(rng, data, None), kind, {}
    if kind == "odd-length":
        return (
            data[: rng.randrange(1, len(data))],
            kind,
            {".toml": rng.choice([b"channels = 3", b'sample_format = "s24le"', b""])},
        )
    if kind == "both-sidecars":
        return data, kind, {".toml": b"sample_rate = 8000", ".json": b'{"sample_rate": 8000}'}
    floats = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").copy()
    floats[rng.randrange(len(floats))] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
    return floats.tobytes(), kind, {".toml": b'sample_format = "f32le"'}


def write_corpus(
    out: Path, formats: tuple[str, ...] = FORMATS, per_format: int = 300, start: int = 0
) -> dict[str, list[Path]]:
    """Write ``per_format`` mutated files per format under ``out/<fmt>/`` (seeds start..start+per_format-1)."""
    written: dict[str, list[Path]] = {}
    for fmt in formats:
        base = base_file(fmt, out / "_base")
        folder = out / fmt
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for seed in range(start, start + per_format):
            data, kind, sidecars = mutate(fmt, base, seed)
            path = folder / f"{seed:04d}-{kind}.{fmt}"
            path.write_bytes(data)
            for suffix, content in sidecars.items():
                Path(str(path) + suffix).write_bytes(content)
            paths.append(path)
        written[fmt] = paths
    return written


# --- running a corpus -----------------------------------------------------------------------


def classify_outcome(status: str | None, reason: str | None) -> str:
    """indexed | failed (a plain reason) | unclear (a reason that leaks an internal error) | crash | hang | missing."""
    if status == "indexed":
        return "indexed"
    if status is None:
        return "missing"
    reason = reason or ""
    if reason.startswith("decoder crashed"):
        return "crash"
    if reason.startswith("decoder hung"):
        return "hang"
    if not reason.strip() or unclear(reason):
        return "unclear"
    return "failed"


def tally(rows: Iterator[tuple[str, str | None, str | None]], formats: tuple[str, ...] = FORMATS) -> dict[str, dict]:
    """Per format: tried, indexed, failed (with a plain reason), unclear, crashes, hangs, missing, and sample reasons."""
    table = {
        f: {"tried": 0, "indexed": 0, "failed": 0, "unclear": 0, "crash": 0, "hang": 0, "missing": 0, "examples": []}
        for f in formats
    }
    for path, status, reason in rows:
        fmt = Path(path).suffix.lstrip(".")
        if fmt not in table:
            continue
        t = table[fmt]
        outcome = classify_outcome(status, reason)
        t["tried"] += 1
        t[outcome] += 1
        if outcome in ("unclear", "crash", "hang", "missing"):
            t["examples"].append(f"{Path(path).name}: {reason}")
    return table


def index_corpus(
    corpus: Path, index_dir: Path, model: str, workers: int = 2, timeout_s: float = 30.0
) -> dict[str, dict]:
    """Index ``corpus`` in one run (the real runner, decode workers included) and tally what became of each file."""
    from indexer.settings import load_settings
    from search.api import SoundIndex

    settings = load_settings(
        index=index_dir, model=model, device="cpu", decode_workers=workers, decode_timeout_s=timeout_s
    )
    with SoundIndex.open(settings.index, settings=settings, create=True) as sx:
        sx.index([str(corpus / f) for f in FORMATS if (corpus / f).is_dir()], progress=False)
        rows = sx.store.cursor().execute("SELECT path, status, error FROM files").fetchall()
    seen = {r[0] for r in rows}
    expected = [str(p) for f in FORMATS if (corpus / f).is_dir() for p in sorted((corpus / f).glob(f"*.{f}"))]
    rows += [(p, None, None) for p in expected if p not in seen]
    return tally(iter(rows))


def format_table(table: dict[str, dict]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| format | tried | indexed | failed with a reason | unclear reason | crashes | hangs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = dict.fromkeys(("tried", "indexed", "failed", "unclear", "crash", "hang"), 0)
    for fmt, t in table.items():
        if not t["tried"]:
            continue
        lines.append(
            f"| {fmt} | {t['tried']} | {t['indexed']} | {t['failed']} | {t['unclear']} | {t['crash']} | {t['hang']} |"
        )
        for k in total:
            total[k] += t[k]
    lines.append(
        f"| all | {total['tried']} | {total['indexed']} | {total['failed']} | {total['unclear']} | {total['crash']} | {total['hang']} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the corpus (and the index, in OUT/.index)")
    parser.add_argument("--per-format", type=int, default=300)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--model", help="CLAP model dir (default: a tiny random CLAP built here)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f)
    t0 = time.monotonic()
    write_corpus(args.out, formats, args.per_format)
    t1 = time.monotonic()
    model = args.model
    if model is None:
        from indexer.tiny_clap import build_tiny_clap

        model = str(build_tiny_clap(Path(tempfile.mkdtemp(prefix="tiny-clap-"))))
    table = index_corpus(args.out, args.out / ".index", model, workers=args.workers)
    t2 = time.monotonic()
    print(format_table(table))
    print(f"\ncorpus written in {t1 - t0:.1f} s, indexed in {t2 - t1:.1f} s")
    for fmt, t in table.items():
        for example in t["examples"][:20]:
            print(f"  {fmt}: {example}")
    print(json.dumps({f: {k: v for k, v in t.items() if k != "examples"} for f, t in table.items()}))
    return 0 if all(t["unclear"] + t["crash"] + t["hang"] + t["missing"] == 0 for t in table.values()) else 1


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
