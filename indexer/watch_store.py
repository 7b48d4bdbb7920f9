"""Standing queries in DuckDB: watches (compiled to plain numbers), their alerts (an outbox) and delivery state.

A watch is stored with its user's words (``spec``), its delivery targets and what evaluation needs, compiled
at `watch add`: a small float32 matrix, a bias, scalars in ``compiled`` and an optional filter condition
over ``w`` (windows) and ``f`` (files). `alerts_for_commit` runs inside the transaction that inserts the
windows, so an alert exists exactly when its window does. Each alert gets one ``deliveries`` row per target;
the deliverer (search/core/delivery.py) reads the pending ones, sends, and marks what it sent.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from indexer.arrow_columns import column, id_table, numpy_column
from indexer.arrow_columns import table as arrow_table
from indexer.watch_eval import CompiledWatch, evaluate_all

WATCH_TABLES = (  # the store's migration 9
    "CREATE TABLE IF NOT EXISTS watches (id BIGINT NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL, "
    "spec JSON NOT NULL, compiled JSON NOT NULL, matrix BLOB, bias BLOB, filter_sql VARCHAR, filter_params JSON, "
    "targets JSON NOT NULL, created_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS alerts (id BIGINT NOT NULL, watch_id BIGINT NOT NULL, watch VARCHAR NOT NULL, "
    'window_id BIGINT NOT NULL, file_id BIGINT NOT NULL, path VARCHAR, start DOUBLE, "end" DOUBLE, score DOUBLE, '
    "label VARCHAR, run_id BIGINT, created_at DOUBLE NOT NULL, delivery_id VARCHAR NOT NULL, fired_by VARCHAR)",
    "CREATE TABLE IF NOT EXISTS deliveries (alert_id BIGINT NOT NULL, watch_id BIGINT NOT NULL, target VARCHAR NOT NULL, "
    "status VARCHAR NOT NULL, attempts INTEGER NOT NULL, last_error VARCHAR, next_at DOUBLE NOT NULL, "
    "delivered_at DOUBLE)",
)
TARGETS = ("webhook", "ndjson", "exec")


@dataclass
class WatchRecord:
    """One stored watch: the user's words, the compiled rule and where its alerts go."""

    id: int
    name: str
    kind: str  # query | labels | probe
    spec: dict
    rule: CompiledWatch
    targets: dict = field(default_factory=dict)  # webhook: {url, secret}, ndjson: path, exec: command
    created_at: float = 0.0

    def target_names(self) -> list[str]:
        return [t for t in TARGETS if self.targets.get(t)]


class AlertRow(NamedTuple):
    """One alert: a window a watch matched, when and in which run."""

    id: int
    watch: str
    window_id: int
    file_id: int
    path: str
    start: float
    end: float
    score: float
    label: str | None
    run_id: int | None
    created_at: float
    delivery_id: str


class PendingDelivery(NamedTuple):
    """A delivery still to make (or retry): the alert and the target it goes to."""

    alert: AlertRow
    watch_id: int
    target: str
    attempts: int


class DeliveryCounts(NamedTuple):
    """Delivery state of one watch's target."""

    watch: str
    target: str
    pending: int
    delivered: int
    failing: int
    last_error: str | None


_ALERT_COLS = 'a.id, a.watch, a.window_id, a.file_id, a.path, a.start, a."end", a.score, a.label, a.run_id, a.created_at, a.delivery_id'


# -- watches -----------------------------------------------------------------------------------
def insert_watch(cur, w: WatchRecord) -> int:
    """Store a new watch (its name must be free); returns its id."""
    wid = int(cur.execute("SELECT coalesce(max(id), 0) + 1 FROM watches").fetchall()[0][0])
    r = w.rule
    cur.execute(
        "INSERT INTO watches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_timestamp(?))",
        [
            wid,
            w.name,
            w.kind,
            json.dumps(w.spec, ensure_ascii=False),
            json.dumps(r.scalars(), ensure_ascii=False),
            np.ascontiguousarray(r.matrix, np.float32).tobytes(),
            np.ascontiguousarray(r.bias, np.float32).tobytes(),
            r.filter_sql,
            json.dumps(r.filter_params, ensure_ascii=False),
            json.dumps(w.targets, ensure_ascii=False),
            time.time(),
        ],
    )
    return wid


def watches(cur, name: str | None = None) -> list[WatchRecord]:
    """Every stored watch (or the one named), oldest first."""
    sql = (
        "SELECT id, name, kind, CAST(spec AS VARCHAR), CAST(compiled AS VARCHAR), matrix, bias, filter_sql, "
        "CAST(filter_params AS VARCHAR), CAST(targets AS VARCHAR), epoch(created_at) FROM watches"
    )
    rows = cur.execute(
        sql + (" WHERE name = ?" if name is not None else "") + " ORDER BY id", [name] if name else []
    ).fetchall()
    out = []
    for r in rows:
        scalars = json.loads(r[4])
        dim = int(scalars.get("dim", 0))
        matrix = np.frombuffer(r[5] or b"", dtype=np.float32)
        matrix = matrix.reshape(-1, dim) if dim else matrix.reshape(0, 0)
        rule = CompiledWatch.of(
            scalars, matrix, np.frombuffer(r[6] or b"", dtype=np.float32), r[7], json.loads(r[8] or "{}")
        )
        out.append(WatchRecord(int(r[0]), r[1], r[2], json.loads(r[3]), rule, json.loads(r[9]), float(r[10] or 0)))
    return out


def delete_watch(cur, name: str) -> bool:
    """Drop a watch and its undelivered deliveries (its alerts stay, as history); False when there was none."""
    rows = cur.execute("SELECT id FROM watches WHERE name = ?", [name]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        return False
    cur.execute("DELETE FROM deliveries WHERE watch_id = ? AND status <> 'delivered'", [row[0]])
    cur.execute("DELETE FROM watches WHERE id = ?", [row[0]])
    return True


# -- alerts (written in the commit of their windows) ----------------------------------------------
def alerts_for_commit(
    cur,
    ids: np.ndarray,
    file_ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    vectors: np.ndarray,
    paths: dict[int, str],
    run_id: int | None,
    policies: dict | None = None,
    only: Sequence[WatchRecord] | None = None,
    fired_by: str = "index",
) -> int:
    """Evaluate every watch (or ``only`` these) on new windows and insert their alert and delivery rows with ``cur``.

    Runs inside the caller's transaction; returns how many alerts it wrote."""
    if not len(ids):
        return 0
    stored = list(only) if only is not None else watches(cur)
    if not stored:
        return 0
    ids = np.asarray(ids, dtype=np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    alerts: dict[str, list] = {
        k: []
        for k in (
            "id",
            "watch_id",
            "watch",
            "window_id",
            "file_id",
            "path",
            "start",
            "end",
            "score",
            "label",
            "delivery_id",
        )
    }
    deliveries: dict[str, list] = {"alert_id": [], "watch_id": [], "target": []}
    next_id = int(cur.execute("SELECT coalesce(max(id), 0) + 1 FROM alerts").fetchall()[0][0])
    now = time.time()
    results = evaluate_all([w.rule for w in stored], vectors, policies)
    for w, (hit, scores) in zip(stored, results):
        if w.rule.filter_sql and hit.any():
            params = {**w.rule.filter_params, "lo_id": lo, "hi_id": hi}
            got = cur.execute(
                "SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id "
                f"WHERE w.id BETWEEN $lo_id AND $hi_id AND ({w.rule.filter_sql})",
                params,
            ).fetchall()
            hit = hit & np.isin(ids, np.array([g[0] for g in got], dtype=np.int64))
        idx = np.flatnonzero(hit)
        if not len(idx):
            continue
        aids = np.arange(next_id, next_id + len(idx), dtype=np.int64)
        next_id += len(idx)
        fids = np.asarray(file_ids, dtype=np.int64)[idx]
        alerts["id"].append(aids)
        alerts["watch_id"].append(np.full(len(idx), w.id, np.int64))
        alerts["watch"] += [w.name] * len(idx)
        alerts["window_id"].append(ids[idx])
        alerts["file_id"].append(fids)
        alerts["path"] += [paths.get(int(f)) for f in fids]
        alerts["start"].append(np.asarray(starts, np.float64)[idx])
        alerts["end"].append(np.asarray(ends, np.float64)[idx])
        alerts["score"].append(scores[idx].astype(np.float64))
        alerts["label"] += [w.rule.label] * len(idx)
        alerts["delivery_id"] += [uuid.uuid4().hex for _ in idx]
        for t in w.target_names():
            deliveries["alert_id"].append(aids)
            deliveries["watch_id"].append(np.full(len(idx), w.id, np.int64))
            deliveries["target"] += [t] * len(idx)
    if not alerts["id"]:
        return 0
    n = sum(len(a) for a in alerts["id"])
    _insert(cur, "alerts", _alert_table(alerts, n, run_id, now, fired_by))
    if deliveries["alert_id"]:
        _insert(cur, "deliveries", _delivery_table(deliveries))
    return n


def _insert(cur, table_name: str, rows) -> None:
    cur.register(f"new_{table_name}", rows)
    try:
        cur.execute(f"INSERT INTO {table_name} SELECT * FROM new_{table_name}")
    finally:
        cur.unregister(f"new_{table_name}")


def _alert_table(alerts: dict[str, list], n: int, run_id: int | None, now: float, fired_by: str):
    """The alerts rows, in the table's column order (numbers joined from their per-watch arrays)."""
    joined = {k: np.concatenate(alerts[k]) for k in ("id", "watch_id", "window_id", "file_id", "start", "end", "score")}
    return arrow_table(
        {
            "id": numpy_column(joined["id"]),
            "watch_id": numpy_column(joined["watch_id"]),
            "watch": column(alerts["watch"], pa.string()),
            "window_id": numpy_column(joined["window_id"]),
            "file_id": numpy_column(joined["file_id"]),
            "path": column(alerts["path"], pa.string()),
            "start": numpy_column(joined["start"]),
            "end": numpy_column(joined["end"]),
            "score": numpy_column(joined["score"]),
            "label": column(alerts["label"], pa.string()),
            "run_id": column([run_id] * n, pa.int64()),  # None for `watch test --fire`
            "created_at": column(np.full(n, now, np.float64), pa.float64()),
            "delivery_id": column(alerts["delivery_id"], pa.string()),
            "fired_by": column([fired_by] * n, pa.string()),
        }
    )


def _delivery_table(deliveries: dict[str, list]):
    """One pending delivery row per alert and target."""
    m = len(deliveries["target"])
    return arrow_table(
        {
            "alert_id": numpy_column(np.concatenate(deliveries["alert_id"])),
            "watch_id": numpy_column(np.concatenate(deliveries["watch_id"])),
            "target": column(deliveries["target"], pa.string()),
            "status": column(["pending"] * m, pa.string()),
            "attempts": column(np.zeros(m, np.int32), pa.int32()),
            "last_error": column([None] * m, pa.string()),
            "next_at": column(np.zeros(m), pa.float64()),
            "delivered_at": column([None] * m, pa.float64()),
        }
    )


def alerted_windows(cur, watch_id: int) -> np.ndarray:
    """Window ids a watch has already alerted on (so `watch test --fire` adds none twice)."""
    got = cur.execute("SELECT DISTINCT window_id FROM alerts WHERE watch_id = ?", [watch_id]).fetchnumpy()
    return np.asarray(got["window_id"], dtype=np.int64)


def window_paths(cur, ids: np.ndarray) -> dict[int, str]:
    """file id -> path of the files holding these windows."""
    table = id_table("wid", ids)
    cur.register("alert_wids", table)
    try:
        rows = cur.execute(
            "SELECT DISTINCT f.id, f.path FROM alert_wids q JOIN windows w ON w.id = q.wid JOIN files f ON f.id = w.file_id"
        ).fetchall()
    finally:
        cur.unregister("alert_wids")
    return {int(r[0]): r[1] for r in rows}


def list_alerts(
    cur,
    watch: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after_id: int | None = None,
    run_id: int | None = None,
    limit: int | None = None,
    order: str = "id",
) -> list[AlertRow]:
    """Alerts, oldest first (``order='score'``: best first), narrowed by watch, time, run and an id cursor."""
    where, params = ["TRUE"], []
    for cond, value in (
        ("a.watch = ?", watch),
        ("a.created_at >= ?", since),
        ("a.created_at < ?", until),
        ("a.id > ?", after_id),
        ("a.run_id = ?", run_id),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    sql = f"SELECT {_ALERT_COLS} FROM alerts a WHERE {' AND '.join(where)} ORDER BY " + (
        "a.score DESC, a.id" if order == "score" else "a.id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [AlertRow(*r) for r in cur.execute(sql, params).fetchall()]


def alert_counts(cur, watch: str | None = None) -> dict[str, int]:
    """watch name -> number of alerts."""
    sql = "SELECT watch, count(*) FROM alerts" + (" WHERE watch = ?" if watch else "") + " GROUP BY watch"
    return {r[0]: int(r[1]) for r in cur.execute(sql, [watch] if watch else []).fetchall()}


# -- deliveries ----------------------------------------------------------------------------------
def pending_deliveries(cur, now: float, limit: int = 100) -> list[PendingDelivery]:
    """Deliveries due now (pending or failing, their backoff over), oldest alert first."""
    rows = cur.execute(
        f"SELECT {_ALERT_COLS}, d.watch_id, d.target, d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.status <> 'delivered' AND d.next_at <= ? ORDER BY a.id, d.target LIMIT ?",
        [now, int(limit)],
    ).fetchall()
    return [PendingDelivery(AlertRow(*r[:12]), int(r[12]), r[13], int(r[14])) for r in rows]


def next_due(cur) -> float | None:
    """When the next undelivered delivery is due (None: nothing left)."""
    value = cur.execute("SELECT min(next_at) FROM deliveries WHERE status <> 'delivered'").fetchall()[0][0]
    return None if value is None else float(value)


def mark_delivered(cur, alert_id: int, target: str, now: float) -> None:
    cur.execute(
        "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL "
        "WHERE alert_id = ? AND target = ?",
        [now, alert_id, target],
    )


def mark_failed(cur, alert_id: int, target: str, error: str, next_at: float) -> None:
    cur.execute(
        "UPDATE deliveries SET status = 'failing', attempts = attempts + 1, last_error = ?, next_at = ? "
        "WHERE alert_id = ? AND target = ?",
        [error[:500], next_at, alert_id, target],
    )


def delivery_counts(cur) -> list[DeliveryCounts]:
    """Per watch and target: pending, delivered and failing deliveries, and the last error of a failing one."""
    rows = cur.execute(
        "SELECT w.name, d.target, count(*) FILTER (WHERE d.status = 'pending'), "
        "count(*) FILTER (WHERE d.status = 'delivered'), count(*) FILTER (WHERE d.status = 'failing'), "
        "arg_max(d.last_error, d.alert_id) FILTER (WHERE d.status = 'failing') "
        "FROM deliveries d JOIN watches w ON w.id = d.watch_id GROUP BY w.name, d.target ORDER BY w.name, d.target"
    ).fetchall()
    return [DeliveryCounts(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]


def undelivered(cur) -> int:
    """Deliveries not yet made (pending or failing)."""
    return int(cur.execute("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").fetchall()[0][0])


def watch_targets(cur, watch_id: int) -> dict[str, Any] | None:
    """A watch's targets (None once the watch is gone)."""
    rows = cur.execute("SELECT CAST(targets AS VARCHAR) FROM watches WHERE id = ?", [watch_id]).fetchall()
    return json.loads(rows[0][0]) if rows else None


def _before_watches(default):
    """Reads of an index from before watches existed, opened read-only (so not migrated), find nothing."""

    def wrap(fn):
        @functools.wraps(fn)
        def read(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except (duckdb.CatalogException, duckdb.InvalidInputException):  # no table (or a Python name instead)
                if not self.store.read_only:
                    raise
                return default()

        return read

    return wrap


class WatchStore:
    """Typed access to the watch tables of one open `IndexStore` (reads through fresh cursors, writes in its transactions)."""

    def __init__(self, store):
        self.store = store

    def add(self, w: WatchRecord) -> int:
        with self.store.transaction() as cur:
            return insert_watch(cur, w)

    @_before_watches(list)
    def all(self) -> list[WatchRecord]:
        return watches(self.store.cursor())

    @_before_watches(lambda: None)
    def named(self, name: str) -> WatchRecord | None:
        found = watches(self.store.cursor(), name)
        return found[0] if found else None

    def remove(self, name: str) -> bool:
        with self.store.transaction() as cur:
            return delete_watch(cur, name)

    def fire(self, w: WatchRecord, ids, file_ids, starts, ends, vectors, run_id: int | None = None) -> int:
        """Alert rows (and their deliveries) for windows a watch matches that it has not alerted on yet, in one transaction."""
        with self.store.transaction() as cur:
            seen = alerted_windows(cur, w.id)
            keep = ~np.isin(np.asarray(ids, dtype=np.int64), seen)
            ids = np.asarray(ids)[keep]
            paths = window_paths(cur, ids) if len(ids) else {}
            return alerts_for_commit(
                cur,
                ids,
                np.asarray(file_ids)[keep],
                np.asarray(starts)[keep],
                np.asarray(ends)[keep],
                np.asarray(vectors)[keep],
                paths,
                run_id,
                self.store.policies,
                only=[w],
                fired_by="test",
            )

    @_before_watches(list)
    def alerts(self, **narrow) -> list[AlertRow]:
        return list_alerts(self.store.cursor(), **narrow)

    @_before_watches(dict)
    def alert_counts(self, watch: str | None = None) -> dict[str, int]:
        return alert_counts(self.store.cursor(), watch)

    @_before_watches(list)
    def pending(self, now: float, limit: int = 100) -> list[PendingDelivery]:
        return pending_deliveries(self.store.cursor(), now, limit)

    @_before_watches(lambda: None)
    def next_due(self) -> float | None:
        return next_due(self.store.cursor())

    def delivered(self, alert_id: int, target: str, now: float) -> None:
        with self.store.transaction() as cur:
            mark_delivered(cur, alert_id, target, now)

    def failed(self, alert_id: int, target: str, error: str, next_at: float) -> None:
        with self.store.transaction() as cur:
            mark_failed(cur, alert_id, target, error, next_at)

    @_before_watches(list)
    def status(self) -> list[DeliveryCounts]:
        return delivery_counts(self.store.cursor())

    @_before_watches(int)
    def undelivered(self) -> int:
        return undelivered(self.store.cursor())

    def targets_of(self, watch_id: int) -> dict | None:
        return watch_targets(self.store.cursor(), watch_id)
