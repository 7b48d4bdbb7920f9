"""Job routes: queue a re-index of server-side paths, list jobs, follow one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from search.http.job_paths import allowed_roots, resolve_job_path
from search.http.jobs import JobInfo
from search.http.models import JobRequest, TagJobRequest, TranscribeJobRequest, error_responses
from search.http.routes.deps import Guarded, JobsDep

router = APIRouter()


@router.post(
    "/jobs/index",
    response_model=JobInfo,
    status_code=202,
    dependencies=Guarded,
    tags=["jobs"],
    responses=error_responses(403, 404, 429),
)
def submit_index_job(body: JobRequest, jobs: JobsDep, request: Request) -> JobInfo:
    """Queue a re-index of server-side paths (new, changed and failed-before files); runs one at a time.

    Paths must lie under the allowed roots (the roots already in the index and the server's `--allow-root`
    directories); relative paths are taken relative to those roots. Any path outside them gets the same 403,
    whether it exists or not; a path under them that does not exist is 404. An identical job still queued is returned instead of a second one; when the
    queue is full the answer is 429.
    """
    roots = allowed_roots(jobs.sound_index.store, getattr(request.app.state, "allow_roots", []))
    paths = [resolve_job_path(raw, roots) for raw in body.paths]
    return jobs.submit(list(dict.fromkeys(paths)), trigger="api", retry_failed=body.retry_failed)


@router.post(
    "/jobs/tag",
    response_model=JobInfo,
    status_code=202,
    dependencies=Guarded,
    tags=["jobs"],
    responses=error_responses(429),
)
def submit_tag_job(body: TagJobRequest, jobs: JobsDep) -> JobInfo:
    """Queue a classifier tag pass over the index: only windows without tags from that model and revision."""
    return jobs.submit_tag(body.model, top_k=body.top_k, function_to_apply=body.function_to_apply, retag=body.retag)


@router.post(
    "/jobs/transcribe",
    response_model=JobInfo,
    status_code=202,
    dependencies=Guarded,
    tags=["jobs"],
    responses=error_responses(429),
)
def submit_transcribe_job(body: TranscribeJobRequest, jobs: JobsDep) -> JobInfo:
    """Queue a transcribe pass over the index: only windows without a transcript from that model and revision."""
    return jobs.submit_transcribe(body.model, language=body.language, retranscribe=body.retranscribe)


@router.get("/jobs", response_model=list[JobInfo], dependencies=Guarded, tags=["jobs"])
def list_jobs(jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[JobInfo]:
    """This server's recent jobs, newest first, then earlier runs recorded in the index."""
    return jobs.list(limit)


@router.get(
    "/jobs/{job_id}", response_model=JobInfo, dependencies=Guarded, tags=["jobs"], responses=error_responses(404)
)
def job(job_id: str, jobs: JobsDep) -> JobInfo:
    """A job with its progress: files done/total, windows/s, ETA; its report once done."""
    info = jobs.get(job_id) if len(job_id) <= 64 else None
    if info is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return info
