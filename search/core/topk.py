"""Top-k search over the window vectors: FAISS, or an exact product on the window matrix where FAISS would fall short."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from indexer.matrix import WindowMatrix
from indexer.store import IndexStore
from indexer.vectors import VectorIndex
from search.core.results import SearchHit

EXACT_FILTERED_MAX = 262_144  # filtered searches over at most this many windows are exact (a matrix product)


def exact_search(wm: WindowMatrix, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) over the allowed windows by exact inner product on the window matrix; -1 pads."""
    ids, vectors = wm.vectors_of(allowed)
    scores = np.asarray(queries, np.float32) @ np.asarray(vectors, np.float32).T
    k_eff = min(k, len(ids))
    out_s = np.full((len(queries), k), -np.inf, np.float32)
    out_i = np.full((len(queries), k), -1, np.int64)
    if k_eff:
        top = (
            np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
            if len(ids) > k_eff
            else np.broadcast_to(np.arange(len(ids)), (len(queries), len(ids)))
        )
        top_s = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        out_s[:, :k_eff] = np.take_along_axis(top_s, order, axis=1)
        out_i[:, :k_eff] = ids[np.take_along_axis(top, order, axis=1)]
    return out_s, out_i


def vectors_exact(vectors: VectorIndex) -> bool:
    """True while the FAISS index is an exact (flat) index."""
    from indexer.faiss_factory import inner_index

    with vectors.lock:
        return inner_index(vectors._index).__class__.__name__ == "IndexFlatIP"


def top_k_hits(
    store: IndexStore,
    vectors: VectorIndex,
    qv: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    window_matrix: Callable[[], WindowMatrix],
) -> list[list[SearchHit]]:
    """The k best windows for each query vector (rows of ``qv``), restricted to ``allowed`` window ids when given."""
    with vectors.lock:  # one commit's view: a job committing meanwhile waits for the lookup
        small = (allowed is not None and len(allowed) <= EXACT_FILTERED_MAX) or k >= vectors.ntotal
        if small and not vectors_exact(vectors):
            # An approximate index probes only some lists, too few to fill k among few allowed windows
            # (or with k past the index's size): score every candidate exactly instead.
            wm = window_matrix()
            scores, ids = exact_search(wm, qv, k, wm.ids if allowed is None else allowed)
        else:
            scores, ids = vectors.search(qv, k, allowed)
        rows = store.window_rows([int(i) for i in np.unique(ids) if i >= 0])
    return [
        [
            SearchHit(
                path=rows[i][0], start=rows[i][1], end=rows[i][2], score=float(s), window_id=int(i), file_id=rows[i][3]
            )
            for s, i in zip(scores[q], ids[q])
            if i >= 0 and i in rows
        ]
        for q in range(len(qv))
    ]
