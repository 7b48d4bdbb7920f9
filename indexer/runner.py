"""The indexing run: scan -> decode workers -> windows -> features + CLAP in batches -> DuckDB commit -> FAISS.

Each stage is timed; every skipped or failed file is recorded with its reason.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from indexer.decode import TARGET_RATE, DecodeLimits
from indexer.decode_workers import DecodeJob, DecodePool, FileDecoded, FileFailed, FileOpened, WindowsDecoded
from indexer.model import ClapEncoder
from indexer.scan import ScannedFile, scan_paths
from indexer.settings import Settings
from indexer.store import FileRecord, IndexStore, WindowBatch
from indexer.vectors import VectorIndex
from plugins.manager import PluginHost

COMMIT_EVERY_FILES = 256
COMMIT_EVERY_S = 30.0


@dataclass
class FileError:
    path: str
    error: str


@dataclass
class IndexReport:
    """What a run did; ``--json`` prints exactly these fields."""

    run_id: int
    files_indexed: int = 0
    files_failed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    windows: int = 0
    errors: list[FileError] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def windows_per_s(self) -> float:
        total = self.timings.get("total_s", 0.0)
        return self.windows / total if total > 0 else 0.0


@dataclass
class _FileWork:
    scanned: ScannedFile
    opened: FileOpened | None = None
    decoded: bool = False
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    queued: int = 0  # windows waiting in the batch


def auto_batch_size(encoder: ClapEncoder) -> int:
    """Windows per forward pass: large on CUDA, small on CPU (where batch 8 is already near peak)."""
    return 64 if encoder.device.type == "cuda" else 8


class IndexRunner:
    """Indexes paths into one store with one encoder; used by the CLI, the API's jobs and the Python API."""

    def __init__(self, store: IndexStore, vectors: VectorIndex, encoder: ClapEncoder, settings: Settings,
                 plugins: PluginHost, progress: bool | None = None, on_progress: Callable[[dict], None] | None = None):
        self.store = store
        self.vectors = vectors
        self.encoder = encoder
        self.settings = settings
        self.plugins = plugins
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_progress = on_progress
        self.window = int(round(settings.window_s * TARGET_RATE))
        self.hop = int(round(settings.hop_s * TARGET_RATE))
        self.batch_size = settings.batch_size or auto_batch_size(encoder)

    def run(self, roots: list[str], retry_failed: bool = False) -> IndexReport:
        """Index new and changed files under ``roots``; unchanged ones are left as they are."""
        t0 = time.monotonic()
        wall0 = time.time()
        _, max_window, max_run = self.store.max_ids()
        report = IndexReport(run_id=max_run + 1)
        scan = scan_paths(roots, self.settings.extensions)
        report.files_skipped = len(scan.skipped)
        known = self.store.files_by_path()
        todo: list[ScannedFile] = []
        for f in scan.files:
            prev = known.get(f.path)
            if prev is not None and prev[1] == f.size and prev[2] == f.mtime and (prev[4] == "indexed" or not retry_failed):
                report.files_unchanged += 1
            else:
                todo.append(f)
        report.timings["scan_s"] = time.monotonic() - t0
        self._next_file_id = self.store.max_ids()[0] + 1
        self._next_window_id = max_window + 1
        self._embed_s = 0.0
        self._commit_s = 0.0
        if todo:
            self._index_files(todo, report)
        report.timings["embed_s"] = self._embed_s
        report.timings["commit_s"] = self._commit_s
        if todo:
            t = time.monotonic()
            self.vectors.save()
            report.timings["faiss_save_s"] = time.monotonic() - t
        report.timings["total_s"] = time.monotonic() - t0
        summary = {
            "files_indexed": report.files_indexed, "files_failed": report.files_failed,
            "files_unchanged": report.files_unchanged, "files_skipped": report.files_skipped,
            "windows": report.windows, "timings": report.timings,
            "errors": [{"path": e.path, "error": e.error} for e in report.errors],
        }
        self.store.record_run(report.run_id, wall0, time.time(), "completed", " ".join(sys.argv), summary)
        return report

    # -- the decode/embed/commit loop --------------------------------------------------------
    def _index_files(self, todo: list[ScannedFile], report: IndexReport) -> None:
        from tqdm import tqdm

        work = {i: _FileWork(f) for i, f in enumerate(todo)}
        batch_rows: list[tuple[int, int, int, np.ndarray]] = []  # (file_idx, start, length, audio)
        ready: list[int] = []
        last_commit = time.monotonic()
        started = time.monotonic()
        job = DecodeJob(
            window=self.window, hop=self.hop, plugin_settings=self.settings.plugin_view(),
            limits=DecodeLimits(self.settings.min_sample_rate, self.settings.max_sample_rate,
                                self.settings.max_channels, self.settings.max_duration_s),
        )
        workers = self.settings.decode_workers or max(1, (os.cpu_count() or 2))
        pool = DecodePool(job, workers=workers, timeout_s=self.settings.decode_timeout_s)
        bar = tqdm(total=len(todo), unit="file", disable=not self.progress, dynamic_ncols=True, leave=False)
        done_files = 0
        windows_done = 0

        def finish_ready_files() -> None:
            for idx in [i for i, w in work.items() if w.decoded and w.queued == 0]:
                ready.append(idx)
                work[idx].decoded = False  # moved to the commit list

        for event in pool.run([f.path for f in todo]):
            w = work[event.file_idx]
            if isinstance(event, FileOpened):
                w.opened = event
            elif isinstance(event, WindowsDecoded):
                for row in range(len(event.starts)):
                    batch_rows.append((event.file_idx, int(event.starts[row]), int(event.lengths[row]), event.audio[row]))
                    w.queued += 1
                while len(batch_rows) >= self.batch_size:
                    windows_done += self._embed(batch_rows[: self.batch_size], work)
                    del batch_rows[: self.batch_size]
            elif isinstance(event, FileDecoded):
                w.decoded = True
            elif isinstance(event, FileFailed):
                batch_rows = [r for r in batch_rows if r[0] != event.file_idx]
                self._fail(w, event.reason, report)
                del work[event.file_idx]
            if isinstance(event, (FileDecoded, FileFailed)):
                done_files += 1
                bar.update(1)
                elapsed = time.monotonic() - started
                bar.set_postfix(windows=windows_done, wps=f"{windows_done / max(elapsed, 1e-9):.1f}")
                if self.on_progress:
                    self.on_progress({"files_done": done_files, "files_total": len(todo), "windows": windows_done,
                                      "windows_per_s": windows_done / max(elapsed, 1e-9)})
            finish_ready_files()
            if ready and (len(ready) >= COMMIT_EVERY_FILES or time.monotonic() - last_commit > COMMIT_EVERY_S):
                self._commit([work.pop(i) for i in ready], report)
                ready.clear()
                last_commit = time.monotonic()
        while batch_rows:
            windows_done += self._embed(batch_rows[: self.batch_size], work)
            del batch_rows[: self.batch_size]
        finish_ready_files()
        if ready:
            self._commit([work.pop(i) for i in ready], report)
        bar.close()

    def _embed(self, rows: list[tuple[int, int, int, np.ndarray]], work: dict[int, _FileWork]) -> int:
        t = time.monotonic()
        features = self.encoder.features
        audio = np.stack([row[3] if row[2] >= self.window else features.repeat_pad(row[3][: row[2]]) for row in rows])
        tags = self._tag(rows)
        vectors = self.encoder.embed_waveforms(torch.from_numpy(audio))
        for (file_idx, start, length, _), vector, tag in zip(rows, vectors, tags):
            w = work[file_idx]
            w.starts.append(start)
            w.lengths.append(length)
            w.vectors.append(vector)
            w.tags.append(tag)
            w.queued -= 1
        self._embed_s += time.monotonic() - t
        return len(rows)

    def _tag(self, rows) -> list[dict]:
        tags: list[dict] = [{} for _ in rows]
        full = [i for i, row in enumerate(rows) if row[2] >= self.window]
        groups = [(full, np.stack([rows[i][3] for i in full]))] if full else []
        groups += [([i], rows[i][3][None, : rows[i][2]]) for i, row in enumerate(rows) if row[2] < self.window]
        for tagger in self.plugins.taggers.values():
            for indices, audio in groups:
                try:
                    values = tagger.tag(audio, TARGET_RATE)
                except Exception as exc:  # a tagger's bug loses its tags, not the window
                    values = {f"{tagger.name}_error": [f"{type(exc).__name__}: {exc}"] * len(indices)}
                for name, column in values.items():
                    for j, idx in enumerate(indices):
                        value = column[j]
                        tags[idx][name] = value.item() if isinstance(value, np.generic) else value
        return tags

    def _fail(self, w: _FileWork, reason: str, report: IndexReport) -> None:
        report.files_failed += 1
        report.errors.append(FileError(w.scanned.path, reason))
        record = self._file_record(w, status="failed", error=reason)
        seq, removed = self.store.commit_files([record], None, report.run_id)
        self.vectors.remove(removed, seq)

    def _file_record(self, w: _FileWork, status: str, error: str | None = None, duration: float | None = None) -> FileRecord:
        f, o = w.scanned, w.opened
        record = FileRecord(id=self._next_file_id, path=f.path, root=f.root, size=f.size, mtime=f.mtime, hash=None,
                            status=status, error=error, duration=duration)
        self._next_file_id += 1
        if o is not None:
            record.sample_rate, record.channels, record.codec, record.decoder = o.sample_rate, o.channels, o.codec, o.decoder
        return record

    def _commit(self, files: list[_FileWork], report: IndexReport) -> None:
        t = time.monotonic()
        records, ids, file_ids, starts, ends, tags, vectors = [], [], [], [], [], [], []
        for w in files:
            order = np.argsort(w.starts, kind="stable")
            vecs = np.stack([w.vectors[i] for i in order]) if w.vectors else np.zeros((0, self.encoder.embedding_dim), np.float32)
            if not np.isfinite(vecs).all():
                self._fail(w, "the model produced a non-finite vector", report)
                continue
            total = max((w.starts[i] + w.lengths[i] for i in order), default=0)
            record = self._file_record(w, status="indexed", duration=total / TARGET_RATE)
            records.append(record)
            for i in order:
                ids.append(self._next_window_id)
                self._next_window_id += 1
                file_ids.append(record.id)
                starts.append(w.starts[i] / TARGET_RATE)
                ends.append((w.starts[i] + w.lengths[i]) / TARGET_RATE)
                tags.append(json.dumps(w.tags[i]))
            vectors.append(vecs)
        if not records:
            return
        batch = WindowBatch(
            ids=np.array(ids, dtype=np.int64), file_ids=np.array(file_ids, dtype=np.int64),
            starts=np.array(starts), ends=np.array(ends), tags=tags,
            vectors=np.concatenate(vectors) if vectors else np.zeros((0, self.encoder.embedding_dim), np.float32),
        )
        seq, removed = self.store.commit_files(records, batch, report.run_id)
        self.vectors.remove(removed, seq)
        self.vectors.add(batch.ids, batch.vectors, seq)
        report.files_indexed += len(records)
        report.windows += len(batch)
        self._commit_s += time.monotonic() - t
