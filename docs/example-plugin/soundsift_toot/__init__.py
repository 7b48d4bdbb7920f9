"""soundsift-toot: a decoder for the made-up TOOT format and a 'tempered' scoring policy, via the soundsift hooks."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from soundsift import (
    DecodeError,
    Decoder,
    PolicyOptionError,
    PolicyResult,
    ScoringPolicy,
    best_label_fired,
    hookimpl,
    softmax,
)

MAGIC = b"TOOT"
HEADER = struct.Struct("<4sIHI")  # magic, sample rate, channels, frames
BLOCK_FRAMES = 65_536


class TootSource:
    """An open TOOT file, read BLOCK_FRAMES at a time (never the whole file in memory)."""

    codec = "toot-pcm16"

    def __init__(self, path: Path):
        self._fh = open(path, "rb")
        head = self._fh.read(HEADER.size)
        if len(head) < HEADER.size:
            self._fh.close()
            raise DecodeError("TOOT header is truncated")
        magic, self.sample_rate, self.channels, self.frames = HEADER.unpack(head)
        if magic != MAGIC:
            self._fh.close()
            raise DecodeError("not a TOOT file (no TOOT magic)")
        # soundsift checks sample rate, channels and duration against its limits before reading a block.
        self.duration_s = self.frames / self.sample_rate if self.sample_rate else None

    def blocks(self) -> Iterator[np.ndarray]:
        remaining = self.frames
        while remaining > 0:
            want = min(remaining, BLOCK_FRAMES)
            raw = self._fh.read(want * self.channels * 2)
            got = len(raw) // (2 * self.channels)
            if got == 0:
                raise DecodeError(f"TOOT data ends {remaining} frames early")
            pcm = np.frombuffer(raw[: got * self.channels * 2], dtype="<i2").reshape(got, self.channels)
            yield pcm.astype(np.float32) / 32768.0
            remaining -= got

    def close(self) -> None:
        self._fh.close()


def open_toot(path: Path, settings) -> TootSource:
    """Decoder.open: ``settings`` is soundsift's flat plugin view (``{"toot.option": value}``); TOOT needs none."""
    return TootSource(Path(path))


def score_tempered(logits, negative_logits, labels, stats, options) -> PolicyResult:
    """softmax(logits / temperature): the pipeline's probabilities, flattened (T > 1) or sharpened (T < 1).

    soundsift has already refused option names not in option_help; only the values are checked here.
    """
    temperature = options.get("temperature", 2.0)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise PolicyOptionError(f"temperature must be a positive number, not {temperature!r}")
    scores = softmax(logits / float(temperature))
    threshold = options.get("threshold")
    thresholds = np.full(scores.shape[1], -np.inf if threshold is None else float(threshold), np.float32)
    return PolicyResult(scores, best_label_fired(scores, thresholds))


@hookimpl
def register_decoders(register):
    register(Decoder(name="toot", open=open_toot, extensions=("toot",), magic=(MAGIC,)))


@hookimpl
def register_scoring_policies(register):
    register(
        ScoringPolicy(
            name="tempered",
            score=score_tempered,
            description="softmax over logits / temperature",
            option_help={
                "temperature": "divide logits by this before the softmax (default 2)",
                "threshold": "fire the best label only at this probability or more",
            },
        )
    )
