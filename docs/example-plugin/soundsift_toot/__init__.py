"""soundsift-toot: a decoder for the made-up TOOT format and a 'tempered' scoring policy, via the soundsift hooks."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from plugins.contract import DecodeError, Decoder, PolicyOptionError, PolicyResult, ScoringPolicy
from plugins.hookspecs import hookimpl

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
    """softmax(logits / temperature): the pipeline's probabilities, flattened (T > 1) or sharpened (T < 1)."""
    unknown = set(options) - {"temperature", "threshold", "logit_scale"}
    if unknown:
        raise PolicyOptionError(f"the tempered policy has no option {', '.join(sorted(unknown))}; it reads: temperature, threshold")
    temperature = options.get("temperature", 2.0)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise PolicyOptionError(f"temperature must be a positive number, not {temperature!r}")
    z = logits / float(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    scores = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    fired = np.zeros(scores.shape, dtype=bool)
    if scores.shape[1]:
        fired[np.arange(len(scores)), scores.argmax(axis=1)] = True
    if options.get("threshold") is not None:
        fired &= scores >= float(options["threshold"])
    return PolicyResult(scores, fired)


@hookimpl
def register_decoders(register):
    register(Decoder(name="toot", open=open_toot, extensions=("toot",), magic=(MAGIC,)))


@hookimpl
def register_scoring_policies(register):
    register(ScoringPolicy(
        name="tempered", score=score_tempered, description="softmax over logits / temperature",
        option_help={"temperature": "divide logits by this before the softmax (default 2)",
                     "threshold": "fire the best label only at this probability or more"},
    ))
