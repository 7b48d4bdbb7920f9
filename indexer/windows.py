"""Windowing: cut a stream of 48 kHz mono blocks into fixed windows, the last one aligned to the end of the file.

A 25 s file with 10 s windows and a 10 s hop gives [0,10], [10,20], [15,25]; a file of one window or
less gives one short window, which the feature stage repeat-pads as ClapFeatureExtractor does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpan:
    """Where a window lies in its file, in samples at the index rate."""

    start: int
    length: int


def plan_windows(total: int, window: int, hop: int) -> list[WindowSpan]:
    """The window spans of a file of ``total`` samples (the same spans `WindowCutter` emits)."""
    if total <= window:
        return [WindowSpan(0, total)] if total > 0 else []
    spans = [WindowSpan(s, window) for s in range(0, total - window + 1, hop)]
    if spans[-1].start + window < total:
        spans.append(WindowSpan(total - window, window))
    return spans


class WindowCutter:
    """Streaming windowing that keeps at most one window plus one block of audio in memory."""

    def __init__(self, window: int, hop: int):
        self.window = window
        self.hop = hop
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # sample index of _buffer[0]
        self._next_start = 0
        self._last_end = 0
        self.total = 0

    def feed(self, block: np.ndarray) -> Iterator[tuple[WindowSpan, np.ndarray]]:
        """Add samples; yield every window they complete."""
        self._buffer = np.concatenate([self._buffer, block]) if len(self._buffer) else block
        self.total += len(block)
        while self._next_start + self.window <= self.total:
            offset = self._next_start - self._buffer_start
            yield WindowSpan(self._next_start, self.window), self._buffer[offset : offset + self.window].copy()
            self._last_end = self._next_start + self.window
            self._next_start += self.hop
        # Keep only what a later window (or the end-aligned tail) can still need.
        keep_from = max(self._buffer_start, min(self._next_start, self.total - self.window))
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start :]
            self._buffer_start = keep_from

    def finish(self) -> Iterator[tuple[WindowSpan, np.ndarray]]:
        """Yield the end-aligned last window, or the single short window of a short file."""
        if self.total == 0:
            return
        if self._last_end == 0:  # shorter than one window: nothing emitted yet
            yield WindowSpan(0, self.total), self._buffer[: self.total].copy()
        elif self._last_end < self.total:
            start = self.total - self.window
            offset = start - self._buffer_start
            yield WindowSpan(start, self.window), self._buffer[offset : offset + self.window].copy()
