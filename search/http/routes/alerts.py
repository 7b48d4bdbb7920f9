"""Alert routes: the alerts watches fired (cursor pages, by watch and time), the watches and their delivery state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from indexer.watch_store import WatchStore
from search.core.delivery import alert_document
from search.http.routes.deps import Guarded, IndexDep, decode_cursor, encode_cursor

router = APIRouter()


class Alert(BaseModel):
    delivery_id: str
    alert_id: int
    watch: str
    path: str | None
    start: float
    end: float
    score: float
    label: str | None
    window_id: int
    file_id: int
    run_id: int | None
    time: float = Field(description="when the alert was written (Unix seconds), in the commit of its window")
    link: str | None = Field(description="the window in the page")


class AlertsPage(BaseModel):
    alerts: list[Alert]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; absent on the last one")


class WatchInfo(BaseModel):
    name: str
    kind: str
    spec: dict
    targets: list[str]
    alerts: int
    pending: int
    delivered: int
    failing: int
    last_error: str | None = None


@router.get("/alerts", response_model=AlertsPage, dependencies=Guarded, tags=["alerts"])
def alerts(
    sx: IndexDep,
    request: Request,
    watch: Annotated[str | None, Query(max_length=200, description="only this watch's alerts")] = None,
    since: Annotated[float | None, Query(description="written at or after this time (Unix seconds)")] = None,
    until: Annotated[float | None, Query(description="written before this time (Unix seconds)")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertsPage:
    """Alerts oldest first, a page at a time."""
    after = decode_cursor(cursor).get("after") if cursor else None
    rows = WatchStore(sx.store).alerts(watch=watch, since=since, until=until, after_id=after, limit=limit + 1)
    base = str(request.base_url).rstrip("/")
    page = [Alert(**alert_document(a, base)) for a in rows[:limit]]
    more = len(rows) > limit
    return AlertsPage(alerts=page, next_cursor=encode_cursor({"after": page[-1].alert_id}) if more and page else None)


@router.get("/watches", response_model=list[WatchInfo], dependencies=Guarded, tags=["alerts"])
def watches(sx: IndexDep) -> list[WatchInfo]:
    """The stored watches with their alert counts and delivery state."""
    ws = WatchStore(sx.store)
    counts = ws.alert_counts()
    state: dict[str, dict] = {}
    for c in ws.status():
        s = state.setdefault(c.watch, {"pending": 0, "delivered": 0, "failing": 0, "last_error": None})
        s["pending"] += c.pending
        s["delivered"] += c.delivered
        s["failing"] += c.failing
        s["last_error"] = s["last_error"] or c.last_error
    return [
        WatchInfo(
            name=w.name,
            kind=w.kind,
            spec=w.spec,
            targets=w.target_names(),
            alerts=counts.get(w.name, 0),
            **state.get(w.name, {"pending": 0, "delivered": 0, "failing": 0}),
        )
        for w in ws.all()
    ]
