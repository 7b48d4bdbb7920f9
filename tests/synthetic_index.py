"""Indexes of synthetic windows committed the way the runner commits them (no audio, no model)."""

from __future__ import annotations

import numpy as np

from indexer.vectors import VectorIndex


def synthetic_commit(store, vectors: VectorIndex, ids: np.ndarray, x: np.ndarray) -> dict | None:
    """Commit windows with the given ids and vectors the way the runner does (one file per 10 windows); what grew."""
    from indexer.store import CommitPlan, FileRecord, WindowBatch

    file_ids = (ids - 1) // 10 + 1
    files = [
        FileRecord(int(f), f"/a/{int(f)}.wav", "/a", 1, 0.0, None, "indexed", duration=100.0)
        for f in np.unique(file_ids)
    ]
    starts = ((ids - 1) % 10) * 10.0
    with vectors.lock:
        seq, _ = store.commit(
            CommitPlan(files=files, windows=WindowBatch(ids, file_ids, starts, starts + 10, ["{}"] * len(ids), x)), 1
        )
        vectors.add(ids, x, seq)
        return vectors.grow(store)


def synthetic_store(path):
    """A new (or reopened) store of 64-d vectors with run 1 started."""
    from indexer.model import ModelIdentity
    from indexer.store import IndexStore

    ident = ModelIdentity("synthetic", "test", "cd" * 32, 64, {"window_s": 10.0, "hop_s": 10.0}, 100.0)
    path.mkdir(parents=True, exist_ok=True)
    store = IndexStore.open(path, ident, create=True)
    store.start_run(1, 0.0, "test")
    return store
