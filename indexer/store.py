"""The index store: DuckDB is the system of record for files, windows, embeddings, runs and index metadata."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
else:

    class _Arrow:
        """pyarrow on first use: it costs 25 MB and a quarter second, and `stats` never builds an Arrow table."""

        def __getattr__(self, name: str):
            import pyarrow

            return getattr(pyarrow, name)

    pa = _Arrow()

from indexer import crashpoints, job_store, label_set_store, tag_store, teach_store, transcript_store, watch_store
from indexer.arrow_columns import column, id_table, numpy_of, vector_column
from indexer.arrow_columns import table as arrow_table
from indexer.errors import DiskFull, IndexCorrupt, IndexLocked, IndexMissing, ModelMismatch
from indexer.model import ModelIdentity
from indexer.paths import display_path, path_bytes, real_path
from indexer.queries import DB_NAME, FileDecoding, FileState, MaxIds, StoreQueries, WindowRow, scalar
from indexer.records import CommitPlan, WindowBatch, WindowChunk
from indexer.records import FileRecord as FileRecord  # re-exported: callers import the records from the store
from indexer.tag_store import TagRows

# The base schema (version 1); every later change is a numbered migration below, applied in order on open.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS files (
    id BIGINT, path VARCHAR NOT NULL, root VARCHAR, size BIGINT, mtime DOUBLE, hash VARCHAR,
    duration DOUBLE, sample_rate INTEGER, channels INTEGER, codec VARCHAR, decoder VARCHAR,
    status VARCHAR NOT NULL, error VARCHAR, run_id BIGINT, updated_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS runs (
    id BIGINT, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, command VARCHAR,
    summary JSON
);
"""
# version -> statements bringing an index from version - 1 to it; each runs in one transaction with the
# version bump, by the index's owner on open. Append only: a released migration is never edited.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE files ADD COLUMN IF NOT EXISTS notes VARCHAR",),  # what decoding left out of a file
    3: tag_store.TAG_TABLES,  # classifier tags: tag_models, window_tags
    # names that are not UTF-8: their bytes beside the display form in path/root (NULL for a UTF-8 name)
    4: (
        "ALTER TABLE files ADD COLUMN IF NOT EXISTS path_bytes BLOB",
        "ALTER TABLE files ADD COLUMN IF NOT EXISTS root_bytes BLOB",
    ),
    5: (
        "CREATE TABLE IF NOT EXISTS text_vectors (fingerprint VARCHAR NOT NULL, text VARCHAR NOT NULL, "
        "vector FLOAT[] NOT NULL, PRIMARY KEY (fingerprint, text))",
    ),  # embedded query/label texts, per model
    6: job_store.JOB_TABLES,  # the server's re-index jobs: server_jobs
    7: label_set_store.LABEL_SET_TABLES,  # named label sets; evaluation clip vectors
    8: teach_store.TEACH_TABLES,  # examples and probes (what a user taught the index)
    9: watch_store.WATCH_TABLES,  # standing queries: watches, alerts (an outbox), deliveries
    10: transcript_store.TRANSCRIPT_TABLES,  # speech transcripts: transcript_models, window_transcripts
}
SCHEMA_VERSION = max(MIGRATIONS)
DB_MEMORY_SHARE = 0.1  # of the machine's RAM, for DuckDB's buffer pool (at least DB_MEMORY_MIN_GB)
DB_MEMORY_MIN_GB = 1.0
TEXT_SIDE_DIR = "text_vectors"  # new text vectors a read-only reader embedded, folded into DuckDB by the next owner

WINDOWS_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    id BIGINT NOT NULL, file_id BIGINT NOT NULL, start DOUBLE NOT NULL, "end" DOUBLE NOT NULL,
    tags JSON, embedding FLOAT[{dim}] NOT NULL
);
"""


def is_disk_full(exc: BaseException) -> bool:
    """True when a write failed for lack of space (ENOSPC, EDQUOT, EFBIG), whoever raised it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("no space left", "disk quota", "file too large", "not enough space"))


def memory_limit() -> str:
    """DuckDB's ``memory_limit`` for an index: ``SOUNDSIFT_DB_MEMORY_LIMIT`` (e.g. ``4GB``), else a tenth of the RAM.

    DuckDB's own default, 80 % of the RAM, lets its buffer pool keep every vector it ever wrote or read: an owner
    committing 1M windows grew to 3.9 GB that way (2.3 GB and faster commits at 2 GB), and at 10M it would starve
    FAISS and the window matrix. Nothing the index asks of DuckDB needs more: sorts and joins beyond it spill.
    """
    chosen = os.environ.get("SOUNDSIFT_DB_MEMORY_LIMIT", "").strip()
    if chosen:
        return chosen
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return "2GB"
    return f"{max(DB_MEMORY_MIN_GB, DB_MEMORY_SHARE * ram / 2**30):.1f}GiB"


class IndexStore(StoreQueries):
    """A DuckDB index file. One connection per process; threads read through their own cursors."""

    def __init__(self, index_dir: Path, con: duckdb.DuckDBPyConnection):
        self.index_dir = index_dir
        self._con = con
        self._write_lock = threading.Lock()
        self.read_only = False
        self.policies: dict | None = None  # scoring policies for label-set watches (None: the default plugins')
        self.wrote_side_texts = (
            False  # a reader left new text vectors in side files (folded into DuckDB on close if it can)
        )

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls, index_dir: Path, identity: ModelIdentity | None, create: bool, read_only: bool = False
    ) -> "IndexStore":
        """Open (or create) the store; ``identity`` must match what wrote it (ModelMismatch names both).

        ``read_only`` lets several reader processes share the file (none of them may write).
        """
        path = index_dir / DB_NAME
        if not path.exists() and not create:
            raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            # SET, not connect(config=...): another connection to the same file in this process (a user's script,
            # stored_meta_rows) opened without that config would otherwise be refused.
            con.execute(f"SET memory_limit = '{memory_limit()}'")
        except duckdb.Error as exc:
            raise open_error(index_dir, exc) from None
        store = cls(index_dir, con)
        store.read_only = read_only
        try:
            if not read_only:
                con.execute(SCHEMA)
                store.migrate()
        except duckdb.Error as exc:
            con.close()
            raise open_error(index_dir, exc) from None
        stored = store.identity_meta()
        if stored is None or "model_fingerprint" not in stored:  # a new file (migrations may have written the version)
            if identity is None:
                raise IndexMissing(f"the index at {index_dir} is empty: run `soundsift index` first")
            store._initialise(identity)
        elif identity is not None:
            store.check_identity(identity)
            if not read_only and "logit_scale" not in stored and identity.logit_scale is not None:
                with store.transaction() as cur:  # an index from before the scale was recorded
                    cur.execute("INSERT INTO meta VALUES ('logit_scale', ?)", [repr(float(identity.logit_scale))])
        if not read_only:
            store.absorb_side_text_vectors()
        return store

    def schema_version(self) -> int:
        """The schema version recorded in the index metadata (1 for indexes from before versions were numbered)."""
        row = self.cursor().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 1

    def migrate(self) -> list[int]:
        """Apply the numbered migrations past the index's schema version, each with its version bump in one
        transaction; returns the versions applied. An index from a newer soundsift is refused."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise IndexCorrupt(
                f"the index at {self.index_dir} has schema version {current}, newer than this soundsift "
                f"knows ({SCHEMA_VERSION}); upgrade soundsift to open it"
            )
        applied = []
        for version in sorted(v for v in MIGRATIONS if v > current):
            with self.transaction() as cur:
                for statement in MIGRATIONS[version]:
                    cur.execute(statement)
                cur.execute("DELETE FROM meta WHERE key = 'schema_version'")
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(version)])
            applied.append(version)
        return applied

    def _initialise(self, identity: ModelIdentity) -> None:
        with self.transaction() as con:
            con.execute(WINDOWS_SCHEMA.format(dim=identity.embedding_dim))
            values = {
                "model_id": identity.model_id,
                "model_revision": identity.revision,
                "model_fingerprint": identity.fingerprint,
                "embedding_dim": str(identity.embedding_dim),
                "feature_config": json.dumps(identity.feature_config, sort_keys=True),
                "commit_seq": "0",
            }
            if identity.logit_scale is not None:
                values["logit_scale"] = repr(float(identity.logit_scale))
            con.executemany("INSERT INTO meta VALUES (?, ?)", list(values.items()))
            con.execute("DELETE FROM meta WHERE key = 'schema_version'")
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def identity_meta(self) -> dict[str, str] | None:
        rows = dict(self.cursor().execute("SELECT key, value FROM meta").fetchall())
        return rows or None

    def check_identity(self, identity: ModelIdentity) -> None:
        """Raise ModelMismatch unless the index was written with this model and these feature settings."""
        meta = self.identity_meta() or {}
        stored_desc = (
            f"{meta.get('model_id')}@{meta.get('model_revision')} ({(meta.get('model_fingerprint') or '')[:12]})"
        )
        if meta.get("model_fingerprint") != identity.fingerprint:
            raise ModelMismatch(
                f"the index at {self.index_dir} was built with {stored_desc}, not {identity.describe()}; "
                "use the same --model, or index into another --index directory"
            )
        stored_features = json.loads(meta.get("feature_config", "{}"))
        if stored_features != identity.feature_config:
            diff = {
                k: (stored_features.get(k), v)
                for k, v in identity.feature_config.items()
                if stored_features.get(k) != v
            }
            raise ModelMismatch(
                f"the index at {self.index_dir} was built with other feature settings (stored vs now: {diff}); "
                "use the same --window/--hop, or index into another --index directory"
            )

    @property
    def embedding_dim(self) -> int:
        return int((self.identity_meta() or {}).get("embedding_dim", 0))

    # -- connections -------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor: DuckDB cursors are not shared across threads, and one with a pending result blocks others."""
        return self._con.cursor()

    def transaction(self):
        store = self

        class _Txn:
            def __enter__(self_inner):
                store._write_lock.acquire()
                self_inner.cur = store._con.cursor()
                self_inner.cur.execute("BEGIN TRANSACTION")
                return self_inner.cur

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    self_inner.cur.execute("COMMIT" if exc_type is None else "ROLLBACK")
                finally:
                    self_inner.cur.close()
                    store._write_lock.release()
                return False

        return _Txn()

    def close(self) -> None:
        self._con.close()

    # -- reads -------------------------------------------------------------------------------
    def commit_seq(self) -> int:
        row = self.cursor().execute("SELECT value FROM meta WHERE key = 'commit_seq'").fetchone()
        return int(row[0]) if row else 0

    def max_ids(self) -> MaxIds:
        """Highest file, window and run ids ever handed out (deleted ones included: ids are never reused,
        so a FAISS file written before a delete can never hold a stale vector under a live id)."""
        cur = self.cursor()
        meta = dict(cur.execute("SELECT key, value FROM meta WHERE key IN ('max_file_id', 'max_window_id')").fetchall())
        f = scalar(cur, "SELECT coalesce(max(id), 0) FROM files")
        w = scalar(cur, "SELECT coalesce(max(id), 0) FROM windows")
        r = scalar(cur, "SELECT coalesce(max(id), 0) FROM runs")
        return MaxIds(
            max(int(f), int(meta.get("max_file_id", 0))), max(int(w), int(meta.get("max_window_id", 0))), int(r)
        )

    def window_ids(self) -> np.ndarray:
        """Every stored window id, sorted (int64)."""
        ids = self.cursor().execute("SELECT id FROM windows ORDER BY id").fetchnumpy()["id"]
        return np.asarray(ids, dtype=np.int64)

    def vectors_for(self, ids: np.ndarray, chunk: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) for the given window ids, ``chunk`` at a time."""
        dim = self.embedding_dim
        for i in range(0, len(ids), chunk):
            table = id_table("wid", ids[i : i + chunk])
            cur = self.cursor()
            cur.register("wanted_ids", table)
            try:
                got = cur.sql(
                    "SELECT w.id, w.embedding FROM wanted_ids q JOIN windows w ON w.id = q.wid ORDER BY w.id"
                ).to_arrow_table()
            finally:
                cur.unregister("wanted_ids")
            if got.num_rows:
                vectors = got.column(1).combine_chunks().flatten().to_numpy().reshape(-1, dim)
                yield got.column(0).to_numpy().astype(np.int64), np.ascontiguousarray(vectors, dtype=np.float32)

    def decoding_of(self, file_id: int) -> FileDecoding:
        """What decoding found for a stored file (all None for an unknown id)."""
        row = (
            self.cursor()
            .execute("SELECT sample_rate, channels, codec, decoder, notes FROM files WHERE id = ?", [file_id])
            .fetchone()
        )
        return FileDecoding(*row) if row else FileDecoding(None, None, None, None, None)

    def window_batch_of(self, file_id: int) -> WindowBatch:
        """A file's stored windows (ids and file id as stored), to copy onto an identical file."""
        dim = self.embedding_dim
        got = (
            self.cursor()
            .sql(
                'SELECT id, file_id, start, "end", CAST(tags AS VARCHAR), embedding FROM windows WHERE file_id = $fid ORDER BY id',
                params={"fid": int(file_id)},
            )
            .to_arrow_table()
        )
        vectors = (
            got.column(5).combine_chunks().flatten().to_numpy().reshape(-1, dim)
            if got.num_rows
            else np.zeros((0, dim), np.float32)
        )
        return WindowBatch(
            ids=got.column(0).to_numpy().astype(np.int64),
            file_ids=got.column(1).to_numpy().astype(np.int64),
            starts=got.column(2).to_numpy(),
            ends=got.column(3).to_numpy(),
            tags=[t if t is not None else "{}" for t in got.column(4).to_pylist()],
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        )

    def files_by_path(self) -> dict[str, FileState]:
        """path -> (id, size, mtime, hash, status) for every known file."""
        rows = self.cursor().execute("SELECT path, id, size, mtime, hash, status, path_bytes FROM files").fetchall()
        return {real_path(r[0], r[6]): FileState(*r[1:6]) for r in rows}

    def iter_vectors(
        self, chunk: int, where: str = "", params: dict | None = None, ordered: bool = True
    ) -> Iterator[WindowChunk]:
        """Stored windows with their vectors, ``chunk`` at a time, in id order (memory stays flat).

        ``ordered=False`` reads the table as stored, with no sort: a sort of every vector would hold them all in
        memory at once, which a FAISS rebuild or a window matrix of millions of windows cannot afford.
        """
        select = 'SELECT w.id, w.file_id, w.start, w."end", w.embedding FROM windows w'
        if not ordered and not where:
            sql = select
        else:
            sql = f"{select} JOIN files f ON f.id = w.file_id {('WHERE ' + where) if where else ''}"
            sql += " ORDER BY w.id" if ordered else ""
        dim = self.embedding_dim
        cur = self.cursor()  # held by this generator for as long as the reader lives
        reader = cur.sql(sql, params=params or {}).to_arrow_reader(chunk)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            yield WindowChunk(
                ids=numpy_of(batch.column(0)),
                file_ids=numpy_of(batch.column(1)),
                starts=numpy_of(batch.column(2)),
                ends=numpy_of(batch.column(3)),
                vectors=numpy_of(batch.column(4)).reshape(-1, dim),
            )

    def window_rows(self, ids: Sequence[int]) -> dict[int, WindowRow]:
        """window id -> (path, start, end, file_id) for the given ids."""
        if not len(ids):
            return {}
        # A list parameter, not a registered Arrow table: building one from Python values makes pyarrow import
        # pandas, a fifth of a second of every cold search.
        rows = (
            self.cursor()
            .execute(
                'SELECT w.id, f.path, w.start, w."end", w.file_id FROM (SELECT unnest(?::BIGINT[]) AS wid) q '
                "JOIN windows w ON w.id = q.wid JOIN files f ON f.id = w.file_id",
                [[int(i) for i in ids]],
            )
            .fetchall()
        )
        return {r[0]: WindowRow(*r[1:]) for r in rows}

    def window_count(self) -> int:
        return int(scalar(self.cursor(), "SELECT count(*) FROM windows"))

    # -- writes ------------------------------------------------------------------------------
    def commit(self, plan: CommitPlan, run_id: int) -> tuple[int, np.ndarray]:
        """Apply ``plan`` in one DuckDB transaction and bump the commit number.

        Returns the new commit number and the ids of the windows that left the index (for FAISS).
        A full disk raises DiskFull after the rollback: the previous commit stays the served state.
        """
        if plan.windows is not None and len(plan.windows) and not np.isfinite(plan.windows.vectors).all():
            raise ValueError("refusing to store non-finite vectors")
        try:
            with self.transaction() as cur:
                removed = self._apply(cur, plan, run_id)
                self._fire_watches(cur, plan, run_id)
                seq = self._bump_seq(cur)
                crashpoints.reached("commit")
            return seq, removed
        except duckdb.Error as exc:
            if is_disk_full(exc):
                raise DiskFull(
                    f"the disk holding {self.index_dir} is full ({str(exc).splitlines()[0]}); this batch was rolled back and "
                    "the index keeps serving its last commit. Free some space and run `soundsift index` again: "
                    "it resumes where it stopped."
                ) from None
            raise

    def _fire_watches(self, cur, plan: CommitPlan, run_id: int) -> None:
        """The watches, on the windows this commit adds, as alert rows in this same transaction (an outbox)."""
        w = plan.windows
        if w is not None and len(w):
            paths = {f.id: display_path(f.path) for f in plan.files}
            watch_store.alerts_for_commit(
                cur, w.ids, w.file_ids, w.starts, w.ends, w.vectors, paths, run_id, self.policies
            )

    def _apply(self, cur, plan: CommitPlan, run_id: int) -> np.ndarray:
        relinked = [r.id for r in plan.relinks]
        # Rows to drop: explicit removals, plus any other row holding a path we are about to (re)write
        # (the same name on disk: two names that differ only in bytes that are not UTF-8 share a display form).
        written = [f.path for f in plan.files] + [r.path for r in plan.relinks]
        paths = arrow_table(
            {
                "p": column([display_path(p) for p in written], pa.string()),
                "b": column([path_bytes(p) for p in written], pa.binary()),
            }
        )
        cur.register("written_paths", paths)
        try:
            doomed = [
                r[0]
                for r in cur.execute(
                    "SELECT f.id FROM files f JOIN written_paths w ON f.path = w.p AND f.path_bytes IS NOT DISTINCT FROM w.b"
                ).fetchall()
            ]
        finally:
            cur.unregister("written_paths")
        doomed = sorted({int(i) for i in doomed if int(i) not in relinked} | {int(i) for i in plan.remove_file_ids})
        removed = np.zeros(0, dtype=np.int64)
        if doomed:
            ids = id_table("fid", doomed)
            cur.register("doomed_files", ids)
            try:
                removed = np.asarray(
                    cur.execute("SELECT id FROM windows WHERE file_id IN (SELECT fid FROM doomed_files)").fetchnumpy()[
                        "id"
                    ],
                    dtype=np.int64,
                )
                cur.execute("DELETE FROM windows WHERE file_id IN (SELECT fid FROM doomed_files)")
                cur.execute("DELETE FROM files WHERE id IN (SELECT fid FROM doomed_files)")
            finally:
                cur.unregister("doomed_files")
        for r in plan.relinks:
            cur.execute(
                "UPDATE files SET path = ?, path_bytes = ?, root = ?, root_bytes = ?, size = ?, mtime = ?, hash = ?, "
                "run_id = ?, updated_at = current_timestamp WHERE id = ?",
                [
                    display_path(r.path),
                    path_bytes(r.path),
                    _display(r.root),
                    path_bytes(r.root),
                    r.size,
                    r.mtime,
                    r.hash,
                    run_id,
                    r.id,
                ],
            )
        if plan.files:
            cur.executemany(
                "INSERT INTO files (id, path, root, size, mtime, hash, duration, sample_rate, channels, codec, decoder, status, error, "
                "run_id, notes, path_bytes, root_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.id,
                        display_path(f.path),
                        _display(f.root),
                        f.size,
                        f.mtime,
                        f.hash,
                        f.duration,
                        f.sample_rate,
                        f.channels,
                        f.codec,
                        f.decoder,
                        f.status,
                        _display(f.error),
                        run_id,
                        _display(f.notes),
                        path_bytes(f.path),
                        path_bytes(f.root),
                    )
                    for f in plan.files
                ],
            )
            self._raise_meta_max(cur, "max_file_id", max(f.id for f in plan.files))
        windows = plan.windows
        if windows is not None and len(windows):
            dim = windows.vectors.shape[1]
            table = arrow_table(
                {
                    "id": column(windows.ids, pa.int64()),
                    "file_id": column(windows.file_ids, pa.int64()),
                    "start": column(windows.starts, pa.float64()),
                    "end": column(windows.ends, pa.float64()),
                    "tags": column(windows.tags, pa.string()),
                    "embedding": vector_column(windows.vectors.reshape(-1, dim)),
                }
            )
            cur.register("new_windows", table)
            try:
                cur.execute(
                    'INSERT INTO windows SELECT id, file_id, start, "end", tags::JSON, embedding FROM new_windows'
                )
            finally:
                cur.unregister("new_windows")
            self._raise_meta_max(cur, "max_window_id", int(windows.ids.max()))
        tag_store.delete_for_windows(cur, removed)
        transcript_store.delete_for_windows(cur, removed)
        for rows in plan.model_tags:
            tag_store.upsert_model(cur, rows.model)
            tag_store.insert_rows(cur, rows)
        tag_store.insert_raw(cur, plan.copied_tags)
        if len(removed):
            self._raise_meta_max(cur, "max_window_id", int(removed.max()))
        if doomed:
            self._raise_meta_max(cur, "max_file_id", max(doomed))
        return removed

    @staticmethod
    def _raise_meta_max(cur, key: str, value: int) -> None:
        rows = cur.execute(
            "SELECT value FROM meta WHERE key = ?", [key]
        ).fetchall()  # fetched to the end: the cursor goes on
        row = rows[0] if rows else None
        if row is None:
            cur.execute("INSERT INTO meta VALUES (?, ?)", [key, str(value)])
        elif int(row[0]) < value:
            cur.execute("UPDATE meta SET value = ? WHERE key = ?", [str(value), key])

    def delete_windows(
        self, window_ids: Sequence[int] | np.ndarray, fail_files_reason: str | None = None
    ) -> tuple[int, np.ndarray]:
        """Drop the given windows (audit repair). With ``fail_files_reason`` their files are marked failed and
        lose all their windows, so `soundsift index --retry-failed` embeds them again whole."""
        ids = id_table("wid", window_ids)
        with self.transaction() as cur:
            cur.register("bad_windows", ids)
            try:
                if fail_files_reason:
                    cur.execute(
                        "CREATE TEMP TABLE bad_files AS SELECT DISTINCT file_id AS fid FROM windows "
                        "WHERE id IN (SELECT wid FROM bad_windows)"
                    )
                    cur.execute(
                        "UPDATE files SET status = 'failed', error = ? WHERE id IN (SELECT fid FROM bad_files)",
                        [fail_files_reason],
                    )
                    where = "id IN (SELECT wid FROM bad_windows) OR file_id IN (SELECT fid FROM bad_files)"
                else:
                    where = "id IN (SELECT wid FROM bad_windows)"
                removed = np.asarray(
                    cur.execute(f"SELECT id FROM windows WHERE {where}").fetchnumpy()["id"], dtype=np.int64
                )
                cur.execute(f"DELETE FROM windows WHERE {where}")
                tag_store.delete_for_windows(cur, removed)
                transcript_store.delete_for_windows(cur, removed)
                if fail_files_reason:
                    cur.execute("DROP TABLE bad_files")
                if len(removed):  # ids are never reused, even when repair drops the newest windows
                    self._raise_meta_max(cur, "max_window_id", int(removed.max()))
            finally:
                cur.unregister("bad_windows")
            return self._bump_seq(cur), removed

    def _bump_seq(self, cur) -> int:
        seq = int(cur.execute("SELECT value FROM meta WHERE key = 'commit_seq'").fetchone()[0]) + 1
        cur.execute("UPDATE meta SET value = ? WHERE key = 'commit_seq'", [str(seq)])
        return seq

    def start_run(self, run_id: int, started_at: float, command: str) -> int:
        """Record a run as running; runs a killed process left 'running' are marked 'interrupted'. Returns how many."""
        with self.transaction() as cur:
            stale = cur.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
            cur.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            cur.execute(
                "INSERT INTO runs VALUES (?, to_timestamp(?), NULL, 'running', ?, NULL)", [run_id, started_at, command]
            )
        return int(stale)

    def record_run(
        self, run_id: int, started_at: float, finished_at: float, status: str, command: str, summary: dict
    ) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM runs WHERE id = ?", [run_id])
            cur.execute(
                "INSERT INTO runs VALUES (?, to_timestamp(?), to_timestamp(?), ?, ?, ?)",
                [run_id, started_at, finished_at, status, command, json.dumps(summary)],
            )

    # -- remembered text vectors ---------------------------------------------------------------
    def text_vectors(self, fingerprint: str, texts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Stored unit vectors of exact (prompt-applied) texts for a model fingerprint; all of them when ``texts`` is None.

        Read from the DuckDB table and from side files readers left (see ``put_text_vectors``).
        """
        found: dict[str, np.ndarray] = {}
        wanted = None if texts is None else set(texts)
        try:
            cur = self.cursor()
            if wanted is None:
                rows = cur.execute(
                    "SELECT text, vector FROM text_vectors WHERE fingerprint = ?", [fingerprint]
                ).fetchall()
            else:
                rows = cur.execute(  # a list parameter: see window_rows
                    "SELECT text, vector FROM text_vectors WHERE fingerprint = ? "
                    "AND text IN (SELECT unnest(?::VARCHAR[]))",
                    [fingerprint, sorted(wanted)],
                ).fetchall()
        except duckdb.CatalogException:  # an index written before texts were remembered, opened read-only
            rows = []
        for text, vector in rows:
            found[text] = np.asarray(vector, dtype=np.float32)
        if wanted is None or len(found) < len(wanted):
            for text, vector in self._side_text_vectors(fingerprint):
                if text not in found and (wanted is None or text in wanted):
                    found[text] = vector
        return found

    def put_text_vectors(self, fingerprint: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Remember embedded texts. The owner writes DuckDB; a read-only reader (which cannot) writes a small side
        file under ``text_vectors/``, atomically, that every reader reads and the next owner folds into DuckDB."""
        if not len(texts):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.read_only:
            import os
            import uuid

            side = self.index_dir / TEXT_SIDE_DIR
            try:
                side.mkdir(exist_ok=True)
                name = f"{fingerprint[:16]}-{uuid.uuid4().hex}.npz"
                tmp = side / f".{name}.tmp"
                with open(tmp, "wb") as fh:
                    np.savez(
                        fh, fingerprint=np.array(fingerprint), texts=np.array(list(texts), dtype=str), vectors=vectors
                    )
                os.replace(tmp, side / name)
                self.wrote_side_texts = True
            except OSError:
                pass  # a read-only file system: texts are embedded again next time, nothing is lost
            return
        with self.transaction() as cur:  # list parameters, not an Arrow table: see window_rows
            cur.execute(
                "INSERT INTO text_vectors SELECT DISTINCT ON (t) ?, t, v::FLOAT[] FROM "
                "(SELECT unnest(?::VARCHAR[]) AS t, unnest(?::FLOAT[][]) AS v) "
                "WHERE t NOT IN (SELECT text FROM text_vectors WHERE fingerprint = ?)",
                [fingerprint, list(texts), np.asarray(vectors, dtype=np.float32).tolist(), fingerprint],
            )

    def _side_files(self) -> list[Path]:
        side = self.index_dir / TEXT_SIDE_DIR
        return sorted(side.glob("*.npz")) if side.is_dir() else []

    def _side_text_vectors(self, fingerprint: str) -> Iterator[tuple[str, np.ndarray]]:
        for path in self._side_files():
            if not path.name.startswith(fingerprint[:16]):
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["fingerprint"]) != fingerprint:
                        continue
                    yield from zip((str(t) for t in data["texts"]), np.asarray(data["vectors"], dtype=np.float32))
            except (OSError, ValueError, KeyError):
                continue  # a half-written or foreign file: ignored

    def absorb_side_text_vectors(self) -> None:
        """Fold the side files readers wrote into the DuckDB table (the owner does this when it opens the index)."""
        for path in self._side_files():
            try:
                with np.load(path, allow_pickle=False) as data:
                    self.put_text_vectors(str(data["fingerprint"]), [str(t) for t in data["texts"]], data["vectors"])
            except (OSError, ValueError, KeyError):
                pass
            path.unlink(missing_ok=True)

    # -- model tags --------------------------------------------------------------------------
    def tag_models(self) -> dict:
        """model id -> `TagModel` for every model that has tagged this index."""
        return tag_store.stored_models(self.cursor())

    def model_tags_of(self, source_ids: np.ndarray, new_ids: np.ndarray) -> list[tuple]:
        """The classifier tags stored for ``source_ids``, re-keyed to ``new_ids`` (a copy of identical content)."""
        remap = {int(a): int(b) for a, b in zip(source_ids, new_ids)}
        return [(remap[r[0]], *r[1:]) for r in tag_store.rows_of_windows(self.cursor(), source_ids) if r[0] in remap]

    def commit_tags(self, rows: list[TagRows], retag: str | None = None) -> None:
        """Store classifier tags in one transaction (``retag``: drop that model's tags first). No FAISS change,
        so the commit number stays."""
        with self.transaction() as cur:
            if retag:
                tag_store.drop_model(cur, retag)
            for r in rows:
                tag_store.upsert_model(cur, r.model)
                tag_store.insert_rows(cur, r)
            crashpoints.reached("tag_commit")

    # -- transcripts -------------------------------------------------------------------------
    def transcript_models(self) -> dict:
        """model id -> `TranscriptModel` for every speech model that has transcribed this index."""
        return transcript_store.stored_models(self.cursor())

    def commit_transcripts(self, rows: list, retranscribe: str | None = None) -> None:
        """Store `TranscriptRows` in one transaction (``retranscribe``: drop that model's transcripts first)."""
        with self.transaction() as cur:
            if retranscribe:
                transcript_store.drop_model(cur, retranscribe)
            for r in rows:
                transcript_store.upsert_model(cur, r.model)
                transcript_store.insert_rows(cur, r)
            crashpoints.reached("transcript_commit")

    # -- summaries ---------------------------------------------------------------------------
    def stats(self) -> dict:
        cur = self.cursor()
        by_status = dict(cur.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        windows = scalar(cur, "SELECT count(*) FROM windows")
        hours = scalar(cur, "SELECT coalesce(sum(duration), 0) / 3600 FROM files WHERE status = 'indexed'")
        last = cur.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        meta = self.identity_meta() or {}
        return {
            "files": {
                "indexed": by_status.get("indexed", 0),
                "failed": by_status.get("failed", 0),
                "skipped": (json.loads(last[0]).get("files_skipped", 0) if last and last[0] else 0),
            },  # no summary while a run goes on
            "windows": int(windows),
            "hours": round(float(hours), 4),
            "model": {
                "id": meta.get("model_id"),
                "revision": meta.get("model_revision"),
                "fingerprint": meta.get("model_fingerprint"),
                "embedding_dim": int(meta.get("embedding_dim", 0)),
            },
            "settings": json.loads(meta.get("feature_config", "{}")),
            "commit_seq": int(meta.get("commit_seq", 0)),
            "tags": tag_store.summary(cur),
            "transcripts": transcript_store.summary(cur),
        }


def _display(text: str | None) -> str | None:
    return None if text is None else display_path(text)


def open_error(index_dir: Path, exc: BaseException):
    """The error to raise when DuckDB refuses to open the index: locked, unreplayable WAL, or unreadable file.

    The files are never deleted or replaced here; the message says what the user can do.
    """
    from indexer.ownership import describe_owner

    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    path = index_dir / DB_NAME
    if "could not set lock" in first.lower() or "conflicting lock" in first.lower():
        owner = describe_owner(index_dir)
        who = f"pid {owner.get('pid', '?')} ({owner.get('command', 'unknown command')})" if owner else "another process"
        return IndexLocked(f"index {index_dir} is in use by {who}; wait for it to finish or stop it ({first})")
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        return IndexCorrupt(
            f"the index database {path} does not open: its write-ahead log {wal.name} cannot be replayed ({first}). "
            f"Nothing was changed. To keep everything up to the last checkpoint, move {wal} aside and run "
            f"`soundsift index` again (it re-indexes what the log held); or move {index_dir} aside and re-index from the archive."
        )
    return IndexCorrupt(
        f"the index database {path} does not open ({first}); it was left untouched. "
        f"Move it aside and re-index from the archive (`soundsift index PATH --index {index_dir}`)."
    )
