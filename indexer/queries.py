"""The store's read queries, as typed methods returning named records (IndexStore inherits them).

Every SQL statement the indexer runs lives in indexer/store.py or here; other modules ask the store.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import duckdb

    from indexer.store import FileRecord

DB_NAME = "soundsift.duckdb"
INDEXED = "f.status = 'indexed'"  # the windows classification and search may return


class FileDecoding(NamedTuple):
    """What decoding found for a stored file."""

    sample_rate: int | None
    channels: int | None
    codec: str | None
    decoder: str | None
    notes: str | None


class MaxIds(NamedTuple):
    """The highest file, window and run ids ever handed out."""

    file: int
    window: int
    run: int


class FileLocation(NamedTuple):
    """Where a stored file is."""

    id: int
    path: str
    root: str


class FileState(NamedTuple):
    """A stored file's identity and state, by path."""

    id: int
    size: int
    mtime: float
    hash: str | None
    status: str


class WindowRow(NamedTuple):
    """A stored window: its file's path, its span in seconds and its file id."""

    path: str
    start: float
    end: float
    file_id: int


class RunRecord(NamedTuple):
    """One indexing run as the runs table holds it (``summary``: the run's report document, None while running)."""

    id: int
    started_at: float | None
    finished_at: float | None
    status: str
    command: str
    summary: dict[str, Any] | None


def scalar(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None, default: Any = 0) -> Any:
    """The first column of the first row of ``sql`` (``default`` when there is no row)."""
    row = cur.execute(sql, params or []).fetchone()
    return row[0] if row else default


class StoreQueries:
    """Read queries of `IndexStore` (it provides ``cursor()`` and ``embedding_dim``)."""

    def cursor(self) -> duckdb.DuckDBPyConnection:  # pragma: no cover - provided by IndexStore
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:  # pragma: no cover - provided by IndexStore
        raise NotImplementedError

    def known_files(self) -> list[FileRecord]:
        """Every stored file row, in id order (what change detection compares a scan with)."""
        from indexer.store import FileRecord

        rows = self.cursor().execute(
            "SELECT id, path, root, size, mtime, hash, status, duration, error, sample_rate, channels, codec, decoder, notes "
            "FROM files ORDER BY id").fetchall()
        return [FileRecord(id=r[0], path=r[1], root=r[2], size=r[3], mtime=r[4], hash=r[5], status=r[6], duration=r[7],
                           error=r[8], sample_rate=r[9], channels=r[10], codec=r[11], decoder=r[12], notes=r[13])
                for r in rows]

    def file_locations(self) -> list[FileLocation]:
        """(id, path, root) of every stored file, in id order."""
        return [FileLocation(*r) for r in self.cursor().execute("SELECT id, path, root FROM files ORDER BY id").fetchall()]

    def indexed_window_count(self) -> int:
        """Windows of indexed files (those search and classification may return)."""
        return int(scalar(self.cursor(), f"SELECT count(*) FROM windows w JOIN files f ON f.id = w.file_id WHERE {INDEXED}"))

    def non_finite_window_ids(self, chunk: int = 65_536) -> np.ndarray:
        """Ids of windows whose stored vector holds NaN or Inf (one streaming pass)."""
        dim = self.embedding_dim
        bad: list[np.ndarray] = []
        reader = self.cursor().sql("SELECT id, embedding FROM windows ORDER BY id").to_arrow_reader(chunk)
        for batch in reader:
            if batch.num_rows:
                vecs = batch.column(1).flatten().to_numpy().reshape(-1, dim)
                bad.append(batch.column(0).to_numpy()[~np.isfinite(vecs).all(axis=1)])
        return (np.concatenate(bad) if bad else np.zeros(0, np.int64)).astype(np.int64)

    def dangling_window_ids(self) -> np.ndarray:
        """Ids of windows whose file row is missing or not indexed."""
        ids = self.cursor().execute(
            "SELECT w.id FROM windows w LEFT JOIN files f ON f.id = w.file_id WHERE f.id IS NULL OR f.status <> 'indexed' "
            "ORDER BY w.id").fetchnumpy()["id"]
        return np.asarray(ids, dtype=np.int64)

    def unfinished_run_count(self) -> int:
        """Runs left 'running' or marked 'interrupted' (killed mid-way)."""
        return int(scalar(self.cursor(), "SELECT count(*) FROM runs WHERE status IN ('running', 'interrupted')"))

    def runs(self, limit: int = 20, run_id: int | None = None) -> list[RunRecord]:
        """The latest ``limit`` runs, newest first (or just ``run_id``)."""
        sql = "SELECT id, epoch(started_at), epoch(finished_at), status, command, summary FROM runs"
        params: list[Any] = []
        if run_id is not None:
            sql += " WHERE id = ?"
            params.append(run_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [RunRecord(rid, started, finished, status, command, json.loads(summary) if summary else None)
                for rid, started, finished, status, command, summary in self.cursor().execute(sql, params).fetchall()]

    def iter_indexed_vectors(self, chunk: int) -> Iterator[Any]:
        """Windows of indexed files with their vectors, ``chunk`` at a time, in id order."""
        return self.iter_vectors(chunk, INDEXED)  # type: ignore[attr-defined]


def stored_meta(index_dir: Path, key: str) -> str | None:
    """One metadata value of the index at ``index_dir``, read without taking ownership (None: no index,
    locked by its owner, or unreadable; opening the store proper reports those)."""
    import duckdb

    db = Path(index_dir) / DB_NAME
    if not db.exists():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except Exception:
        return None
    try:
        row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None
    except Exception:
        return None
    finally:
        con.close()


def stored_model_id(index_dir: Path) -> str | None:
    """The model an existing index was built with, read without taking ownership (None if no index)."""
    return stored_meta(index_dir, "model_id")
