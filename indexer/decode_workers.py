"""Decode worker processes: decoding and resampling off the main process, where a crash or a hang costs one file.

Each worker has its own pipe, so a worker killed mid-message corrupts nothing shared; a full pipe
blocks the worker, which bounds memory to about one message of windows per worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from indexer.decode import DecodeLimits, mono_48k_blocks, open_audio
from indexer.reasons import stream_failure_reason
from indexer.windows import WindowCutter

WINDOWS_PER_MESSAGE = 8


@dataclass
class FileOpened:
    file_idx: int
    decoder: str
    sample_rate: int
    channels: int
    duration_s: float | None
    codec: str
    warnings: list[str] = field(default_factory=list)  # what the decoder left out, recorded with the file


@dataclass
class WindowsDecoded:
    file_idx: int
    starts: np.ndarray  # int64 samples at 48 kHz
    lengths: np.ndarray  # int64 samples (short only for a file shorter than one window)
    audio: np.ndarray  # (n, window) float32, zero after each length


@dataclass
class FileDecoded:
    file_idx: int
    samples: int


@dataclass
class FileFailed:
    file_idx: int
    reason: str


@dataclass
class WindowsEmbedded:
    """Windows already embedded elsewhere (a cluster's actors): their spans, vectors and tags, no audio."""

    file_idx: int
    starts: np.ndarray  # int64 samples at 48 kHz
    lengths: np.ndarray  # int64 samples
    vectors: np.ndarray  # (n, dim) float32 unit vectors
    tags: list[dict]


DecodeEvent = FileOpened | WindowsDecoded | FileDecoded | FileFailed


@dataclass(frozen=True)
class DecodeJob:
    """Everything a worker needs, picklable."""

    window: int
    hop: int
    limits: DecodeLimits
    plugin_settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, settings, window: int, hop: int) -> DecodeJob:
        """The job ``settings`` describe (plugin settings, decode limits) for windows of ``window``, ``hop`` samples."""
        return cls(window=window, hop=hop, plugin_settings=settings.plugin_view(), limits=DecodeLimits.of(settings))


def _worker_main(conn: Connection, job: DecodeJob) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not os.environ.get("SOUNDSIFT_DEBUG"):
        # Native decoders chatter on stderr ("Illegal Audio-MPEG-Header"); their reasons reach us as exceptions.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    from plugins.contract import DecodeError
    from plugins.manager import build_plugin_manager

    decoders = build_plugin_manager().decoders
    while True:
        task = conn.recv()
        if task is None:
            return
        file_idx, path = task
        opened = None
        try:
            opened = open_audio(Path(path), decoders, job.plugin_settings, job.limits)
            src = opened.source
            conn.send(
                FileOpened(
                    file_idx,
                    opened.decoder,
                    src.sample_rate,
                    src.channels,
                    src.duration_s,
                    src.codec,
                    [str(w) for w in getattr(src, "warnings", None) or []],
                )
            )
            cutter = WindowCutter(job.window, job.hop)
            pending: list = []

            def flush() -> None:
                if not pending:
                    return
                audio = np.zeros((len(pending), job.window), dtype=np.float32)
                for row, (_, samples) in enumerate(pending):
                    audio[row, : len(samples)] = samples
                conn.send(
                    WindowsDecoded(
                        file_idx,
                        np.array([s.start for s, _ in pending], dtype=np.int64),
                        np.array([s.length for s, _ in pending], dtype=np.int64),
                        audio,
                    )
                )
                pending.clear()

            for block in mono_48k_blocks(opened, job.limits):
                for item in cutter.feed(block):
                    pending.append(item)
                    if len(pending) >= WINDOWS_PER_MESSAGE:
                        flush()
            pending.extend(cutter.finish())
            flush()
            if cutter.total == 0:
                raise DecodeError("no audio samples decoded")
            conn.send(FileDecoded(file_idx, cutter.total))
        except DecodeError as exc:
            message = str(exc) or "decode failed"
            if opened is not None:  # failed mid-stream: the reason in plain words, with what the others said
                message = stream_failure_reason(path, opened.head, opened.decoder, message, opened.refused)
            conn.send(FileFailed(file_idx, _one_line(message)))
        except MemoryError:
            conn.send(FileFailed(file_idx, "out of memory while decoding"))
        except Exception as exc:  # a decoder's bug: logged by the reasons module, never the reason itself
            if opened is not None:
                message = stream_failure_reason(
                    path, opened.head, opened.decoder, f"{type(exc).__name__}: {exc}", opened.refused
                )
            else:
                message = "could not be decoded (an internal error while opening it)"
            conn.send(FileFailed(file_idx, _one_line(message)))


def _one_line(message: str) -> str:
    return " ".join(message.split())[:1000]


class _Worker:
    def __init__(self, ctx, job: DecodeJob):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, job), daemon=True)
        self.process.start()
        child.close()
        self.file_idx: int | None = None
        self.last_seen = time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                self.process.kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class DecodePool:
    """Decodes files in worker processes and yields their events; a worker that dies or hangs fails its file only."""

    def __init__(self, job: DecodeJob, workers: int, timeout_s: float, start_method: str = "spawn"):
        self.job = job
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        # fork after torch/duckdb threads have started is unsafe; a cluster task uses "forkserver", whose server
        # outlives the task in a reused Ray worker, so each file's decoder starts without importing anything.
        self._ctx = mp.get_context(start_method)

    def run(self, paths: list[str]) -> Iterator[DecodeEvent]:
        """Yield events for every path (by index into ``paths``), each file ending in FileDecoded or FileFailed."""
        queue = deque(enumerate(paths))
        workers = [_Worker(self._ctx, self.job) for _ in range(min(self.workers, len(paths)))]
        try:
            for worker in workers:
                self._assign(worker, queue)
            while any(w.file_idx is not None for w in workers):
                busy = [w for w in workers if w.file_idx is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
                now = time.monotonic()
                for i, worker in enumerate(workers):
                    if worker.file_idx is None:
                        continue
                    event = None
                    if worker.conn in ready:
                        try:
                            event = worker.conn.recv()
                        except (EOFError, OSError):
                            event = None
                    if event is not None:
                        worker.last_seen = now
                        yield event
                        if isinstance(event, (FileDecoded, FileFailed)):
                            self._assign(worker, queue)
                        continue
                    died = not worker.process.is_alive() or worker.process.sentinel in ready or worker.conn in ready
                    hung = now - worker.last_seen > self.timeout_s
                    if died or hung:
                        file_idx = worker.file_idx
                        worker.stop(kill=True)
                        code = worker.process.exitcode  # read after the join: a dead worker may not be reaped before
                        if hung and not died:
                            reason = f"decoder hung: no progress for {self.timeout_s:.0f} s, killed"
                        else:
                            reason = f"decoder crashed (exit code {code})"
                        yield FileFailed(file_idx, reason)
                        workers[i] = _Worker(self._ctx, self.job)
                        self._assign(workers[i], queue)
        finally:
            for worker in workers:
                worker.stop(kill=worker.file_idx is not None)

    @staticmethod
    def _assign(worker: _Worker, queue: deque) -> None:
        if queue:
            idx, path = queue.popleft()
            worker.file_idx = idx
            worker.last_seen = time.monotonic()
            worker.conn.send((idx, path))
        else:
            worker.file_idx = None
