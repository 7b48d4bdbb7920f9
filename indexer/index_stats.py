"""`soundsift stats` without a model, FAISS or plugins: counts from DuckDB, the vector count from the FAISS file's header.

FAISS is imported only when the file is not the one of the last commit (a crash between the two writes):
then the index is opened as a reader would open it, and the count is the caught-up one.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from indexer.errors import IndexMissing
from indexer.ownership import IndexOwnership
from indexer.store import DB_NAME, IndexStore

_FAISS_FILE = re.compile(r"^vectors-(\d+)\.faiss$")


def header_ntotal(path: Path, dim: int) -> int | None:
    """``ntotal`` from a FAISS file's header (fourcc, d: int32, ntotal: int64, as every index type writes it first),
    or None when the header does not look like one of ``dim`` vectors."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if len(head) < 16 or not head[:4].isascii():
        return None
    d, ntotal = struct.unpack("<iq", head[4:16])
    return ntotal if d == dim and ntotal >= 0 else None


def vector_count(store: IndexStore) -> int:
    """How many vectors FAISS holds for the store's last commit (what ``VectorIndex.open(store).ntotal`` gives)."""
    seq = store.commit_seq()
    files = sorted(
        ((int(m.group(1)), p) for p in store.index_dir.iterdir() if (m := _FAISS_FILE.match(p.name))), reverse=True
    )
    if files and files[0][0] == seq:
        ntotal = header_ntotal(files[0][1], store.embedding_dim)
        if ntotal is not None and ntotal == store.window_count():
            return ntotal  # written at this very commit: the reader's open would take it as it is
    from indexer.vectors import VectorIndex

    return VectorIndex.open(store).ntotal


def index_stats(index_dir: Path) -> dict:
    """Files, windows, hours, model, settings and the FAISS count of the index at ``index_dir``, opened as a reader."""
    if not (index_dir / DB_NAME).exists():
        raise IndexMissing(f"no index at {index_dir}: build one with `soundsift index PATH --index {index_dir}`")
    ownership = IndexOwnership(index_dir, role="cli", shared=True)
    try:
        store = IndexStore.open(index_dir, None, create=False, read_only=True)
        try:
            doc = store.stats()
            doc["faiss_vectors"] = vector_count(store)
            return doc
        finally:
            store.close()
    finally:
        ownership.release()
