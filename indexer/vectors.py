"""The FAISS index: derived from DuckDB, ids are window ids, written atomically, brought up to date on open."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import faiss
import numpy as np

from indexer.store import IndexStore

FILE_RE = re.compile(r"^vectors-(\d+)\.faiss$")
REBUILD_CHUNK = 65_536


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_faiss_index(dim: int) -> faiss.Index:
    """An exact inner-product index with explicit 64-bit ids (cosine on unit vectors)."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


class VectorIndex:
    """FAISS over the stored window vectors, with the DuckDB commit it reflects."""

    def __init__(self, index_dir: Path, index: faiss.Index, seq: int):
        self.index_dir = index_dir
        self._index = index
        self.seq = seq
        self._lock = threading.RLock()

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def open(cls, store: IndexStore) -> "VectorIndex":
        """Load the FAISS file that matches the store's last commit, or rebuild it from DuckDB and save it."""
        seq = store.commit_seq()
        path = store.index_dir / f"vectors-{seq}.faiss"
        if path.exists():
            try:
                index = faiss.read_index(str(path))
                if index.ntotal == store.window_count():
                    return cls(store.index_dir, index, seq)
            except RuntimeError:
                pass  # truncated or corrupt: DuckDB is the truth, rebuild below
        vectors = cls.rebuild(store)
        vectors.save()
        return vectors

    @classmethod
    def rebuild(cls, store: IndexStore) -> "VectorIndex":
        """A fresh FAISS index from every vector in DuckDB."""
        index = new_faiss_index(store.embedding_dim)
        for chunk in store.iter_vectors(REBUILD_CHUNK):
            index.add_with_ids(np.ascontiguousarray(chunk.vectors, dtype=np.float32), chunk.ids.astype(np.int64))
        return cls(store.index_dir, index, store.commit_seq())

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        with self._lock:
            if len(ids):
                self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self.seq = seq

    def remove(self, ids: np.ndarray, seq: int) -> None:
        with self._lock:
            if len(ids):
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self.seq = seq

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 (fewer than k results) are left for the caller to drop."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            k = max(1, min(k, self.ntotal or 1))
            if allowed_ids is None:
                return self._index.search(q, k)
            selector = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            return self._index.search(q, k, params=faiss.SearchParameters(sel=selector))

    def save(self) -> Path:
        """Write a new file for this commit (tmp, fsync, rename, fsync dir), then drop older ones."""
        target = self.index_dir / f"vectors-{self.seq}.faiss"
        tmp = self.index_dir / f".vectors-{self.seq}.faiss.tmp{os.getpid()}"
        with self._lock:
            faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.index_dir)
        for other in self.index_dir.iterdir():
            m = FILE_RE.match(other.name)
            if m and int(m.group(1)) != self.seq:
                other.unlink(missing_ok=True)
        return target
