"""What every router shares: the API-key guard, the open index and job manager, id parsing and page cursors."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from indexer.errors import BadInput
from search.http.jobs import JobManager
from search.sound_index import SoundIndex

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key, when it has one")
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>, when the server has one")


def require_api_key(
    request: Request,
    key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """When an API key is configured, every data route needs it (compared in constant time)."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = key if key is not None else (bearer.credentials if bearer else None)
    if given is None or not secrets.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8")):
        raise HTTPException(
            401,
            "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_index(request: Request) -> SoundIndex:
    return request.app.state.sound_index


def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


HEAVY_THREADS = 2  # classify, audio cuts and uploads at once; more wait their turn


async def run_heavy(request: Request, fn, *args, **kwargs):
    """Run a CPU-heavy handler (classify, audio cuts, uploads) in its own small pool, so that however many arrive
    they queue among themselves and leave the default pool (searches, file views) its threads and its CPU."""
    limiter = getattr(request.app.state, "heavy_limiter", None)
    if limiter is None:
        limiter = request.app.state.heavy_limiter = anyio.CapacityLimiter(HEAVY_THREADS)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)


IndexDep = Annotated[SoundIndex, Depends(get_index)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
Guarded = [Depends(require_api_key)]


# -- cursors: opaque to clients, a position in a stable order to us ---------------------------
def encode_cursor(position: dict) -> str:
    """An opaque page cursor for ``position``."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    """The position a cursor from `encode_cursor` stands for; BadInput for anything else."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(position, dict) and all(isinstance(position.get(k, 0), int) for k in ("after", "offset")):
            return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise BadInput("cursor is not one this server handed out: pass next_cursor from the previous page unchanged")


def parse_id(raw: str, what: str) -> int:
    """Ids in paths are plain integers; anything else (traversal attempts included) names nothing: 404."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise HTTPException(404, f"no {what} {raw!r}")
    return int(raw)
