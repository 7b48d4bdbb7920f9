"""The FAISS index: derived from DuckDB, ids are window ids, written atomically, brought up to date on open."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from indexer import crashpoints
from indexer.durable import fsync_path
from indexer.errors import DiskFull
from indexer.store import IndexStore, is_disk_full

FILE_RE = re.compile(r"^vectors-(\d+)\.faiss$")
TMP_RE = re.compile(r"^\.vectors-\d+\.faiss\.tmp\d+$")
REBUILD_CHUNK = 65_536


def faiss_files(index_dir: Path) -> list[tuple[int, Path]]:
    """The ``vectors-<seq>.faiss`` files in the index directory, newest commit first."""
    found = []
    for p in index_dir.iterdir():
        m = FILE_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def leftover_tmp_files(index_dir: Path) -> list[Path]:
    """Half-written FAISS files a killed process left behind (never current: they were not renamed yet)."""
    return sorted(p for p in index_dir.iterdir() if TMP_RE.match(p.name))


def load_latest(index_dir: Path) -> tuple[faiss.Index | None, int, Path | None, list[str]]:
    """The newest FAISS file that reads back: (index, its commit, path, problems with newer unreadable ones)."""
    problems: list[str] = []
    for seq, path in faiss_files(index_dir):
        try:
            return faiss.read_index(str(path)), seq, path, problems
        except RuntimeError as exc:  # truncated or corrupt: try an older one, else rebuild from DuckDB
            problems.append(f"{path.name}: {str(exc).splitlines()[0][:200]}")
    return None, 0, None, problems


def faiss_ids(index: faiss.Index) -> np.ndarray | None:
    """The ids an index holds (sorted): from the id map of a flat index, or the inverted lists of an IVF one."""
    if hasattr(index, "id_map"):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    lists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist) if lists.list_size(i)
    ]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)


class VectorIndex:
    """FAISS over the stored window vectors, with the DuckDB commit it reflects.

    ``lock`` is held by a writer across a DuckDB commit and the matching FAISS update, and by a
    reader across a FAISS search and the metadata lookup of its hits: a reader sees one commit.
    """

    def __init__(self, index_dir: Path, index: faiss.Index, seq: int):
        self.index_dir = index_dir
        self._index = index
        self.seq = seq
        self._lock = threading.RLock()
        self.recovery: dict = {}

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def open(cls, store: IndexStore) -> "VectorIndex":
        """Load the newest readable FAISS file and bring it up to the store's last commit.

        Window ids missing from FAISS are added from DuckDB and ids DuckDB no longer has are removed
        (a crash between the two writes costs a short catch-up, not a rebuild); an unreadable file,
        or an index type whose ids cannot be listed, is rebuilt from DuckDB. What happened is kept
        in ``recovery``.
        """
        t0 = time.monotonic()
        read_only = store.read_only
        for tmp in [] if read_only else leftover_tmp_files(store.index_dir):
            tmp.unlink(missing_ok=True)
        seq = store.commit_seq()
        index, file_seq, path, problems = load_latest(store.index_dir)
        vectors, rebuilt = None, False
        added: int | None
        removed: int | None
        if file_seq > seq:
            # The file reflects commits DuckDB no longer has (its log was moved aside): ids may be reused, rebuild.
            problems.append(
                f"{path.name if path else 'the FAISS file'} is ahead of the database (commit {seq}); rebuilt"
            )
            index = None
        if index is not None and index.d == store.embedding_dim:
            vectors = cls(store.index_dir, index, file_seq)
            if file_seq == seq and index.ntotal == store.window_count():
                added, removed = 0, 0  # written at this very commit: no need to list every id
            else:
                added, removed = vectors.sync(store)
            rebuilt = added is None
            if not rebuilt:
                from indexer.faiss_factory import outgrown

                rebuilt = outgrown(index)  # past the flat-index size (or its IVF lists): rebuild as the size's type
        if vectors is None or rebuilt:
            # the outgrown index goes before its successor is built: two in memory at once is the peak otherwise
            index = vectors = None
            vectors, added, removed, rebuilt = cls.rebuild(store), None, None, True
        vectors.seq = seq
        dirty = rebuilt or added or removed or path is None or file_seq != seq
        if dirty and not read_only:  # a reader catches up in memory; the owner writes the file
            try:
                vectors.save()
            except DiskFull:
                pass  # serving from memory is still correct; the next open catches up again
        vectors.recovery = {
            "file": path.name if path else None,
            "file_commit": file_seq,
            "commit": seq,
            "rebuilt": rebuilt,
            "added": added or 0,
            "removed": removed or 0,
            "problems": problems,
            "seconds": round(time.monotonic() - t0, 4),
        }
        return vectors

    @classmethod
    def rebuild(cls, store: IndexStore) -> "VectorIndex":
        """A fresh FAISS index from every finite vector in DuckDB, its type chosen by size (indexer/faiss_factory.py)."""
        from indexer.faiss_factory import build_index

        # In stored order, unsorted: three passes over every vector (sample, add, tuning) without holding them all.
        chunks = lambda: ((c.ids.astype(np.int64), c.vectors) for c in store.iter_vectors(REBUILD_CHUNK, ordered=False))
        index, _ = build_index(store.embedding_dim, store.window_count(), chunks)
        return cls(store.index_dir, index, store.commit_seq())

    def grow(self, store: IndexStore) -> dict | None:
        """Give an owner's outgrown index the type its size calls for now, not at the next open; what was built, or None.

        A large first run would otherwise hold a flat index of every vector until it ends (2 KB per window: 20 GB
        at 10M) and leave the next open a rebuild of all of them. A flat index past ``FLAT_MAX_VECTORS`` becomes
        IVF trained on its own vectors (no DuckDB read); an IVF index whose size calls for twice its lists (every
        4x growth: the earlier rebuilds add up to about a quarter of the last, 94 s beside 409 s at 10M) is rebuilt
        from DuckDB. Fewer lists than the size wants cost search time: 1M clustered windows in 1,024 lists needed
        nprobe 128 for the recall target (12 ms a query) against nprobe 2 in 2,048 (0.4 ms). The caller has just
        committed, under ``lock``: FAISS and DuckDB hold the same windows.
        """
        from indexer.faiss_factory import build_index, describe, flat_contents, inner_index, outgrown

        with self._lock:
            if not outgrown(self._index, lists_growth=2):
                return None
            t0 = time.monotonic()
            if isinstance(inner_index(self._index), faiss.IndexIVF):
                successor = self.rebuild(store)._index
            else:
                ids, vecs = flat_contents(self._index)
                step = REBUILD_CHUNK
                chunks = lambda: ((ids[a : a + step], vecs[a : a + step]) for a in range(0, len(ids), step))
                successor, _ = build_index(int(self._index.d), len(ids), chunks)
                del ids, vecs  # views into the flat index, which goes next
            self._index = successor
            return {**describe(successor), "seconds": time.monotonic() - t0}

    def sync(self, store: IndexStore) -> tuple[int | None, int | None]:
        """Add the stored windows FAISS lacks and drop the ids DuckDB lacks: (added, removed), or (None, None)
        when this index type cannot list its ids (the caller rebuilds). Non-finite vectors never enter FAISS."""
        with self._lock:
            have = faiss_ids(self._index)
            if have is None:
                return None, None
            want = store.window_ids()
            extra = np.setdiff1d(have, want, assume_unique=True)
            missing = np.setdiff1d(want, have, assume_unique=True)
            if len(extra):
                self._index.remove_ids(extra)
            added = 0
            for ids, vecs in store.vectors_for(missing, REBUILD_CHUNK):
                ok = np.isfinite(vecs).all(axis=1)
                self._index.add_with_ids(vecs[ok], ids[ok])
                added += int(ok.sum())
            self.seq = store.commit_seq()
            return added, int(len(extra))

    def ids(self) -> np.ndarray | None:
        """The window ids FAISS holds (sorted), or None for an index type that cannot list them."""
        with self._lock:
            return faiss_ids(self._index)

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        with self._lock:
            if len(ids):
                self._index.add_with_ids(
                    np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
                )
            self.seq = seq

    def remove(self, ids: np.ndarray, seq: int) -> None:
        with self._lock:
            if len(ids):
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self.seq = seq

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 (fewer than k results) are left for the caller to drop."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            k = max(1, min(k, self.ntotal or 1))
            if allowed_ids is None:
                return self._index.search(q, k)
            selector = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            from indexer.faiss_factory import search_parameters

            return self._index.search(q, k, params=search_parameters(self._index, selector))

    def current_file(self) -> Path:
        return self.index_dir / f"vectors-{self.seq}.faiss"

    def save(self) -> Path:
        """Write a new file for this commit (tmp, fsync, rename, fsync dir), then drop older ones.

        The file being served is never written over; a failed write (a full disk) removes its
        temporary file, keeps the previous file current and raises DiskFull.
        """
        target = self.current_file()
        tmp = self.index_dir / f".vectors-{self.seq}.faiss.tmp{os.getpid()}"
        try:
            with self._lock:
                faiss.write_index(self._index, str(tmp))
            crashpoints.reached("faiss_write")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        except (RuntimeError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFull(
                    f"the disk holding {self.index_dir} is full while writing {target.name} ({str(exc).splitlines()[0][:200]}); "
                    "the previous vectors file stays current and the next open catches up from DuckDB. Free some space."
                ) from None
            raise
        os.replace(tmp, target)
        fsync_path(self.index_dir)
        for seq, other in faiss_files(self.index_dir):
            if seq != self.seq:
                other.unlink(missing_ok=True)
        return target
