"""Clips: each matched segment, with seconds of context around it, cut from the original file at its own sample rate
and channels (through the decoder plugins) into its own file, plus ``clips.csv`` — training material and evidence."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.decode import DecodeLimits, frames_between, open_audio
from indexer.errors import BadInput
from plugins.contract import DecodeError

FORMATS = {"wav": ("WAV", "PCM_24"), "flac": ("FLAC", "PCM_24")}
CSV_COLUMNS = ["file", "source", "start", "end", "score", "label", "match_start", "match_end", "watch", "window_id"]


@dataclass
class Segment:
    """A span of a source file to cut: what matched, its score and label."""

    path: str
    start: float
    end: float
    score: float
    label: str | None
    watch: str | None = None
    window_id: int | None = None


def cut_native(path: Path, start_s: float, end_s: float, decoders, plugin_settings, limits: DecodeLimits):
    """Samples (frames, channels) of [start, end) at the file's own rate, streamed through the decoders; and the rate."""
    opened = open_audio(path, decoders, plugin_settings, limits)
    source = opened.source
    rate, channels = int(source.sample_rate), int(source.channels)
    first, last = int(round(start_s * rate)), int(round(end_s * rate))
    try:
        frames = (np.asarray(b, dtype=np.float32) for b in source.blocks())
        pieces = frames_between((b[:, None] if b.ndim == 1 else b for b in frames), first, last)
    finally:
        source.close()
    audio = np.concatenate(pieces) if pieces else np.zeros((0, channels), np.float32)
    return np.clip(np.nan_to_num(audio), -1.0, 1.0), rate


def _slug(text: str, limit: int = 60) -> str:
    return (re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE).strip("_") or "audio")[:limit]


def clip_name(seg: Segment, fmt: str, taken: set[str]) -> str:
    """``<score>_<source stem>_<start>-<end>.<fmt>``: sorts best first; a repeat gets a counter."""
    stem = _slug(Path(seg.path).stem)
    base = f"{seg.score:.4f}_{stem}_{seg.start:09.2f}-{seg.end:09.2f}"
    name, n = f"{base}.{fmt}", 1
    while name in taken:
        n += 1
        name = f"{base}_{n}.{fmt}"
    taken.add(name)
    return name


def write_clips(
    segments: list[Segment], out_dir: Path, context_s: float, fmt: str, decoders, plugin_settings, limits: DecodeLimits
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Write every segment (with ``context_s`` each side) flat in ``out_dir`` and ``clips.csv``; returns (rows, failures)."""
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if context_s < 0:
        raise BadInput(f"--context is seconds of audio around each clip, 0 or more, not {context_s:g}")
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = {p.name for p in out_dir.iterdir()}
    rows, failures = [], []
    container, subtype = FORMATS[fmt]
    for seg in sorted(segments, key=lambda s: (-s.score, s.path, s.start)):
        start = max(0.0, seg.start - context_s)
        try:
            audio, rate = cut_native(Path(seg.path), start, seg.end + context_s, decoders, plugin_settings, limits)
        except (DecodeError, OSError) as exc:
            failures.append((seg.path, str(exc)))
            continue
        if not len(audio):
            failures.append((seg.path, f"no audio between {start:.2f} s and {seg.end + context_s:.2f} s"))
            continue
        name = clip_name(seg, fmt, taken)
        tmp = out_dir / f".{name}.tmp"
        sf.write(str(tmp), audio, rate, format=container, subtype=subtype)
        tmp.replace(out_dir / name)
        rows.append(
            {
                "file": name,
                "source": seg.path,
                "start": round(start, 3),
                "end": round(start + len(audio) / rate, 3),
                "score": seg.score,
                "label": seg.label,
                "match_start": seg.start,
                "match_end": seg.end,
                "watch": seg.watch,
                "window_id": seg.window_id,
            }
        )
    with open(out_dir / "clips.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows, failures
