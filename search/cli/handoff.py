"""Hand an index job to the server that owns the index (`soundsift index` finding it locked), and follow it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from indexer.errors import IndexLocked
from search.cli.client import RemoteIndex, ServerError, serving_owner

POLL_S = 0.5
JOB_CALL_S = 30.0  # one job request (submit, poll): the server answers these at once


ServerRefused = ServerError  # the name the handoff's errors had; one error map now (`RemoteIndex`)
owner_url = serving_owner  # the one "who owns this index" check (a note counts only while its lock is held)


def submit_to_owner(
    index_dir: Path,
    paths: list[Path],
    locked: IndexLocked,
    retry_failed: bool = False,
    api_key: str | None = None,
) -> tuple[str, dict]:
    """POST the job to the owner's /jobs/index; re-raises ``locked`` when the owner is not a server."""
    url = serving_owner(index_dir)
    if not url:
        raise locked
    job = RemoteIndex(url, api_key, timeout_s=JOB_CALL_S).submit_job(
        "index", {"paths": [str(p.resolve()) for p in paths], "retry_failed": retry_failed}
    )
    return url, job


def follow(url: str, job_id: str, show_progress: bool = True, api_key: str | None = None) -> dict:
    """Poll the job until it ends, printing progress on stderr; returns the final job document."""
    client = RemoteIndex(url, api_key, timeout_s=JOB_CALL_S)
    last = ""
    while True:
        job = client.job(job_id)
        p = job.get("progress") or {}
        if show_progress:
            eta = f", ETA {p['eta_s']:.0f} s" if p.get("eta_s") is not None else ""
            line = (
                f"{job['status']}: {p.get('files_done', 0)}/{p.get('files_total') if p.get('files_total') is not None else '?'} files, "
                f"{p.get('windows', 0)} windows, {p.get('windows_per_s', 0):.1f} windows/s{eta}"
            )
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(POLL_S)
