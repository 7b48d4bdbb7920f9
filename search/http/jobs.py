"""Re-index jobs inside the server: one at a time in a worker thread, others queued, with progress and a scheduler."""

from __future__ import annotations

import builtins
import os
import re
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from indexer import job_store
from indexer.errors import SoundsiftError
from indexer.report import IndexReport

if TYPE_CHECKING:
    from search.sound_index import SoundIndex

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
HISTORY_KEPT = 100
MAX_QUEUED = 16
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """'30m', '1h', '1d', '45s', '1.5h' -> seconds; raises ValueError with the accepted forms."""
    m = _INTERVAL.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"cannot read the interval {text!r}: use a number and a unit, e.g. 30m, 1h, 1d")
    return float(m.group(1)) * _UNIT_S[m.group(2).lower()]


def report_document(report) -> dict:
    """An IndexReport as JSON: the same document as `soundsift index --json` and the runs table."""
    return report.document()


class QueueFull(SoundsiftError):
    """Too many jobs are waiting (HTTP 429)."""


class JobProgress(BaseModel):
    files_done: int = 0
    files_total: int | None = None
    windows: int = 0
    windows_per_s: float = 0.0
    eta_s: float | None = Field(None, description="seconds left, from the rate so far (None until a file is done)")


class JobInfo(BaseModel):
    """A re-index job as the API reports it."""

    id: str
    kind: str = "index"
    status: JobStatus
    paths: list[str]
    trigger: str = Field("api", description="api, schedule, cli, or history (a run recorded in the index)")
    status_note: str | None = Field(None, description="why a job is interrupted (the server stopped while it ran)")
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    retry_failed: bool = False
    # An index job's report is an IndexReport; a tag or transcribe job's is its pass's document (tried in that order,
    # so a restored job gets back what it was saved with).
    report: IndexReport | dict[str, Any] | None = Field(
        None,
        union_mode="left_to_right",
        description="the run's report: the document `soundsift index --json` (or `tag --json`, `transcribe --json`) prints",
    )
    error: str | None = None
    run_id: int | None = None
    tag: dict | None = Field(None, description="a tag job's model, top_k, function_to_apply and retag")
    transcribe: dict | None = Field(None, description="a transcribe job's model, language and retranscribe")
    train: dict | None = Field(
        None, description="a train job's probe, classes, background, c and seed; once done, `result` (the probe)"
    )


@dataclass
class _Job:
    info: JobInfo
    seq: int = 0  # submission order, kept with the persisted job
    started_mono: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


def spelled_as_indexed(store, paths: list[str]) -> list[str]:
    """Each path in the spelling the index already uses for the same directory.

    A CLI run stores roots as typed ("archive"); a hand-off or an API call sends absolute paths.
    Files are keyed by path, so without this the same archive indexed both ways would be two archives.
    Relative roots are resolved against this process's working directory.
    """
    roots = store.roots()
    by_real = {os.path.realpath(r): r for r in roots}
    return [by_real.get(os.path.realpath(p), p) for p in paths]


JOBS_TABLE = job_store.JOBS_TABLE


class JobManager:
    """Runs index jobs on one SoundIndex, one at a time; queries keep reading committed snapshots meanwhile.

    Jobs are kept in the index's DuckDB (table ``server_jobs``): queued jobs survive a restart and resume,
    a job that was running when the server died is reported ``interrupted``. Identical queued jobs are
    one job; at most ``max_queued`` wait.
    """

    def __init__(self, sound_index: "SoundIndex", max_queued: int | None = None):
        self.sound_index = sound_index
        self.max_queued: int = int(
            max_queued or getattr(sound_index.settings, "max_queued_jobs", MAX_QUEUED) or MAX_QUEUED
        )
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._seq = 0
        self._persist = not getattr(sound_index.store, "read_only", False)
        self._restore()
        self._thread = threading.Thread(target=self._work, name="soundsift-jobs", daemon=True)
        self._thread.start()

    # -- persistence -------------------------------------------------------------------------
    def _restore(self) -> None:
        """Load persisted jobs: running ones (the server died under them) become interrupted, queued ones queue again."""
        if not self._persist:
            return
        try:
            rows = job_store.saved_jobs(self.sound_index.store.cursor())
        except Exception as exc:  # a read-only or damaged store: jobs live in memory only
            print(f"warning: jobs are not persisted ({type(exc).__name__}: {exc})", file=sys.stderr)
            self._persist = False
            return
        for seq, doc in rows:
            try:
                info = JobInfo.model_validate_json(doc)
            except ValueError:
                continue
            self._seq = max(self._seq, int(seq))
            job = _Job(info, seq=int(seq))
            if info.status == "running":
                info.status = "interrupted"
                info.status_note = (
                    "the server stopped while this job ran; what it committed is kept, submit it again to finish"
                )
                info.finished_at = info.finished_at or time.time()
                job.done.set()
                self._save(info)
            elif info.status == "queued":
                self._queue.append(info.id)
            else:
                job.done.set()
            self._jobs[info.id] = job

    def _save(self, info: JobInfo) -> None:
        if not self._persist:
            return
        try:
            job_store.save_job(
                self.sound_index.store.cursor(), info.id, self._seq_of(info.id), info.status, info.model_dump_json()
            )
        except Exception as exc:  # the job still runs; only its record after a restart is lost
            print(f"warning: cannot record job {info.id} ({type(exc).__name__}: {exc})", file=sys.stderr)

    def _seq_of(self, job_id: str) -> int:
        job = self._jobs.get(job_id)
        return job.seq if job is not None else 0

    def _drop_saved(self, job_ids: list[str]) -> None:
        if self._persist and job_ids:
            try:
                job_store.drop_jobs(self.sound_index.store.cursor(), job_ids)
            except Exception:
                pass

    # -- submitting and reading --------------------------------------------------------------
    def submit(self, paths: list[str], trigger: str = "api", retry_failed: bool = False) -> JobInfo:
        """Queue an index job over ``paths`` (absolute); an identical queued job is returned instead of a second one.

        Raises QueueFull when ``max_queued`` jobs are already waiting.
        """
        return self._enqueue(
            JobInfo(
                id=uuid.uuid4().hex[:12],
                status="queued",
                paths=paths,
                trigger=trigger,
                submitted_at=time.time(),
                retry_failed=retry_failed,
            )
        )

    def submit_tag(
        self,
        model: str,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        retag: bool = False,
        trigger: str = "api",
    ) -> JobInfo:
        """Queue a tag pass of ``model`` over the index (windows it has not tagged yet); returns it as queued."""
        spec = {"model": model, "top_k": top_k, "function_to_apply": function_to_apply, "retag": retag}
        return self._submit_pass("tag", trigger, tag=spec)

    def submit_transcribe(
        self, model: str, language: str | None = None, retranscribe: bool = False, trigger: str = "api"
    ) -> JobInfo:
        """Queue a transcribe pass of ``model`` over the index (windows it has not transcribed yet)."""
        spec = {"model": model, "language": language, "retranscribe": retranscribe}
        return self._submit_pass("transcribe", trigger, transcribe=spec)

    def submit_train(self, spec: dict, trigger: str = "api") -> JobInfo:
        """Queue training probe ``spec["probe"]`` on the examples of ``spec["classes"]``; returns it as queued."""
        return self._submit_pass("train", trigger, train=dict(spec))

    def _submit_pass(self, kind: str, trigger: str, **spec: dict) -> JobInfo:
        """Queue a job of ``kind`` over the whole index (no paths), its options in the field named after it."""
        return self._enqueue(
            JobInfo(
                id=uuid.uuid4().hex[:12],
                kind=kind,
                status="queued",
                paths=[],
                trigger=trigger,
                submitted_at=time.time(),
                **spec,
            )
        )

    def _enqueue(self, info: JobInfo) -> JobInfo:
        """Queue ``info`` unless the same job (kind, paths, options) is already queued; QueueFull past ``max_queued``."""
        with self._lock:
            for job_id in self._queue:
                queued = self._jobs[job_id].info
                if (
                    queued.kind,
                    sorted(queued.paths),
                    queued.retry_failed,
                    queued.tag,
                    queued.transcribe,
                    queued.train,
                ) == (
                    info.kind,
                    sorted(info.paths),
                    info.retry_failed,
                    info.tag,
                    info.transcribe,
                    info.train,
                ):
                    return queued.model_copy(deep=True)
            if len(self._queue) >= self.max_queued:
                raise QueueFull(
                    f"the job queue is full ({len(self._queue)} jobs waiting); "
                    "wait for one to finish (GET /jobs) and submit again"
                )
            self._seq += 1
            self._jobs[info.id] = _Job(info, seq=self._seq)
            self._queue.append(info.id)
            self._save(info)
            self._forget_old()
            self._wake.notify_all()
            return info.model_copy(deep=True)

    def get(self, job_id: str) -> JobInfo | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.info.model_copy(deep=True)
        if job_id.startswith("run-") and job_id[4:].isdigit() and len(job_id) < 20:
            return next((j for j in self._history(run_id=int(job_id[4:]))), None)
        return None

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobInfo | None:
        """Block until the job ends (or the timeout passes); for tests and the CLI's --wait."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.done.wait(timeout_s)
        return self.get(job_id)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue) or any(j.info.status == "running" for j in self._jobs.values())

    def queued(self) -> int:
        """How many jobs wait to run."""
        with self._lock:
            return len(self._queue)

    def list(self, limit: int = 20) -> list[JobInfo]:
        """This server's jobs (newest first), then earlier runs recorded in the index's ``runs`` table.

        A run this server's job made is listed once, as the job (each job knows its run id from its start).
        """
        with self._lock:
            mine = [j.info.model_copy(deep=True) for j in self._jobs.values()]
        mine.sort(key=lambda j: j.submitted_at or 0, reverse=True)
        seen_runs = {j.run_id for j in mine if j.run_id is not None}
        history = [j for j in self._history(limit=limit + len(seen_runs)) if j.run_id not in seen_runs]
        return (mine + history)[:limit]

    def _history(self, limit: int = 20, run_id: int | None = None) -> builtins.list[JobInfo]:
        with self._lock:
            live = {j.info.run_id for j in self._jobs.values() if j.info.status == "running"}
        out = []
        for rid, started, finished, status, _command, summary in self.sound_index.store.runs(limit, run_id):
            report = summary or {}
            if status == "running" and rid not in live:
                status = "interrupted"  # this server owns the index: a run it is not running was cut short by a kill
            out.append(
                JobInfo(
                    id=f"run-{rid}",
                    status=status if status in ("completed", "running", "interrupted") else "failed",
                    paths=[],
                    trigger="history",
                    started_at=started,
                    finished_at=finished,
                    run_id=rid,
                    report=IndexReport.from_document(report, rid) if report else None,
                    error=report.get("error"),
                    progress=JobProgress(
                        files_done=report.get("files_indexed", 0) + report.get("files_failed", 0),
                        windows=report.get("windows", 0),
                    ),
                )
            )
        return out

    def _forget_old(self) -> None:
        finished = [
            k for k, j in self._jobs.items() if j.info.status in ("completed", "failed", "cancelled", "interrupted")
        ]
        dropped = finished[: max(0, len(self._jobs) - HISTORY_KEPT)]
        for key in dropped:
            del self._jobs[key]
        self._drop_saved(dropped)

    # -- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        lower_priority()
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._jobs[self._queue.popleft()]
                job.info.status = "running"
                job.info.started_at = time.time()
                job.started_mono = time.monotonic()
                if job.info.kind == "index":
                    # Jobs run one at a time in the index's only writer: the run the runner starts takes the next id.
                    job.info.run_id = self.sound_index.store.max_ids()[2] + 1
                self._save(job.info)
            self._run(job)

    def _run(self, job: _Job) -> None:
        if job.info.kind == "tag":
            return self._run_tag(job)
        if job.info.kind == "train":
            return self._run_train(job)
        if job.info.kind == "transcribe":
            spec = job.info.transcribe or {}
            return self._run_tag(
                job,
                lambda on_progress: self.sound_index.transcribe(
                    spec["model"],
                    language=spec.get("language"),
                    retranscribe=bool(spec.get("retranscribe")),
                    progress=False,
                    on_progress=on_progress,
                ),
            )

        import torch

        from indexer.ray_pipeline import cluster_for
        from indexer.runner import IndexRunner

        sx = self.sound_index
        threads = torch.get_num_threads()
        # One core for the job's model; the rest stays with the requests (a search embeds its text on it).
        torch.set_num_threads(1)
        try:
            paths = spelled_as_indexed(sx.store, job.info.paths)
            full = sx.encoder.full()
            runner = IndexRunner(
                sx.store,
                sx.vectors,
                full,
                sx.settings,
                sx.plugins,
                False,
                lambda p: self._progress(job, p),
                cluster=cluster_for(sx.settings, full, sx.plugins),
            )
            runner.refuse_hardlinks = not getattr(sx.settings, "allow_hardlinks", False)
            report = runner.run(paths, retry_failed=job.info.retry_failed)
        except Exception as exc:  # a job's failure is reported on the job; the server goes on
            with self._lock:
                self._failed(job, exc)
                if job.info.run_id is not None and not job_store.run_recorded(sx.store.cursor(), job.info.run_id):
                    job.info.run_id = None  # refused before its run started
                self._save(job.info)
        else:
            with self._lock:
                job.info.status = "completed"
                job.info.finished_at = time.time()
                job.info.run_id = report.run_id
                job.info.report = report.model_copy(deep=True)
                # the final numbers (callbacks come per decoded file, before the last batch)
                self._final_progress(
                    job, report.files_indexed + report.files_failed, report.windows, report.windows_per_s
                )
                self._save(job.info)
        finally:
            torch.set_num_threads(threads)
            job.done.set()

    def _run_tag(self, job: _Job, run_pass=None) -> None:
        """A tag pass (or, given ``run_pass(on_progress)``, another pass on the tag machinery: transcription)."""
        spec = job.info.tag or {}
        try:
            if run_pass is not None:
                report = run_pass(lambda p: self._progress(job, p))
            else:
                report = self.sound_index.tag(
                    spec["model"],
                    top_k=spec.get("top_k"),
                    function_to_apply=spec.get("function_to_apply"),
                    retag=bool(spec.get("retag")),
                    progress=False,
                    on_progress=lambda p: self._progress(job, p),
                )
        except Exception as exc:  # a job's failure is reported on the job; the server goes on
            with self._lock:
                self._failed(job, exc)
        else:
            with self._lock:
                job.info.status = "completed"
                job.info.finished_at = time.time()
                job.info.report = report.document()
                self._final_progress(
                    job, report.files_tagged + report.files_failed, report.windows_tagged, report.windows_per_s
                )
        finally:
            self._save(job.info)
            job.done.set()

    def _run_train(self, job: _Job) -> None:
        """A probe fitted on the examples and stored in one transaction (the old version serves until then)."""
        from search.core.probes import probe_summary, train

        spec = job.info.train or {}
        sx = self.sound_index
        try:
            record = train(
                sx.store,
                sx.window_matrix(),
                spec["probe"],
                spec["classes"],
                spec.get("background"),
                float(spec.get("c", 1.0)),
                int(spec.get("seed", 0)),
            )
        except Exception as exc:  # a job's failure is reported on the job; the server goes on
            with self._lock:
                self._failed(job, exc)
        else:
            with self._lock:
                job.info.status = "completed"
                job.info.finished_at = time.time()
                job.info.train = {**spec, "result": probe_summary(sx.store, record)}  # what `train --json` prints
        finally:
            self._save(job.info)
            job.done.set()

    @staticmethod
    def _failed(job: _Job, exc: Exception) -> None:
        """A job's failure, reported on the job (the server goes on); called under the lock."""
        job.info.status = "failed"
        job.info.error = str(exc) if isinstance(exc, SoundsiftError) else f"{type(exc).__name__}: {exc}"
        job.info.finished_at = time.time()

    @staticmethod
    def _final_progress(job: _Job, files_done: int, windows: int, windows_per_s: float) -> None:
        """A finished job's progress: the report's numbers, nothing left; called under the lock."""
        p = job.info.progress
        p.files_done = files_done
        p.files_total = max(p.files_total or 0, files_done)
        p.windows = windows
        p.windows_per_s = round(windows_per_s, 3)
        p.eta_s = 0.0

    def _progress(self, job: _Job, update: dict) -> None:
        with self._lock:
            p = job.info.progress
            p.files_done = int(update.get("files_done", p.files_done))
            p.files_total = int(update.get("files_total", p.files_total or 0))
            p.windows = int(update.get("windows", p.windows))
            p.windows_per_s = round(float(update.get("windows_per_s", p.windows_per_s)), 3)
            elapsed = time.monotonic() - job.started_mono
            if p.files_done and p.files_total:
                p.eta_s = round(elapsed / p.files_done * (p.files_total - p.files_done), 1)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs; a running one is waited for (it commits as it goes). Queued jobs stay queued in the
        index and run when the server starts again."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout_s)


def lower_priority() -> None:
    """Make the calling (job) thread nicer than the request threads; decode workers it spawns inherit it.

    On Linux niceness is per thread; elsewhere this does nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class ReindexScheduler:
    """Submits a re-index of the index's roots (or given paths) every ``interval_s``, skipping a tick while busy."""

    def __init__(self, jobs: JobManager, interval_s: float, paths: list[str] | None = None):
        self.jobs = jobs
        self.interval_s = interval_s
        self.paths = paths
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soundsift-scheduler", daemon=True)
        self._thread.start()

    def roots(self) -> list[str]:
        """The configured paths, else every root already in the index that still exists."""
        if self.paths:
            return list(self.paths)
        return [r for r in self.jobs.sound_index.store.roots() if r and Path(r).exists()]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            roots = self.roots()
            if roots and not self.jobs.busy():
                try:
                    self.jobs.submit(roots, trigger="schedule")
                except QueueFull:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
