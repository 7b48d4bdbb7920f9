"""The indexing run: scan -> changes -> decode workers -> windows -> features + CLAP in batches -> DuckDB commit -> FAISS.

Runs are incremental (see indexer/changes.py): only new and changed content is decoded; renames, copies
and deletions are one commit. Each commit is one DuckDB transaction followed by the matching FAISS update,
so a kill at any moment loses at most the uncommitted batch. Each stage is timed; every skipped or failed
file is recorded with its reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from indexer import crashpoints
from indexer.changes import Candidate, ChangeSet, known_files, plan_changes, refuse_unmounted
from indexer.decode import TARGET_RATE
from indexer.decode_workers import (
    DecodeJob,
    DecodePool,
    FileFailed,
    FileOpened,
    WindowsDecoded,
    WindowsEmbedded,
)
from indexer.errors import BadInput
from indexer.formats import ScanFormats
from indexer.matrix import WindowMatrix
from indexer.model import ClapEncoder
from indexer.report import FileError, FileSkipped, FileWarning, IndexReport, report_summary
from indexer.scan import ScannedFile, ScanResult, scan_paths
from indexer.settings import Settings
from indexer.store import CommitPlan, FileRecord, IndexStore, WindowBatch
from indexer.tag_store import TagModel, TagRows
from indexer.vectors import VectorIndex
from indexer.window_stream import FileDone, StreamWindow, WindowsBatch, WindowStream
from plugins.manager import PluginHost

COMMIT_EVERY_FILES = 256
COMMIT_EVERY_S = 30.0
SKIPPED_LISTED = 1000  # the report lists this many skipped files with their reason; files_skipped counts all


@dataclass
class _FileWork:
    candidate: Candidate
    opened: FileOpened | None = None
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    model_tags: list[list] = field(default_factory=list)  # per window: (label, score) pairs per classifier

    @property
    def scanned(self) -> ScannedFile:
        return self.candidate.scanned


def _announce_decode(events: Iterable) -> Iterator:
    """The events, passing the "decode" crash point at each decoded message (crash tests aim there)."""
    for event in events:
        if isinstance(event, WindowsDecoded):
            crashpoints.reached("decode")
        yield event


def process_cpu_s() -> float:
    """CPU seconds (user + system) used by this process and its reaped children (the decode workers)."""
    import resource

    return sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def auto_batch_size(encoder: ClapEncoder) -> int:
    """Windows per forward pass: on CUDA sized to the free memory, small on the CPU.

    On the CPU the full-size tower ran at 0.099, 0.094, 0.091, 0.119 and 0.34 s per window at batch
    1, 2, 4, 8 and 12 (2-core AVX-512, benchmarks/bench_index.py's tower_rate): past 4 its activations
    leave the caches and the allocator's reused memory."""
    if getattr(encoder.device, "type", encoder.device) != "cuda":
        return 4
    import torch

    free, _ = torch.cuda.mem_get_info(encoder.device)
    # About 100 MB of activations per window for the full-size HTSAT tower under bf16/fp16 autocast; half the free memory.
    return int(min(512, max(16, (free // 2) // (100 * 2**20) // 16 * 16)))


def check_window(window_s: float, encoder: object) -> None:
    """Refuse a window longer than the model's input (it would be cut, and windows of mixed length cannot batch)."""
    max_samples = int(getattr(encoder, "window_samples", 0) or 0)
    if max_samples and int(round(window_s * TARGET_RATE)) > max_samples:
        raise BadInput(
            f"--window {window_s:g} s is longer than the model accepts: the maximum is "
            f"{max_samples / TARGET_RATE:g} s; use a shorter --window (and --hop)"
        )


class IndexRunner:
    """Indexes paths into one store with one encoder; used by the CLI, the API's jobs and the Python API."""

    def __init__(
        self,
        store: IndexStore,
        vectors: VectorIndex,
        encoder: ClapEncoder,
        settings: Settings,
        plugins: PluginHost,
        progress: bool | None = None,
        on_progress: Callable[[dict], None] | None = None,
        cluster=None,
    ):
        self.store = store
        self.cluster = cluster  # a RayPipeline (indexer/ray_pipeline.py): decode and embed there, commit here
        self.vectors = vectors
        self.encoder = encoder
        self.settings = settings
        self.plugins = plugins
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.on_progress = on_progress
        self.window = int(round(settings.window_s * TARGET_RATE))
        self.hop = int(round(settings.hop_s * TARGET_RATE))
        check_window(settings.window_s, encoder)
        self.batch_size = settings.batch_size or auto_batch_size(encoder)
        self.commit_every_files = getattr(settings, "commit_every_files", COMMIT_EVERY_FILES)
        self.commit_every_s = getattr(settings, "commit_every_s", COMMIT_EVERY_S)
        self._twins: dict[str, list[Candidate]] = {}
        self._seq_at_start = vectors.seq
        self.refuse_hardlinks = False  # server jobs: a second link may be a way out of the allowed roots
        self.classifiers: list = []  # fixed-label models configured in settings, loaded when a run starts
        self.tag_models: list[TagModel] = []

    def _load_classifiers(self) -> None:
        """Load the configured classifiers on CLAP's device; a missing model or a changed label set stops the run
        before anything is written."""
        from indexer.tag_pass import check_label_set, load_tag_models

        view = self.settings.plugin_view()
        view["device"] = str(self.encoder.device)
        self.classifiers = load_tag_models(self.plugins.taggers, view)
        stored = self.store.tag_models()
        self.tag_models = [TagModel.of(c, stored.get(c.model_id)) for c in self.classifiers]
        for model in self.tag_models:
            check_label_set(self.store, model)

    def run(
        self, roots: list[str], retry_failed: bool = False, verify_content: bool = False, allow_empty_root: bool = False
    ) -> IndexReport:
        """Bring the index in line with ``roots``: add new files, re-index changed ones, drop deleted ones.

        An empty root while the index holds files under it is refused (unmounted?) unless ``allow_empty_root``.
        """
        t0 = time.monotonic()
        cpu0 = process_cpu_s()
        wall0 = time.time()
        # What the loaded decoders open (their extensions, magic and sidecars), plus any extensions the settings add.
        scan = scan_paths(roots, formats=ScanFormats.of(self.plugins.decoders, self.settings.extensions))
        self._load_classifiers()
        from indexer.transcribe_pass import configured_transcribers, transcribe_all

        transcribers = configured_transcribers(self.plugins, self.settings, str(self.encoder.device), self.cluster)
        known = known_files(self.store.known_files())
        if self.refuse_hardlinks:
            scan = without_hard_links(scan, known)
        if not allow_empty_root:
            refuse_unmounted(roots, scan, known)
        max_file, max_window, max_run = self.store.max_ids()
        report = IndexReport(
            run_id=max_run + 1,
            files_skipped=len(scan.skipped),
            skipped=[FileSkipped(path=p, reason=r) for p, r in scan.skipped[:SKIPPED_LISTED]],
        )
        command = " ".join(sys.argv)
        report.runs_interrupted = self.store.start_run(report.run_id, wall0, command)
        self._next_file_id = max_file + 1
        self._next_window_id = max_window + 1
        self._embed_s = 0.0
        self._commit_s = 0.0
        try:
            report.timings["scan_s"] = time.monotonic() - t0
            t = time.monotonic()
            changes = plan_changes(roots, scan, known, retry_failed, verify_content)
            report.timings["hash_s"] = time.monotonic() - t
            report.files_unchanged = changes.unchanged
            self._twins = changes.twins
            self._commit_without_decoding(changes, report)
            if changes.decode:
                self._index_files(changes.decode, report)
            report.timings["embed_s"] = self._embed_s
            report.timings["commit_s"] = self._commit_s
            if self.vectors.seq != self._seq_at_start or not self.vectors.current_file().exists():
                t = time.monotonic()
                self.vectors.save()
                report.timings["faiss_save_s"] = time.monotonic() - t
                # Readers (CLI classify, other processes) then map it instead of rebuilding it each time.
                t = time.monotonic()
                WindowMatrix.current(self.store, self.vectors.lock)
                report.timings["matrix_s"] = time.monotonic() - t
        except BaseException as exc:
            report.timings["total_s"] = time.monotonic() - t0
            self._record(report, wall0, "failed", command, error=f"{type(exc).__name__}: {exc}")
            raise
        report.transcripts = transcribe_all(self.store, transcribers, self.settings)  # [plugin.transcriber] models
        report.timings["total_s"] = time.monotonic() - t0
        report.timings["cpu_s"] = process_cpu_s() - cpu0  # this process and its finished decode workers
        self._record(report, wall0, "completed", command)
        return report

    def _record(self, report: IndexReport, wall0: float, status: str, command: str, error: str | None = None) -> None:
        summary = report_summary(report)
        if error:
            summary["error"] = error
        try:
            self.store.record_run(report.run_id, wall0, time.time(), status, command, summary)
        except Exception:
            if status == "completed":
                raise
            # recording a failed run can itself fail (a full disk): the run's own error is what matters

    # -- commits that need no decoding -------------------------------------------------------
    def _commit_without_decoding(self, changes: ChangeSet, report: IndexReport) -> None:
        """Renames, touched rows, copies of stored content and deletions: one commit, nothing embedded."""
        self._seq_at_start = self.vectors.seq
        relinks = [self._relink(k, f, h) for k, f, h in changes.touched + changes.renamed]
        if not (relinks or changes.copies or changes.removed):
            return
        # Renames, removals and the copies of rows this run drops go in the first commit (their windows are read
        # before it); other copies follow in batches so memory stays bounded.
        step = self.commit_every_files
        dropped = {k.id for k in changes.removed} | {c.previous.id for c in changes.copies if c.previous is not None}
        fragile = [c for c in changes.copies if _source(c).id in dropped]
        stable = [c for c in changes.copies if _source(c).id not in dropped]
        chunks = [fragile + stable[:step]] + [stable[i : i + step] for i in range(step, len(stable), step)]
        for start, chunk in enumerate(chunks):
            records, batches, copied_tags = [], [], []
            for c in chunk:
                source = _source(c)
                stored = self.store.window_batch_of(source.id)
                record, batch = self._copy(c, stored, source.duration, self.store.decoding_of(source.id))
                copied_tags += self.store.model_tags_of(stored.ids, batch.ids)
                if record.notes:  # the copy inherits what decoding its twin left out
                    report.warnings.append(FileWarning(path=record.path, warning=record.notes))
                records.append(record)
                batches.append(batch)
            first = start == 0
            plan = CommitPlan(
                files=records,
                windows=_concat(batches, self.encoder.embedding_dim),
                relinks=relinks if first else [],
                remove_file_ids=[k.id for k in changes.removed] if first else [],
                copied_tags=copied_tags,
            )
            self._apply(plan, report)
            for c in chunk:
                self._count_indexed(c, report, reused=True)
        report.files_renamed += len(changes.renamed)
        report.files_removed += len(changes.removed)

    def _relink(self, row, f: ScannedFile, h: str | None) -> FileRecord:
        return FileRecord(id=row.id, path=f.path, root=f.root, size=f.size, mtime=f.mtime, hash=h, status=row.status)

    def _copy(
        self, c: Candidate, batch: WindowBatch, duration: float | None, decoding: tuple
    ) -> tuple[FileRecord, WindowBatch]:
        """A new row for ``c`` with a copy of ``batch`` (the windows of identical content) under fresh ids."""
        f = c.scanned
        record = FileRecord(
            id=self._file_id(c),
            path=f.path,
            root=f.root,
            size=f.size,
            mtime=f.mtime,
            hash=c.hash,
            status="indexed",
            duration=duration,
        )
        record.sample_rate, record.channels, record.codec, record.decoder, record.notes = decoding
        n = len(batch)
        ids = np.arange(self._next_window_id, self._next_window_id + n, dtype=np.int64)
        self._next_window_id += n
        copy = WindowBatch(
            ids=ids,
            file_ids=np.full(n, record.id, dtype=np.int64),
            starts=batch.starts.copy(),
            ends=batch.ends.copy(),
            tags=list(batch.tags),
            vectors=batch.vectors,
        )
        return record, copy

    def _file_id(self, c: Candidate) -> int:
        """A path already in the index keeps its id (retried, re-decoded or copied over); a new path gets a new one."""
        return c.previous.id if c.previous is not None else self._new_file_id()

    def _new_file_id(self) -> int:
        self._next_file_id += 1
        return self._next_file_id - 1

    def _count_indexed(self, c: Candidate, report: IndexReport, reused: bool = False) -> None:
        if c.previous is None:
            report.files_added += 1
        else:
            report.files_updated += 1
        report.files_indexed += 1
        report.files_reused += int(reused)

    def _apply(self, plan: CommitPlan, report: IndexReport) -> None:
        """Commit to DuckDB, then bring FAISS to the same commit, under the lock readers take."""
        with self.vectors.lock:
            seq, removed = self.store.commit(plan, report.run_id)
            self.vectors.remove(removed, seq)
            if plan.windows is not None and len(plan.windows):
                self.vectors.add(plan.windows.ids, plan.windows.vectors, seq)
                grown = self.vectors.grow(self.store)
                if grown is not None:
                    report.timings["faiss_grow_s"] = report.timings.get("faiss_grow_s", 0.0) + grown["seconds"]
        report.windows += len(plan.windows) if plan.windows is not None else 0
        report.windows_removed += len(removed)

    # -- the decode/embed/commit loop --------------------------------------------------------
    def _index_files(self, todo: list[Candidate], report: IndexReport) -> None:
        work = {i: _FileWork(f) for i, f in enumerate(todo)}
        ready: list[int] = []
        last_commit = time.monotonic()
        job = self.decode_job()
        paths = [c.scanned.path for c in todo]
        if self.cluster is not None:
            events = self.cluster.events(job, paths, self)
        else:
            workers = self.settings.decode_workers or max(1, (os.cpu_count() or 2))
            events = DecodePool(job, workers=workers, timeout_s=self.settings.decode_timeout_s).run(paths)
        stream = WindowStream(
            _announce_decode(events),
            batch_size=self.batch_size,
            files_total=len(todo),
            on_progress=self.on_progress,
            progress_bar=self.progress,
        )
        for item in stream:
            if isinstance(item, WindowsBatch):
                self._embed(item.windows, work)
            elif isinstance(item, FileOpened):
                work[item.file_idx].opened = item
            elif isinstance(item, WindowsEmbedded):  # embedded on a cluster: only the vectors come back
                self._take_embedded(item, work[item.file_idx])
            elif isinstance(item, FileDone):
                ready.append(item.file_idx)
            elif isinstance(item, FileFailed):
                self._fail(work.pop(item.file_idx), item.reason, report)
            if ready and (
                len(ready) >= self.commit_every_files or time.monotonic() - last_commit > self.commit_every_s
            ):
                self._commit([work.pop(i) for i in ready], report)
                ready.clear()
                last_commit = time.monotonic()
        if ready:
            self._commit([work.pop(i) for i in ready], report)
        if self.cluster is not None:
            report.stages = self.cluster.stages()

    def _take_embedded(self, event: WindowsEmbedded, w: _FileWork) -> None:
        t = time.monotonic()
        crashpoints.reached("embed")
        w.starts.extend(int(s) for s in event.starts)
        w.lengths.extend(int(n) for n in event.lengths)
        w.vectors.extend(event.vectors)
        w.tags.extend(event.tags)
        w.model_tags.extend([] for _ in event.starts)  # model taggers do not run on a cluster (refused there)
        self._embed_s += time.monotonic() - t

    def decode_job(self) -> DecodeJob:
        """What every decode worker (local process or cluster task) is told: window, hop, plugin settings, limits."""
        return DecodeJob.of(self.settings, self.window, self.hop)

    def _embed(self, windows: list[StreamWindow], work: dict[int, _FileWork]) -> None:
        t = time.monotonic()
        rows = [(w.file_idx, w.start, w.length, w.audio) for w in windows]
        features = self.encoder.features
        audio = np.stack([row[3] if row[2] >= self.window else features.repeat_pad(row[3][: row[2]]) for row in rows])
        tags = tag_windows(self.plugins.taggers.values(), rows, self.window)
        labelled = self._classify(rows)
        vectors = self.encoder.embed_waveforms(audio if getattr(self.encoder, "takes_numpy", False) else _tensor(audio))
        crashpoints.reached("embed")
        for (file_idx, start, length, _), vector, tag, pairs in zip(rows, vectors, tags, labelled):
            w = work[file_idx]
            w.starts.append(start)
            w.lengths.append(length)
            w.vectors.append(vector)
            w.tags.append(tag)
            w.model_tags.append(pairs)
        self._embed_s += time.monotonic() - t

    def _classify(self, rows) -> list[list]:
        """Each classifier's (label, score) pairs per window, from the same decoded audio as CLAP (unpadded)."""
        per_window: list[list] = [[] for _ in rows]
        for classifier in self.classifiers:
            results = classifier.classify([row[3][: row[2]] for row in rows], TARGET_RATE)
            for i, pairs in enumerate(results):
                per_window[i].append(pairs)
        return per_window

    def _model_tag_rows(self, ids: np.ndarray, per_window: list[list]) -> list[TagRows]:
        out = []
        for m, model in enumerate(self.tag_models):
            rows = TagRows.empty(model)
            for wid, pairs in zip(ids, per_window):
                rows.add(int(wid), pairs[m])
            out.append(rows)
        return out

    def _fail(self, w: _FileWork, reason: str, report: IndexReport) -> None:
        """Record a file (and any identical twin waiting on it) as failed, dropping windows it had."""
        twins = self._twins.pop(w.candidate.hash, []) if w.candidate.hash else []
        records = [self._file_record(w, status="failed", error=reason)]
        for twin in twins:
            records.append(
                FileRecord(
                    id=self._file_id(twin),
                    path=twin.scanned.path,
                    root=twin.scanned.root,
                    size=twin.scanned.size,
                    mtime=twin.scanned.mtime,
                    hash=twin.hash,
                    status="failed",
                    error=reason,
                )
            )
        for c in [w.candidate, *twins]:
            report.files_failed += 1
            report.errors.append(FileError(path=c.scanned.path, error=reason))
        self._apply(CommitPlan(files=records), report)

    def _file_record(
        self, w: _FileWork, status: str, error: str | None = None, duration: float | None = None
    ) -> FileRecord:
        f, o = w.scanned, w.opened
        record = FileRecord(
            id=self._file_id(w.candidate),
            path=f.path,
            root=f.root,
            size=f.size,
            mtime=f.mtime,
            hash=w.candidate.hash,
            status=status,
            error=error,
            duration=duration,
        )
        if o is not None:
            record.sample_rate, record.channels, record.codec, record.decoder = (
                o.sample_rate,
                o.channels,
                o.codec,
                o.decoder,
            )
            record.notes = "; ".join(o.warnings) or None
        return record

    def _commit(self, files: list[_FileWork], report: IndexReport) -> None:
        t = time.monotonic()
        records, batches, done, model_tags = [], [], [], []
        for w in files:
            order = np.argsort(w.starts, kind="stable")
            vecs = (
                np.stack([w.vectors[i] for i in order])
                if w.vectors
                else np.zeros((0, self.encoder.embedding_dim), np.float32)
            )
            if not np.isfinite(vecs).all():
                self._fail(w, "the model produced a non-finite vector", report)
                continue
            total = max((w.starts[i] + w.lengths[i] for i in order), default=0)
            record = self._file_record(w, status="indexed", duration=total / TARGET_RATE)
            if record.notes:
                report.warnings.append(FileWarning(path=record.path, warning=record.notes))
            n = len(order)
            batch = WindowBatch(
                ids=np.arange(self._next_window_id, self._next_window_id + n, dtype=np.int64),
                file_ids=np.full(n, record.id, dtype=np.int64),
                starts=np.array([w.starts[i] / TARGET_RATE for i in order], dtype=np.float64),
                ends=np.array([(w.starts[i] + w.lengths[i]) / TARGET_RATE for i in order], dtype=np.float64),
                tags=[json.dumps(w.tags[i]) for i in order],
                vectors=vecs,
            )
            self._next_window_id += n
            records.append(record)
            batches.append(batch)
            done.append((w.candidate, False))
            per_window = [w.model_tags[i] for i in order]
            model_tags += self._model_tag_rows(batch.ids, per_window)
            for twin in self._twins.pop(w.candidate.hash, []) if w.candidate.hash else []:
                twin_record, twin_batch = self._copy(
                    twin,
                    batch,
                    record.duration,
                    (record.sample_rate, record.channels, record.codec, record.decoder, record.notes),
                )
                if twin_record.notes:
                    report.warnings.append(FileWarning(path=twin_record.path, warning=twin_record.notes))
                records.append(twin_record)
                batches.append(twin_batch)
                done.append((twin, True))
                model_tags += self._model_tag_rows(twin_batch.ids, per_window)
        if not records:
            return
        self._apply(
            CommitPlan(
                files=records,
                windows=_concat(batches, self.encoder.embedding_dim),
                model_tags=[t for t in model_tags if len(t)],
            ),
            report,
        )
        for c, reused in done:
            self._count_indexed(c, report, reused=reused)
        self._commit_s += time.monotonic() - t


def without_hard_links(scan: ScanResult, known: dict) -> ScanResult:
    """The scan less new files with more than one hard link (skipped with a reason): like a symlink, another link
    may make a file outside the indexed roots readable through them. Paths already in the index stay."""
    files = []
    for f in scan.files:
        if f.path in known:
            files.append(f)
            continue
        try:
            links = os.stat(f.path).st_nlink
        except OSError:
            links = 1  # gone since the scan: the run reports it as it would have
        if links > 1:
            scan.skipped.append(
                (f.path, f"hard link ({links} links); set allow_hardlinks to index it from a server job")
            )
        else:
            files.append(f)
    return ScanResult(files, scan.skipped)


def tag_windows(taggers, rows, window: int) -> list[dict]:
    """Tags per window from every tagger: full windows in one call, short ones (a short file) alone at their length.

    ``rows`` are (file_idx, start, length, audio) with audio zero after ``length``; used locally and on cluster actors.
    """
    tags: list[dict] = [{} for _ in rows]
    full = [i for i, row in enumerate(rows) if row[2] >= window]
    groups = [(full, np.stack([rows[i][3] for i in full]))] if full else []
    groups += [([i], rows[i][3][None, : rows[i][2]]) for i, row in enumerate(rows) if row[2] < window]
    for tagger in taggers:
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


def _tensor(audio: np.ndarray):
    """The batch as a torch tensor: what an encoder given by the caller (the Python API's ``encoder=``) is handed."""
    import torch

    return torch.from_numpy(audio)


def _source(c: Candidate) -> FileRecord:
    """The stored file a copy takes its windows from (every copy has one)."""
    assert c.source is not None
    return c.source


def _concat(batches: list[WindowBatch], dim: int) -> WindowBatch | None:
    if not batches:
        return None
    return WindowBatch(
        ids=np.concatenate([b.ids for b in batches]),
        file_ids=np.concatenate([b.file_ids for b in batches]),
        starts=np.concatenate([b.starts for b in batches]),
        ends=np.concatenate([b.ends for b in batches]),
        tags=[t for b in batches for t in b.tags],
        vectors=np.concatenate([b.vectors for b in batches]) if batches else np.zeros((0, dim), np.float32),
    )
