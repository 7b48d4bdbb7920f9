"""FAISS index type by size: exact inner product while small, IVF with 8-bit scalar codes beyond, trained and tuned from the stored vectors.

IVF rather than HNSW: the index is updated in place (re-indexing removes ids) and FAISS's HNSW cannot
remove; IVF can, and its 8-bit codes keep a million 512-d windows near 0.5 GB. ``nprobe`` is tuned at
build time on queries drawn from the stored vectors until recall@10 against exact search reaches
``TARGET_RECALL``, and is written into the index file. With faiss-gpu installed the k-means training
(the costly part) runs on the GPUs; searches stay on the CPU, where id selectors (filters) work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faiss
import numpy as np

FLAT_MAX_VECTORS = 200_000  # below this an exact scan of every vector takes a few ms per query
TARGET_RECALL = 0.98  # on the tuning queries; leaves margin for the 0.95 promised on unseen ones
TRAIN_POINTS_PER_LIST = 40
TUNE_QUERIES = 200
KMEANS_ITERATIONS = 12


@dataclass(frozen=True)
class IndexPlan:
    """Which index a given number of vectors gets."""

    kind: str  # "flat" | "ivf"
    nlist: int = 0

    @property
    def factory(self) -> str:
        return "Flat" if self.kind == "flat" else f"IVF{self.nlist},SQ8"


def plan_for(n: int, flat_max: int | None = None) -> IndexPlan:
    """Flat below ``flat_max`` vectors (default ``FLAT_MAX_VECTORS``); IVF with about 2·sqrt(n) lists above
    (a few hundred vectors per list, and never fewer than k-means needs to train every list)."""
    if n < (FLAT_MAX_VECTORS if flat_max is None else flat_max):
        return IndexPlan("flat")
    nlist = min(65_536, 2 ** round(math.log2(2 * math.sqrt(max(n, 1)))), max(1, n // 39))
    return IndexPlan("ivf", nlist=int(nlist))


def gpu_count() -> int:
    """GPUs faiss can use (0 with the CPU-only wheel)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index inside an IndexIDMap/IndexIDMap2 wrapper (downcast so IVF parameters are reachable)."""
    sub = index.index if hasattr(index, "id_map") else index
    return faiss.downcast_index(sub)


def describe(index: faiss.Index) -> dict:
    """Type, size and search parameters of an index, for stats and benchmarks."""
    sub = inner_index(index)
    out = {"type": type(sub).__name__, "ntotal": int(index.ntotal)}
    if isinstance(sub, faiss.IndexIVF):
        out.update(nlist=int(sub.nlist), nprobe=int(sub.nprobe))
    return out


def search_parameters(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    """Search parameters carrying an id selector, of the type the inner index accepts (IVF wants its own)."""
    sub = inner_index(index)
    if isinstance(sub, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(sub.nprobe))
    return faiss.SearchParameters(sel=selector)


def new_index(dim: int, plan: IndexPlan) -> faiss.Index:
    """An empty inner-product index of the planned type whose ids are explicit 64-bit window ids."""
    if plan.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, plan.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.own_fields = True
    quantizer.this.disown()
    ivf.cp.niter = KMEANS_ITERATIONS
    ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST * 4
    if gpu_count():
        # Documented FAISS pattern: k-means assignment on the GPUs, the trained index stays a CPU one.
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
    # IVF keeps the 64-bit window ids itself. Wrapped in IndexIDMap2, remove_ids compacts the id map
    # but not the IVF's own sequence numbers, and every later hit comes back under a shifted id.
    # The hashtable direct map lets remove_ids and reconstruct find an id without a full scan.
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return ivf


def training_sample(chunks: Iterable[np.ndarray], n_total: int, want: int, seed: int = 0) -> np.ndarray:
    """About ``want`` rows drawn uniformly from a stream of (rows, dim) float arrays holding ``n_total`` rows."""
    rng = np.random.default_rng(seed)
    p = min(1.0, want / max(n_total, 1))
    parts = [c[rng.random(len(c)) < p] for c in chunks]
    sample = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return np.ascontiguousarray(sample[np.isfinite(sample).all(axis=1)], dtype=np.float32)


def tuning_queries(sample: np.ndarray, count: int = TUNE_QUERIES, seed: int = 1) -> np.ndarray:
    """Queries like text vectors: stored vectors pushed about 60 degrees away (CLAP's text-audio cosines are low)."""
    rng = np.random.default_rng(seed)
    base = sample[rng.choice(len(sample), size=min(count, len(sample)), replace=False)]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = base + 1.7 * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top_k(queries: np.ndarray, rows: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """Exact top-k ids by inner product over a stream of (ids, vectors) chunks: (queries, k) int64."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for ids, vecs in rows:
        s = queries @ np.asarray(vecs, dtype=np.float32).T
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        top = np.argpartition(-all_s, k - 1, axis=1)[:, :k] if all_s.shape[1] > k else np.argsort(-all_s, axis=1)
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each exact top-k that the approximate top-k found."""
    hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in zip(found, truth)]
    return float(np.mean(hits)) if hits else 1.0


def tune_nprobe(
    index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int = 10, target: float = TARGET_RECALL
) -> tuple[int, float]:
    """The smallest power-of-two nprobe reaching ``target`` recall@k on ``queries``; set on the index."""
    ivf = inner_index(index)
    nprobe, recall = 1, 0.0
    while True:
        ivf.nprobe = nprobe
        _, found = index.search(queries, k)
        recall = recall_at_k(found, truth)
        if recall >= target or nprobe >= ivf.nlist:
            return nprobe, recall
        nprobe = min(ivf.nlist, nprobe * 2)


def build_index(
    dim: int, n_total: int, chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], flat_max: int | None = None
) -> tuple[faiss.Index, dict]:
    """An index holding every finite vector of ``chunks()`` (a re-iterable stream of (ids, vectors)).

    Small: one pass into a flat index. Large: a training sample, k-means, one pass adding every vector,
    then ``nprobe`` tuned against exact search on queries drawn from the sample (one more pass).
    Returns the index and what was decided (type, lists, nprobe, tuned recall).
    """
    plan = plan_for(n_total, flat_max)
    index = new_index(dim, plan)
    info: dict = {"factory": plan.factory}
    if plan.kind == "ivf":
        sample = training_sample((v for _, v in chunks()), n_total, plan.nlist * TRAIN_POINTS_PER_LIST)
        index.train(sample)
    for ids, vecs in chunks():
        ok = np.isfinite(vecs).all(axis=1)
        index.add_with_ids(np.ascontiguousarray(vecs[ok], dtype=np.float32), np.asarray(ids[ok], dtype=np.int64))
    if plan.kind == "ivf":
        queries = tuning_queries(sample)
        truth = exact_top_k(queries, ((ids, vecs) for ids, vecs in chunks()), 10)
        info["nprobe"], info["tuned_recall_at_10"] = tune_nprobe(index, queries, truth)
        info["nlist"] = plan.nlist
    return index, info


def flat_contents(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) a flat ``IndexIDMap2`` holds: views of its own arrays, no copy (valid while it lives)."""
    sub = inner_index(index)
    n, d = int(index.ntotal), int(index.d)
    vectors = faiss.rev_swig_ptr(sub.get_xb(), n * d).reshape(n, d) if n else np.zeros((0, d), np.float32)
    return faiss.vector_to_array(index.id_map).astype(np.int64), vectors


def outgrown(index: faiss.Index, flat_max: int | None = None, lists_growth: int = 4) -> bool:
    """True when a flat index has grown past ``flat_max``, or an IVF one's size calls for ``lists_growth`` times
    its lists (4: 16x the vectors they were sized for; an owner growing its index as it commits asks for 2)."""
    sub = inner_index(index)
    if isinstance(sub, faiss.IndexIVF):
        return plan_for(int(index.ntotal), flat_max).nlist >= lists_growth * sub.nlist
    return int(index.ntotal) >= (FLAT_MAX_VECTORS if flat_max is None else flat_max)
