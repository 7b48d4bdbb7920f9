"""The window matrix: every stored vector in a memory-mapped .npy file (float16 at scale), for chunked scoring.

Like the FAISS file it is derived from DuckDB and named after the commit it reflects
(``vectors-<seq>.matrix.npy`` with its rows ``vectors-<seq>.rows.npy``: window id, file id, start, end,
sorted by id); a stale or unreadable one is rebuilt on demand, written to a temporary name, fsynced and
renamed, so a reader never sees half a file. Classification reads chunks of it straight from the page
cache: DuckDB is asked only for the id -> path mapping (and, with filters, for the ids allowed).
Below ``FLOAT16_FROM`` windows it holds float32 (scores exactly as from DuckDB, memory is no concern);
from there on float16, which halves memory and keeps scores within 1e-3 of float32 (unit vectors: each
product term errs by at most 2^-11 relative, and the errors mostly cancel).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from indexer.durable import fsync_path
from indexer.queries import INDEXED
from indexer.store import IndexStore, WindowChunk

MATRIX_RE = re.compile(r"^vectors-(\d+)\.matrix\.npy$")
ROW_DTYPE = np.dtype([("id", "<i8"), ("file_id", "<i8"), ("start", "<f8"), ("end", "<f8")])
BUILD_CHUNK = 65_536
FLOAT16_FROM = 200_000
MADV_POPULATE_READ = 22  # <linux/mman.h>; Python's mmap module names it from 3.13 only


def matrix_paths(index_dir: Path, seq: int) -> tuple[Path, Path]:
    """(vectors, rows) file paths for commit ``seq``."""
    return index_dir / f"vectors-{seq}.matrix.npy", index_dir / f"vectors-{seq}.rows.npy"


class WindowMatrix:
    """A read-only (n, dim) float16 or float32 memory map of the stored vectors at one commit, with their rows."""

    def __init__(self, index_dir: Path, seq: int, vectors: np.ndarray, rows: np.ndarray):
        self.index_dir = index_dir
        self.seq = seq
        self.vectors = vectors
        self.rows = rows
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self._populated = False

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> np.ndarray:
        return self.rows["id"]

    @classmethod
    def load(cls, index_dir: Path, seq: int) -> "WindowMatrix | None":
        """The matrix written for commit ``seq``, memory-mapped, or None when absent or unreadable."""
        vec_path, row_path = matrix_paths(index_dir, seq)
        try:
            vectors = np.load(vec_path, mmap_mode="r")
            rows = np.load(row_path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if vectors.dtype not in (np.float16, np.float32) or rows.dtype != ROW_DTYPE or len(vectors) != len(rows):
            return None
        return cls(index_dir, seq, vectors, rows)

    @classmethod
    def build(cls, store: IndexStore, seq: int, dtype: np.dtype | None = None) -> "WindowMatrix":
        """Write the matrix of every stored window (one streaming pass over DuckDB) and map it.

        ``dtype`` defaults by size: float32 below ``FLOAT16_FROM`` windows, float16 from there on."""
        index_dir = store.index_dir
        if store.read_only:
            return cls._build_in_memory(store, seq, dtype)
        ids = indexed_ids(store)
        n, dim = len(ids), store.embedding_dim
        vec_path, row_path = matrix_paths(index_dir, seq)
        tmp_vec = vec_path.with_name(f".{vec_path.name}.tmp{os.getpid()}")
        tmp_row = row_path.with_name(f".{row_path.name}.tmp{os.getpid()}")
        for leftover in index_dir.glob(".vectors-*.npy.tmp*"):  # a killed build's half-written files
            leftover.unlink(missing_ok=True)
        try:
            dtype = np.dtype(dtype or (np.float16 if n >= FLOAT16_FROM else np.float32))
            vectors = np.lib.format.open_memmap(tmp_vec, mode="w+", dtype=dtype, shape=(n, dim))
            rows = np.lib.format.open_memmap(tmp_row, mode="w+", dtype=ROW_DTYPE, shape=(n,))
            fill_in_id_order(store, ids, vectors, rows)
            vectors.flush()
            rows.flush()
            del vectors, rows
            for tmp in (tmp_vec, tmp_row):
                fsync_path(tmp)
            os.replace(tmp_row, row_path)
            os.replace(tmp_vec, vec_path)
            fsync_path(index_dir)
        finally:
            tmp_vec.unlink(missing_ok=True)
            tmp_row.unlink(missing_ok=True)
        for old_seq, path in matrix_files(index_dir):
            if old_seq != seq:
                path.unlink(missing_ok=True)
                matrix_paths(index_dir, old_seq)[1].unlink(missing_ok=True)
        loaded = cls.load(index_dir, seq)
        assert loaded is not None
        return loaded

    @classmethod
    def _build_in_memory(cls, store: IndexStore, seq: int, dtype: np.dtype | None) -> "WindowMatrix":
        """A reader process (shared lock, read-only DuckDB) never writes into the index: it holds the matrix in memory."""
        ids = indexed_ids(store)
        n = len(ids)
        vectors = np.empty(
            (n, store.embedding_dim), np.dtype(dtype or (np.float16 if n >= FLOAT16_FROM else np.float32))
        )
        rows = np.zeros(n, dtype=ROW_DTYPE)
        fill_in_id_order(store, ids, vectors, rows)
        return cls(store.index_dir, seq, vectors, rows)

    @classmethod
    def current(cls, store: IndexStore, lock: threading.RLock | None = None) -> "WindowMatrix":
        """The matrix for the store's last commit: loaded if on disk, else rebuilt (under the writers' ``lock``)."""
        with lock or threading.RLock():
            seq = store.commit_seq()
            return cls.load(store.index_dir, seq) or cls.build(store, seq)

    def select(
        self, allowed_ids: np.ndarray | None = None, after_id: int | None = None, after_file_id: int | None = None
    ) -> np.ndarray:
        """Row positions (ascending) of windows among ``allowed_ids``, with id > ``after_id`` / file id > ``after_file_id``."""
        keep = np.ones(len(self.rows), dtype=bool)
        if allowed_ids is not None:
            keep &= np.isin(self.ids, np.asarray(allowed_ids, dtype=np.int64), assume_unique=False)
        if after_id is not None:
            keep &= self.ids > after_id
        if after_file_id is not None:
            keep &= self.rows["file_id"] > after_file_id
        return np.flatnonzero(keep)

    def chunks(self, chunk: int, positions: np.ndarray | None = None) -> Iterator[WindowChunk]:
        """WindowChunks of ``chunk`` rows (vectors as stored in the matrix), all rows or the given positions, in id order."""
        n = len(self.rows) if positions is None else len(positions)
        if positions is None:
            self._populate()
        for at in range(0, n, chunk):
            if positions is None:
                sl = slice(at, min(n, at + chunk))
                rows, vectors = self.rows[sl], np.asarray(self.vectors[sl])
            else:
                pos = positions[at : at + chunk]
                if len(pos) and pos[-1] - pos[0] + 1 == len(pos):  # a contiguous run: a view, not a gather
                    sl = slice(int(pos[0]), int(pos[-1]) + 1)
                    rows, vectors = self.rows[sl], np.asarray(self.vectors[sl])
                else:
                    rows, vectors = self.rows[pos], self.vectors[pos]
            yield WindowChunk(
                ids=np.asarray(rows["id"]),
                file_ids=np.asarray(rows["file_id"]),
                starts=np.asarray(rows["start"]),
                ends=np.asarray(rows["end"]),
                vectors=vectors,
            )

    def _populate(self) -> None:
        """Map every page of a memory-mapped matrix in one call before a full pass (Linux 5.14+): a million windows
        took 30 ms this way against 0.05 to 0.2 s of page faults spread over the pass. Elsewhere, nothing."""
        mapping = getattr(self.vectors, "_mmap", None)
        if mapping is None or self._populated:
            return
        self._populated = True
        try:
            mapping.madvise(MADV_POPULATE_READ)
        except (OSError, ValueError, AttributeError):
            pass  # an older kernel (EINVAL) or no madvise: the pass faults the pages in as it goes

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, ascending; their vectors) for window ids; unknown ids are skipped."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(self.rows) or not len(ids):
            return ids[:0], np.zeros((0, self.vectors.shape[1]), self.vectors.dtype)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, len(self.rows) - 1)
        found = self.ids[pos] == ids
        return ids[found], self.vectors[pos[found]]

    def cached(self, key, compute: Callable[[], object], size: int = 64):
        """A value computed once per key for this commit's matrix (e.g. per-label archive statistics)."""
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = compute()
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > size:
                self._cache.popitem(last=False)
        return value


def indexed_ids(store: IndexStore) -> np.ndarray:
    """The ids of every indexed window, sorted (the matrix's row order)."""
    return np.sort(store.window_ids_where(INDEXED, {}).astype(np.int64))


def fill_in_id_order(store: IndexStore, order: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> None:
    """Write every indexed window into ``vectors`` and ``rows`` (``len(order)`` rows each) in id order, from one pass
    over DuckDB in stored order: an ORDER BY would sort every vector inside DuckDB (20 GB at 10M windows).

    ``order`` is ``indexed_ids(store)``; raises RuntimeError when the windows changed meanwhile (the caller holds
    the writers' lock, so only a bug gets there).
    """
    rows["id"] = order
    written = 0
    for c in store.iter_vectors(BUILD_CHUNK, INDEXED, ordered=False):
        pos = np.searchsorted(order, c.ids)
        if len(pos) and (not len(order) or not np.array_equal(order[np.minimum(pos, len(order) - 1)], c.ids)):
            raise RuntimeError("the windows changed while the matrix was being built")
        at: slice | np.ndarray = pos
        if len(pos) and pos[-1] - pos[0] == len(pos) - 1 and bool(np.all(pos[1:] > pos[:-1])):
            at = slice(int(pos[0]), int(pos[-1]) + 1)  # stored in id order (the usual case): a block copy
        vectors[at] = c.vectors
        rows["file_id"][at] = c.file_ids
        rows["start"][at] = c.starts
        rows["end"][at] = c.ends
        written += len(c.ids)
    if written != len(order):
        raise RuntimeError(f"window count changed while building the matrix ({len(order)} -> {written})")


def matrix_files(index_dir: Path) -> list[tuple[int, Path]]:
    """The ``vectors-<seq>.matrix.npy`` files in the index directory, newest first."""
    found = [(int(m.group(1)), p) for p in index_dir.iterdir() if (m := MATRIX_RE.match(p.name))]
    return sorted(found, reverse=True)
