"""The store's read queries, as typed methods returning named records (IndexStore inherits them).

Every SQL statement the indexer runs lives in indexer/store.py or here; other modules ask the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from indexer.paths import real_path
from indexer.records import FileRecord

if TYPE_CHECKING:
    import duckdb


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


class WindowPlace(NamedTuple):
    """A window of an indexed file with where that file lives (what serving its audio needs)."""

    path: str
    root: str | None
    size: int
    mtime: float
    start: float
    end: float
    duration: float | None


class WindowsOfFile(NamedTuple):
    """A file's stored windows in time order: parallel lists plus their (n, dim) vectors."""

    ids: list[int]
    starts: list[float]
    ends: list[float]
    tags: list[dict]
    vectors: np.ndarray


class RunRecord(NamedTuple):
    """One indexing run as the runs table holds it (``summary``: the run's report document, None while running)."""

    id: int
    started_at: float | None
    finished_at: float | None
    status: str
    command: str
    summary: dict[str, Any] | None


def scalar(
    cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None, default: Any = 0
) -> Any:
    """The first column of the first row of ``sql`` (``default`` when there is no row or it is NULL)."""
    row = cur.execute(sql, params or []).fetchone()
    return row[0] if row and row[0] is not None else default


class StoreQueries:
    """Read queries of `IndexStore` (it provides ``cursor()`` and ``embedding_dim``)."""

    def cursor(self) -> duckdb.DuckDBPyConnection:  # pragma: no cover - provided by IndexStore
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:  # pragma: no cover - provided by IndexStore
        raise NotImplementedError

    def known_files(self) -> list[FileRecord]:
        """Every stored file row, in id order (what change detection compares a scan with)."""
        rows = (
            self.cursor()
            .execute(
                "SELECT id, path, root, size, mtime, hash, status, duration, error, sample_rate, channels, codec, decoder, notes, "
                "path_bytes, root_bytes FROM files ORDER BY id"
            )
            .fetchall()
        )
        # path and root as on disk (what a scan finds), whatever their bytes
        return [
            FileRecord(
                id=r[0],
                path=real_path(r[1], r[14]),
                root=real_path(r[2], r[15]),
                size=r[3],
                mtime=r[4],
                hash=r[5],
                status=r[6],
                duration=r[7],
                error=r[8],
                sample_rate=r[9],
                channels=r[10],
                codec=r[11],
                decoder=r[12],
                notes=r[13],
            )
            for r in rows
        ]

    def file_locations(self) -> list[FileLocation]:
        """(id, path, root) of every stored file, in id order; path and root as on disk (the names to open)."""
        rows = self.cursor().execute("SELECT id, path, root, path_bytes, root_bytes FROM files ORDER BY id").fetchall()
        return [FileLocation(i, real_path(p, pb), real_path(r, rb)) for i, p, r, pb, rb in rows]

    def indexed_window_count(self) -> int:
        """Windows of indexed files (those search and classification may return)."""
        return int(
            scalar(self.cursor(), f"SELECT count(*) FROM windows w JOIN files f ON f.id = w.file_id WHERE {INDEXED}")
        )

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
        ids = (
            self.cursor()
            .execute(
                "SELECT w.id FROM windows w LEFT JOIN files f ON f.id = w.file_id WHERE f.id IS NULL OR f.status <> 'indexed' "
                "ORDER BY w.id"
            )
            .fetchnumpy()["id"]
        )
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
        return [
            RunRecord(rid, started, finished, status, command, json.loads(summary) if summary else None)
            for rid, started, finished, status, command, summary in self.cursor().execute(sql, params).fetchall()
        ]

    def roots(self) -> list[str]:
        """Every archive root the index holds files under, as on disk (whatever its bytes), sorted."""
        rows = self.cursor().execute("SELECT DISTINCT root, root_bytes FROM files WHERE root IS NOT NULL").fetchall()
        return sorted({str(real_path(r, b)) for r, b in rows})

    def indexed_paths(self) -> dict[int, str]:
        """file id -> path of every indexed file."""
        return dict(self.cursor().execute("SELECT id, path FROM files WHERE status = 'indexed'").fetchall())

    def path_of(self, file_id: int) -> str | None:
        """The stored path of a file (None for an unknown id)."""
        return scalar(self.cursor(), "SELECT path FROM files WHERE id = ?", [int(file_id)], default=None)

    def window_ids_where(self, where: str, params: dict[str, Any]) -> np.ndarray:
        """Ids of the windows whose file matches ``where`` (SQL over ``f`` = files, ``w`` = windows, from `Filters`)."""
        return (
            self.cursor()
            .sql(f"SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id WHERE {where}", params=params)
            .fetchnumpy()["id"]
        )

    def first_window_of(self, file_id: int) -> int | None:
        """The smallest window id of a file (None when it has no windows)."""
        return scalar(self.cursor(), "SELECT min(id) FROM windows WHERE file_id = ?", [int(file_id)], default=None)

    def window_place(self, window_id: int) -> WindowPlace | None:
        """A window of an indexed file, with its file's path and root as on disk (the names to open), size, mtime
        and duration (None if not indexed)."""
        row = (
            self.cursor()
            .execute(
                'SELECT f.path, f.root, f.size, f.mtime, w.start, w."end", f.duration, f.path_bytes, f.root_bytes '
                "FROM windows w JOIN files f ON f.id = w.file_id WHERE w.id = ? AND f.status = 'indexed'",
                [int(window_id)],
            )
            .fetchone()
        )
        if row is None:
            return None
        return WindowPlace(real_path(row[0], row[7]), real_path(row[1], row[8]), *row[2:7])

    def windows_of_file(self, file_id: int) -> WindowsOfFile:
        """A file's windows ordered by start (then id), with their tags and vectors."""
        table = (
            self.cursor()
            .sql(
                'SELECT id, start, "end", tags, embedding FROM windows WHERE file_id = $f ORDER BY start, id',
                params={"f": int(file_id)},
            )
            .to_arrow_table()
        )
        dim = self.embedding_dim
        vectors = (
            table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim)
            if table.num_rows
            else np.zeros((0, dim), np.float32)
        )
        return WindowsOfFile(
            table.column("id").to_pylist(),
            table.column("start").to_pylist(),
            table.column("end").to_pylist(),
            [json.loads(t) if t else {} for t in table.column("tags").to_pylist()],
            vectors,
        )

    def file_rows(
        self,
        columns: str,
        where: str = "TRUE",
        params: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        with_window_count: bool = True,
    ) -> tuple[int, list[tuple]]:
        """(matching count, rows of ``columns`` over ``f`` = files ordered by path, each plus its window count)."""
        cur = self.cursor()
        params = params or {}
        total = int(scalar(cur, f"SELECT count(*) FROM files f WHERE {where}", params))  # type: ignore[arg-type]
        count = "(SELECT count(*) FROM windows w WHERE w.file_id = f.id)" if with_window_count else "0"
        page = "" if limit is None else " LIMIT $limit OFFSET $offset"
        rows = cur.execute(
            f"SELECT {columns}, {count} FROM files f WHERE {where} ORDER BY f.path{page}",
            {**params, **({} if limit is None else {"limit": limit, "offset": offset})},
        ).fetchall()
        return total, rows


def stored_meta_rows(index_dir: Path) -> dict[str, str]:
    """The metadata of the index at ``index_dir``, read without taking ownership (empty: no index, locked by its
    owner, or unreadable; opening the store proper reports those)."""
    import duckdb

    db = Path(index_dir) / DB_NAME
    if not db.exists():
        return {}
    try:
        con = duckdb.connect(str(db), read_only=True)
    except Exception:
        return {}
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    except Exception:
        return {}
    finally:
        con.close()


def stored_meta(index_dir: Path, key: str) -> str | None:
    """One metadata value of the index at ``index_dir``, read without taking ownership (None when absent)."""
    return stored_meta_rows(index_dir).get(key)


def stored_model_id(index_dir: Path) -> str | None:
    """The model an existing index was built with, read without taking ownership (None if no index)."""
    return stored_meta(index_dir, "model_id")
