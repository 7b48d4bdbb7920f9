"""Hand an index job to the server that owns the index (`soundsift index` finding it locked), and follow it."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from indexer.errors import BadInput, IndexLocked, SoundsiftError
from indexer.ownership import describe_owner

POLL_S = 0.5


class ServerRefused(SoundsiftError):
    """The owning server answered the handoff with an error."""


def _call(url: str, method: str = "GET", body: dict | None = None, timeout_s: float = 30.0) -> dict:
    headers = {"Accept": "application/json"}
    key = os.environ.get("SOUNDSIFT_API_KEY")
    if key:
        headers["X-API-Key"] = key
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = exc.reason
        if exc.code == 401:
            raise ServerRefused(f"the server at {url} needs its API key: set SOUNDSIFT_API_KEY") from None
        if exc.code in (403, 422, 429):  # outside the server's allowed roots, a bad path, a full queue
            raise BadInput(f"the server refused the job: {detail}") from None
        raise ServerRefused(f"the server at {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerRefused(
            f"the server owning the index at {url} did not answer ({reason}); if it is gone, run the command again"
        ) from None


def owner_url(index_dir: Path) -> str | None:
    """The API URL of the server that owns ``index_dir``, if a server owns it."""
    owner = describe_owner(index_dir)
    return owner.get("url")


def submit_to_owner(
    index_dir: Path, paths: list[Path], locked: IndexLocked, retry_failed: bool = False
) -> tuple[str, dict]:
    """POST the job to the owner's /jobs/index; re-raises ``locked`` when the owner is not a server."""
    url = owner_url(index_dir)
    if not url:
        raise locked
    job = _call(
        f"{url.rstrip('/')}/jobs/index",
        "POST",
        {"paths": [str(p.resolve()) for p in paths], "retry_failed": retry_failed},
    )
    return url.rstrip("/"), job


def follow(url: str, job_id: str, show_progress: bool = True) -> dict:
    """Poll the job until it ends, printing progress on stderr; returns the final job document."""
    last = ""
    while True:
        job = _call(f"{url}/jobs/{job_id}")
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
