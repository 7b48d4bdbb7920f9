"""Index audit and repair: FAISS ids vs window rows, finite vectors, dangling rows, files gone from disk."""

from __future__ import annotations

import os
import time

import numpy as np

from indexer.paths import display_path
from indexer.queries import FileLocation
from indexer.store import CommitPlan, IndexStore
from indexer.vectors import REBUILD_CHUNK, VectorIndex, faiss_files, faiss_ids, leftover_tmp_files, load_latest

SAMPLE = 20  # ids and paths listed per finding; counts are always complete
NON_FINITE_REASON = (
    "a non-finite vector was found by `soundsift check`; run `soundsift index --retry-failed` to embed it again"
)


def _sample(values) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)[:SAMPLE]]


def _windows_scan(store: IndexStore) -> tuple[np.ndarray, np.ndarray]:
    """(ids of windows with a non-finite vector, ids of windows whose file row is missing or not indexed)."""
    return store.non_finite_window_ids(REBUILD_CHUNK), store.dangling_window_ids()


def _mismatched(index, store: IndexStore, ids: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Ids whose FAISS vector differs from DuckDB's by more than ``tol`` (exact, flat indexes only: IVF's
    8-bit codes differ from the stored vectors by design)."""
    if not hasattr(index, "id_map") or not len(ids):
        return np.zeros(0, np.int64)
    out = []
    for got_ids, vecs in store.vectors_for(ids, REBUILD_CHUNK):
        try:
            held = index.reconstruct_batch(got_ids)
        except RuntimeError:
            return np.zeros(0, np.int64)
        finite = np.isfinite(vecs).all(axis=1)
        diff = np.abs(held - vecs).max(axis=1)
        out.append(got_ids[finite & (diff > tol)])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def missing_files(store: IndexStore) -> list[FileLocation]:
    """(id, path, root) of stored files that no longer exist on disk (path and root as on disk)."""
    return [f for f in store.file_locations() if not os.path.exists(f.path)]


def audit(store: IndexStore) -> dict:
    """Compare the FAISS file on disk (as the next open would load it) with DuckDB; nothing is changed."""
    t0 = time.monotonic()
    index_dir = store.index_dir
    window_ids = store.window_ids()
    index, file_seq, path, unreadable = load_latest(index_dir)
    held = faiss_ids(index) if index is not None else None
    non_finite, dangling = _windows_scan(store)
    finite_ids = np.setdiff1d(window_ids, non_finite, assume_unique=True)
    orphan = np.setdiff1d(held, window_ids, assume_unique=True) if held is not None else np.zeros(0, np.int64)
    absent = np.setdiff1d(finite_ids, held, assume_unique=True) if held is not None else finite_ids
    both = np.intersect1d(finite_ids, held, assume_unique=True) if held is not None else np.zeros(0, np.int64)
    mismatched = _mismatched(index, store, both) if index is not None else np.zeros(0, np.int64)
    gone = missing_files(store)
    tmp = leftover_tmp_files(index_dir)
    seq = store.commit_seq()
    interrupted = store.unfinished_run_count()
    problems = []
    if index is None:
        problems.append("no readable FAISS file: the next open rebuilds it from DuckDB")
    problems += [f"unreadable FAISS file {u}" for u in unreadable]
    if len(orphan):
        problems.append(f"{len(orphan)} FAISS ids have no window row")
    if len(absent):
        problems.append(f"{len(absent)} window rows are missing from FAISS")
    if len(mismatched):
        problems.append(f"{len(mismatched)} FAISS vectors differ from DuckDB's")
    if len(non_finite):
        problems.append(f"{len(non_finite)} windows have a non-finite vector")
    if len(dangling):
        problems.append(f"{len(dangling)} windows belong to no indexed file")
    faiss_count = int(index.ntotal) if index is not None else 0
    if index is not None and faiss_count != len(finite_ids):
        problems.append(f"FAISS holds {faiss_count} vectors, DuckDB {len(finite_ids)} finite window rows")
    warnings = []
    if gone:
        warnings.append(
            f"{len(gone)} indexed files no longer exist on disk (the next `soundsift index` of their root removes them)"
        )
    if tmp:
        warnings.append(f"{len(tmp)} half-written FAISS files left by a killed run (removed on the next open)")
    if interrupted:
        warnings.append(f"{interrupted} runs were interrupted (their committed batches are kept; the next run resumes)")
    return {
        "ok": not problems,
        "commit": seq,
        "faiss_file": path.name if path else None,
        "faiss_file_commit": file_seq if path else None,
        "faiss_vectors": faiss_count,
        "windows": int(len(window_ids)),
        "orphan_ids": int(len(orphan)),
        "orphan_sample": _sample(orphan),
        "missing_ids": int(len(absent)),
        "missing_sample": _sample(absent),
        "mismatched_vectors": int(len(mismatched)),
        "non_finite": int(len(non_finite)),
        "non_finite_sample": _sample(non_finite),
        "dangling_windows": int(len(dangling)),
        "missing_files": len(gone),
        "missing_file_paths": _sample(display_path(p) for _, p, _ in gone),
        "unreadable_faiss_files": unreadable,
        "leftover_tmp_files": [p.name for p in tmp],
        "interrupted_runs": int(interrupted),
        "problems": problems,
        "warnings": warnings,
        "seconds": round(time.monotonic() - t0, 4),
    }


def repair(store: IndexStore) -> dict:
    """Fix what can be fixed from DuckDB: bad windows out, FAISS caught up or rebuilt, rows of vanished files out.

    Rows of missing files are removed only where their root is still a non-empty directory (an unmounted
    archive is not a deletion); the others are reported in ``kept_missing``.
    """
    before = audit(store)
    done: dict = {"removed_tmp_files": len(before["leftover_tmp_files"])}
    for tmp in leftover_tmp_files(store.index_dir):
        tmp.unlink(missing_ok=True)
    non_finite, dangling = _windows_scan(store)
    if len(non_finite):
        store.delete_windows(non_finite, fail_files_reason=NON_FINITE_REASON)
    if len(dangling):
        store.delete_windows(dangling)
    done["removed_windows"] = int(len(non_finite) + len(dangling))
    gone = missing_files(store)
    removable = [i for i, _, root in gone if root and os.path.isdir(root) and any(os.scandir(root))]
    keep = set(removable)
    done["kept_missing"] = [display_path(p) for i, p, _ in gone if i not in keep][:SAMPLE]
    if removable:
        run_id = store.max_ids().run
        store.commit(CommitPlan(files=[], remove_file_ids=removable), run_id)
    done["removed_files"] = len(removable)
    if before["mismatched_vectors"]:
        for _, seq_path in faiss_files(store.index_dir):
            seq_path.unlink()  # the vectors disagree with DuckDB: rebuild rather than catch up
    vectors = VectorIndex.open(store)  # catches up from DuckDB (or rebuilds) and saves a current file
    done["faiss"] = vectors.recovery
    after = audit(store)
    after["repaired"] = done
    after["before"] = {k: before[k] for k in ("ok", "problems", "missing_files")}
    return after
