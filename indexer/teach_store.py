"""Examples and probes in DuckDB: what a user taught the index (marked windows) and what was trained from it.

An example is keyed by the content hash of its file and the window's start, not by file or window id, so a
renamed or copied file keeps its examples and re-indexing never moves them; when no indexed file holds that
content any more (the file was modified or removed) the example is reported stale, never silently re-aimed.
A probe is a small linear classifier over the stored unit vectors: its weights, bias, classes, the model
fingerprint it was trained under and the hash of the example set it was trained on, one row per name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer import crashpoints

TEACH_TABLES = (  # the store's migration 8
    "CREATE TABLE IF NOT EXISTS examples (class VARCHAR NOT NULL, hash VARCHAR NOT NULL, start DOUBLE NOT NULL, "
    '"end" DOUBLE NOT NULL, positive BOOLEAN NOT NULL, source VARCHAR NOT NULL, path VARCHAR, window_id BIGINT, '
    "created_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (class, hash, start))",
    "CREATE TABLE IF NOT EXISTS probes (name VARCHAR PRIMARY KEY, version INTEGER NOT NULL, classes JSON NOT NULL, "
    "dim INTEGER NOT NULL, weights FLOAT[] NOT NULL, bias FLOAT[] NOT NULL, model_id VARCHAR, "
    "model_fingerprint VARCHAR NOT NULL, example_hash VARCHAR NOT NULL, metrics JSON, "
    "created_at TIMESTAMP DEFAULT current_timestamp)",
)
START_TOLERANCE_S = 1e-3  # a window's start as stored (float seconds) vs as an example recorded it


@dataclass(frozen=True)
class WindowRef:
    """One indexed window as an example target: its id, where it is, and the content it belongs to."""

    window_id: int
    file_id: int
    path: str
    start: float
    end: float
    hash: str | None


@dataclass(frozen=True)
class ExampleRecord:
    """A stored example, resolved against the current index: ``window_id`` is None when it is stale."""

    cls: str
    hash: str
    start: float
    end: float
    positive: bool
    source: str
    path: str | None
    created_at: str
    window_id: int | None
    current_path: str | None
    stale: str | None  # None, "modified" (its path now holds other content) or "missing" (no file holds it)


@dataclass(frozen=True)
class ProbeRecord:
    """A stored probe: weights (classes, dim), bias (classes,), and what it was trained under and on."""

    name: str
    version: int
    classes: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    model_id: str | None
    model_fingerprint: str
    example_hash: str
    metrics: dict[str, Any]
    created_at: str


def has_teach_tables(cur) -> bool:
    """False for an index from before examples existed opened read-only (nothing to migrate then)."""
    rows = cur.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('examples', 'probes') "
        "AND database_name = current_database()"
    ).fetchall()
    return int(rows[0][0]) == 2


class TeachStore:
    """Typed reads and writes of examples and probes over an `IndexStore` (its cursors and transactions)."""

    def __init__(self, store):
        self.store = store

    def _ready(self) -> bool:
        return has_teach_tables(self.store.cursor())

    # -- windows as targets ------------------------------------------------------------------
    def window(self, window_id: int) -> WindowRef | None:
        """The indexed window with this id (None when the index has none)."""
        row = (
            self.store.cursor()
            .execute(
                'SELECT w.id, f.id, f.path, w.start, w."end", f.hash FROM windows w JOIN files f ON f.id = w.file_id '
                "WHERE w.id = ? AND f.status = 'indexed'",
                [int(window_id)],
            )
            .fetchone()
        )
        return WindowRef(*row) if row else None

    def file_windows(self, file_id: int) -> list[WindowRef]:
        """Every window of an indexed file, by start."""
        rows = (
            self.store.cursor()
            .execute(
                'SELECT w.id, f.id, f.path, w.start, w."end", f.hash FROM windows w JOIN files f ON f.id = w.file_id '
                "WHERE f.id = ? AND f.status = 'indexed' ORDER BY w.start, w.id",
                [int(file_id)],
            )
            .fetchall()
        )
        return [WindowRef(*r) for r in rows]

    def files_named(self, path: str, basename: str) -> list[tuple[int, str]]:
        """(file id, stored path) of indexed files stored as ``path`` or ending in ``/basename`` (candidates to compare)."""
        return (
            self.store.cursor()
            .execute(
                "SELECT id, path FROM files WHERE status = 'indexed' AND (path = ? OR path = ? OR ends_with(path, ?)) "
                "ORDER BY id",
                [path, basename, "/" + basename],
            )
            .fetchall()
        )

    def random_window_ids(self, count: int, exclude: Sequence[int], seed: int) -> np.ndarray:
        """Up to ``count`` indexed window ids drawn at random (repeatably for a seed), none of ``exclude``."""
        ids = (
            self.store.cursor()
            .sql("SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id WHERE f.status = 'indexed' ORDER BY w.id")
            .fetchnumpy()["id"]
        )
        ids = np.setdiff1d(np.asarray(ids, np.int64), np.asarray(list(exclude), np.int64))
        if len(ids) <= count:
            return ids
        return np.sort(np.random.default_rng(seed).choice(ids, size=count, replace=False))

    # -- examples ----------------------------------------------------------------------------
    def add_examples(self, cls: str, windows: Sequence[WindowRef], positive: bool, source: str) -> int:
        """Mark ``windows`` as (counter-)examples of ``cls`` in one transaction; a window marked again is re-marked."""
        with self.store.transaction() as cur:
            for w in windows:
                cur.execute(
                    "DELETE FROM examples WHERE class = ? AND hash = ? AND abs(start - ?) < ?",
                    [cls, w.hash, w.start, START_TOLERANCE_S],
                )
                cur.execute(
                    'INSERT INTO examples (class, hash, start, "end", positive, source, path, window_id) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [cls, w.hash, w.start, w.end, positive, source, w.path, w.window_id],
                )
        return len(windows)

    def remove_examples(self, cls: str | None, windows: Sequence[WindowRef] | None) -> int:
        """Forget examples: of ``cls`` (all of its, or those on ``windows``), or on ``windows`` in every class."""
        cur = self.store.cursor()
        before = int(cur.execute("SELECT count(*) FROM examples").fetchone()[0])
        with self.store.transaction() as cur:
            if windows is None:
                cur.execute("DELETE FROM examples WHERE class = ?", [cls])
            else:
                for w in windows:
                    cur.execute(
                        "DELETE FROM examples WHERE hash = ? AND abs(start - ?) < ? AND (? IS NULL OR class = ?)",
                        [w.hash, w.start, START_TOLERANCE_S, cls, cls],
                    )
        return before - int(self.store.cursor().execute("SELECT count(*) FROM examples").fetchone()[0])

    def examples(self, cls: str | None = None) -> list[ExampleRecord]:
        """Every example (of ``cls``), resolved to a current window of the same content and start, or stale."""
        if not self._ready():
            return []
        rows = (
            self.store.cursor()
            .execute(
                'SELECT e.class, e.hash, e.start, e."end", e.positive, e.source, e.path, CAST(e.created_at AS VARCHAR), '
                "(SELECT min(w.id) FROM windows w JOIN files f ON f.id = w.file_id WHERE f.hash = e.hash "
                "AND f.status = 'indexed' AND abs(w.start - e.start) < $tol) AS wid, "
                "(SELECT min(f.path) FROM files f WHERE f.hash = e.hash AND f.status = 'indexed') AS now_path, "
                "EXISTS (SELECT 1 FROM files f WHERE f.path = e.path AND f.status = 'indexed' "
                "AND f.hash IS DISTINCT FROM e.hash) AS modified "
                "FROM examples e WHERE $cls IS NULL OR e.class = $cls ORDER BY e.class, e.created_at, e.hash, e.start",
                {"tol": START_TOLERANCE_S, "cls": cls},
            )
            .fetchall()
        )
        out = []
        for c, h, s, e, pos, src, path, at, wid, now_path, modified in rows:
            stale = None if wid is not None else ("modified" if modified else "missing")
            out.append(
                ExampleRecord(
                    c,
                    h,
                    float(s),
                    float(e),
                    bool(pos),
                    src,
                    path,
                    at,
                    None if wid is None else int(wid),
                    now_path,
                    stale,
                )
            )
        return out

    def classes(self) -> list[str]:
        """Every class with at least one example."""
        if not self._ready():
            return []
        return [
            r[0] for r in self.store.cursor().execute("SELECT DISTINCT class FROM examples ORDER BY class").fetchall()
        ]

    # -- probes ------------------------------------------------------------------------------
    def save_probe(self, probe: ProbeRecord) -> None:
        """Replace the probe of this name in one transaction: a reader (or a kill) sees the old one or the new one."""
        with self.store.transaction() as cur:
            cur.execute("DELETE FROM probes WHERE name = ?", [probe.name])
            cur.execute(
                "INSERT INTO probes (name, version, classes, dim, weights, bias, model_id, model_fingerprint, "
                "example_hash, metrics) VALUES (?, ?, ?::JSON, ?, ?, ?, ?, ?, ?, ?::JSON)",
                [
                    probe.name,
                    int(probe.version),
                    json.dumps(list(probe.classes)),
                    int(probe.weights.shape[1]),
                    [float(x) for x in np.asarray(probe.weights, np.float32).ravel()],
                    [float(x) for x in np.asarray(probe.bias, np.float32).ravel()],
                    probe.model_id,
                    probe.model_fingerprint,
                    probe.example_hash,
                    json.dumps(probe.metrics),
                ],
            )
            crashpoints.reached("probe_commit")  # the new row written, not yet committed

    def probe(self, name: str) -> ProbeRecord | None:
        """The stored probe of this name (None when there is none)."""
        if not self._ready():
            return None
        row = (
            self.store.cursor()
            .execute(
                "SELECT name, version, CAST(classes AS VARCHAR), dim, weights, bias, model_id, model_fingerprint, "
                "example_hash, CAST(metrics AS VARCHAR), CAST(created_at AS VARCHAR) FROM probes WHERE name = ?",
                [name],
            )
            .fetchone()
        )
        if row is None:
            return None
        classes = tuple(json.loads(row[2]))
        weights = np.asarray(row[4], np.float32).reshape(len(classes), int(row[3]))
        return ProbeRecord(
            row[0],
            int(row[1]),
            classes,
            weights,
            np.asarray(row[5], np.float32),
            row[6],
            row[7],
            row[8],
            json.loads(row[9]) if row[9] else {},
            row[10],
        )

    def probe_names(self) -> list[str]:
        """Every stored probe's name."""
        if not self._ready():
            return []
        return [r[0] for r in self.store.cursor().execute("SELECT name FROM probes ORDER BY name").fetchall()]

    def remove_probe(self, name: str) -> bool:
        """Drop the probe of this name; False when there was none."""
        if self.probe(name) is None:
            return False
        with self.store.transaction() as cur:
            cur.execute("DELETE FROM probes WHERE name = ?", [name])
        return True
