"""`make run`: generate a small archive, index it, search it and classify it, printing what a user would see."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from indexer.errors import ModelNotFound
from indexer.settings import DEFAULT_MODEL

ARCHIVE = [
    ("line1/bearing_ok.wav", "tone", 12.0, 44_100),
    ("line1/bearing_fault.flac", "bearing", 25.0, 48_000),
    ("line2/motor.mp3", "engine", 31.0, 44_100),
    ("line2/relay_click.ogg", "bark", 8.0, 22_050),
    ("street/glass_breaking.m4a", "glass", 14.0, 44_100),
    ("street/dog.opus", "bark", 11.0, 48_000),
    ("street/church_bell.wav", "bell", 20.0, 16_000),
    ("calls/hold_music.mp3", "chirp", 16.0, 44_100),
    ("calls/silence.wav", "silence", 5.0, 8_000),
]


def build_archive(root: Path) -> Path:
    """Write the demo files (plus one corrupt upload) under ``root/archive``; idempotent."""
    from search.demo_audio import synthesize, write_audio

    archive = root / "archive"
    for i, (name, kind, seconds, rate) in enumerate(ARCHIVE):
        path = archive / name
        if not path.exists():
            write_audio(path, synthesize(kind, seconds, rate, seed=i), rate)
    corrupt = archive / "uploads" / "corrupt.mp3"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    if not corrupt.exists():
        corrupt.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 8)
    return archive


def pick_model(root: Path, model: str | None) -> str:
    """The real checkpoint when it loads; otherwise the tiny random CLAP (the CLI then says scores are meaningless)."""
    from indexer.model import load_clap
    from indexer.tiny_clap import build_tiny_clap

    candidate = model or DEFAULT_MODEL
    try:
        load_clap(candidate, device="cpu")
        return candidate
    except ModelNotFound as exc:
        if model:
            raise
        reason = str(exc).split("(", 1)[1].split(")", 1)[0]
        print(
            f"note: real CLAP weights are unavailable ({reason}), so this demo uses a tiny random CLAP: every score "
            "below is meaningless. Get real weights with `huggingface-cli download laion/clap-htsat-fused` "
            "and run `soundsift demo --model laion/clap-htsat-fused`.",
            file=sys.stderr,
        )
        os.environ["SOUNDSIFT_TINY_NOTED"] = "1"  # the commands below need not say it again
        return str(build_tiny_clap(root / "tiny-clap"))


def run_demo(root: Path, model: str | None = None) -> None:
    """Index the demo archive and run the commands a new user would try, through the real CLI."""
    root.mkdir(parents=True, exist_ok=True)
    archive = build_archive(root)
    chosen = pick_model(root, model)
    index = root / "index"
    base = [sys.executable, "-m", "search.cli"]
    steps = [
        ["index", str(archive), "--index", str(index), "--model", chosen],
        ["stats", "--index", str(index)],
        ["search", "glass breaking", "dog barking", "轴承异响", "--index", str(index), "-k", "3"],
        [
            "classify",
            "--index",
            str(index),
            "--labels",
            "glass breaking, dog barking, church bell, engine humming",
            "--by",
            "file",
        ],
        [
            "classify-file",
            str(archive / "street" / "church_bell.wav"),
            "--model",
            chosen,
            "--labels",
            "church bell, dog barking, glass breaking",
        ],
    ]
    for step in steps:
        print(f"\n$ soundsift {' '.join(repr(a) if ' ' in a else a for a in step)}", flush=True)
        t = time.monotonic()
        code = subprocess.call(base + step)
        print(f"[{time.monotonic() - t:.1f} s, exit {code}]", flush=True)
        if code != 0:
            raise SystemExit(code)
