"""One consumer of decode events for every job that reads audio (indexing, tagging, one-file classification).

The decode workers send events per file (opened, windows, decoded, failed). `WindowStream` turns them into
what a job acts on: `WindowsBatch` (windows to embed or classify together, at most ``batch_size``, grouped
so a batch can be stacked), `FileDone` once every window of a file has been handed out in a batch, and the
`FileOpened` / `FileFailed` events as they come (a failed file's windows still waiting for a batch are
dropped first, so nothing of it is half-processed). Progress is reported once per finished file. The
consumer handles each item before asking for the next, so at `FileDone` the file's windows are all done.

    stream = WindowStream(events, batch_size=32, files_total=len(paths), on_progress=report)
    for item in stream:
        if isinstance(item, WindowsBatch): embed(item.windows)
        elif isinstance(item, FileDone): commit(item.file_idx)
        elif isinstance(item, FileFailed): record(item.file_idx, item.reason)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from indexer.decode_workers import FileDecoded, FileFailed, FileOpened, WindowsDecoded, WindowsEmbedded


@dataclass
class StreamWindow:
    """One window of one file: where it starts and how long it is (samples at 48 kHz), its audio."""

    file_idx: int
    start: int
    length: int
    audio: np.ndarray  # (window,) float32, zero after ``length`` (as the workers send it) or exactly cut
    ref: Any = None  # what the job's ``group`` attached (e.g. the stored window id)


@dataclass
class WindowsBatch:
    """Windows to process together (all of one ``group``)."""

    windows: list[StreamWindow]
    group: Hashable = None


@dataclass
class FileDone:
    """Every window of a file has been handed out; ``opened`` is what the decoder reported (None if unknown)."""

    file_idx: int
    samples: int
    opened: FileOpened | None = None


StreamItem = WindowsBatch | FileDone | FileOpened | FileFailed | WindowsEmbedded


class Framer(Protocol):
    """How a decoded event becomes windows: the workers' windows as sent (`WorkerWindows`), or cut again."""

    def windows(self, event: WindowsDecoded) -> Iterable[StreamWindow]: ...

    def finish(self, file_idx: int) -> Iterable[StreamWindow]:
        """Windows still held when the file's stream ends (or stops early)."""
        ...

    def complete(self, file_idx: int) -> bool:
        """True once nothing more of this file is wanted (the stream stops reading it)."""
        ...


class WorkerWindows:
    """The workers' windows, one per decoded row."""

    def windows(self, event: WindowsDecoded) -> Iterator[StreamWindow]:
        for start, length, audio in zip(event.starts, event.lengths, event.audio):
            yield StreamWindow(event.file_idx, int(start), int(length), audio)

    def finish(self, file_idx: int) -> Iterable[StreamWindow]:
        return ()

    def complete(self, file_idx: int) -> bool:
        return False


@dataclass
class WindowStream:
    """Batches, drops a failed file's windows, finishes files and reports progress; iterate it once.

    ``group(window)`` names the batch a window joins (windows of one batch are stacked together) or returns
    None to skip it; by default every window joins one group. ``on_progress`` receives ``files_done``,
    ``files_total``, ``windows`` (handed out so far, plus windows embedded elsewhere) and ``windows_per_s``.
    """

    events: Iterable[Any]
    batch_size: int
    files_total: int
    group: Callable[[StreamWindow], Hashable | None] | None = None
    framer: Framer = field(default_factory=WorkerWindows)
    on_progress: Callable[[dict], None] | None = None
    progress_bar: bool = False
    windows: int = 0  # windows handed out so far
    files_done: int = 0

    def __post_init__(self) -> None:
        self._groups: dict[Hashable, list[StreamWindow]] = {}
        self._opened: dict[int, FileOpened] = {}
        self._waiting: dict[int, FileDone] = {}  # decoded files with windows still in a group
        self._started = time.monotonic()
        self._bar: Any = None

    def __iter__(self) -> Iterator[StreamItem]:
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.files_total, unit="file", disable=not self.progress_bar, dynamic_ncols=True, leave=False
        )
        events = iter(self.events)
        try:
            for event in events:
                yield from self._take(event)
                if isinstance(event, (FileOpened, WindowsDecoded)) and self.framer.complete(event.file_idx):
                    yield from self._take(FileDecoded(event.file_idx, 0))  # the rest of the file is not needed
                    break
            for key in list(self._groups):
                yield from self._flush(key)
            yield from self._release()
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a pool's generator stops its workers
            self._bar.close()

    def _take(self, event) -> Iterator[StreamItem]:
        if isinstance(event, FileOpened):
            self._opened[event.file_idx] = event
            yield event
        elif isinstance(event, WindowsDecoded):
            yield from self._add(self.framer.windows(event))
        elif isinstance(event, WindowsEmbedded):
            self.windows += len(event.starts)
            yield event
        elif isinstance(event, FileDecoded):
            yield from self._add(self.framer.finish(event.file_idx))
            done = FileDone(event.file_idx, event.samples, self._opened.pop(event.file_idx, None))
            if any(w.file_idx == event.file_idx for ws in self._groups.values() for w in ws):
                self._waiting[event.file_idx] = done
            else:
                yield done
                self._file_finished()
        elif isinstance(event, FileFailed):
            for key in list(self._groups):  # this file's windows leave the queues; nothing of it is half-done
                self._groups[key] = [w for w in self._groups[key] if w.file_idx != event.file_idx]
            self._opened.pop(event.file_idx, None)
            yield event
            self._file_finished()

    def _add(self, windows: Iterable[StreamWindow]) -> Iterator[StreamItem]:
        for w in windows:
            key = self.group(w) if self.group is not None else 0
            if key is None:
                continue
            self._groups.setdefault(key, []).append(w)
            if len(self._groups[key]) >= self.batch_size:
                yield from self._flush(key)

    def _flush(self, key: Hashable) -> Iterator[StreamItem]:
        batch = self._groups.pop(key, [])
        if batch:
            self.windows += len(batch)
            yield WindowsBatch(batch, key)
        if self._waiting:
            yield from self._release()

    def _release(self) -> Iterator[StreamItem]:
        """FileDone for decoded files none of whose windows wait in a group any more."""
        held = {w.file_idx for ws in self._groups.values() for w in ws}
        for idx in [i for i in self._waiting if i not in held]:
            yield self._waiting.pop(idx)
            self._file_finished()

    def _file_finished(self) -> None:
        self.files_done += 1
        elapsed = max(time.monotonic() - self._started, 1e-9)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(windows=self.windows, wps=f"{self.windows / elapsed:.1f}")
        if self.on_progress:
            self.on_progress(
                {
                    "files_done": self.files_done,
                    "files_total": self.files_total,
                    "windows": self.windows,
                    "windows_per_s": self.windows / elapsed,
                }
            )
