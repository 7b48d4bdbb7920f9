"""FAISS index type by size: IVF recall against exact search, k past the index, filtered search, rebuild past the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_index import synthetic_commit, synthetic_store

from indexer import faiss_factory
from indexer.faiss_factory import build_index, describe, exact_top_k, plan_for, recall_at_k, tuning_queries
from indexer.vectors import VectorIndex
from search.filters import Filters
from search.sound_index import SoundIndex


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres, noise as large as the centre (like embeddings, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_plan_follows_size():
    assert plan_for(1_000).factory == "Flat"
    assert plan_for(faiss_factory.FLAT_MAX_VECTORS - 1).kind == "flat"
    assert plan_for(1_000_000).factory == "IVF2048,SQ8"
    assert plan_for(50, flat_max=10).nlist == 1  # never more lists than k-means can train


def test_ivf_recall_at_10_against_exact_on_unseen_queries():
    n, dim = 50_000, 64
    x = clustered(n, dim, clusters=300)
    ids = np.arange(n, dtype=np.int64) * 3 + 7  # ids are not positions
    chunks = lambda: ((ids[i : i + 8192], x[i : i + 8192]) for i in range(0, n, 8192))
    index, info = build_index(dim, n, chunks, flat_max=10_000)
    assert describe(index)["type"] == "IndexIVFScalarQuantizer" and index.ntotal == n
    assert info["tuned_recall_at_10"] >= faiss_factory.TARGET_RECALL
    queries = tuning_queries(x[::7], 300, seed=99)  # not the tuning queries
    truth = exact_top_k(queries, chunks(), 10)
    assert np.array_equal(truth[:, 0], ids[np.argmax(queries @ x.T, axis=1)])  # the reference is exact
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.95
    assert np.isin(found, ids).all()


def test_ivf_k_past_the_index_and_filtered_search(tmp_path):
    n, dim = 3_000, 32
    x = clustered(n, dim, clusters=20, seed=3)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    index, _ = build_index(dim, n, lambda: iter([(ids, x)]), flat_max=100)
    vi = VectorIndex(tmp_path, index, 1)
    scores, got = vi.search(x[:2], k=10 * n)
    assert got.shape == (2, n)  # k is capped at the index's size; what the probed lists lack is -1
    assert got[0, 0] == ids[0] and set(got[got >= 0]) <= set(ids)
    allowed = ids[::50]
    scores, got = vi.search(x[:1], k=5, allowed_ids=allowed)
    assert set(got[got >= 0]) <= set(allowed) and got[0, 0] == ids[0]


@pytest.fixture()
def ivf_index(tmp_path, make_settings, tiny_encoder, write_sound, monkeypatch):
    """A real index of 4 files whose FAISS index was rebuilt as IVF on open (the flat limit set below its size)."""
    for name, kind, seconds in (
        ("bell.wav", "bell", 35.0),
        ("bark.wav", "bark", 25.0),
        ("tone.flac", "tone", 12.0),
        ("glass.mp3", "glass", 22.0),
    ):
        write_sound(tmp_path / "archive" / name, kind, seconds)
    settings = make_settings(tmp_path / "index")
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
    sx.index([tmp_path / "archive"], progress=False)
    assert describe(sx.vectors._index)["type"] == "IndexFlatIP"
    sx.close()
    monkeypatch.setattr(faiss_factory, "FLAT_MAX_VECTORS", 4)
    sx = SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder)
    yield sx
    sx.close()


def test_index_past_the_flat_limit_is_rebuilt_as_ivf_and_searches_exactly_where_it_must(
    ivf_index, tiny_encoder, monkeypatch
):
    sx = ivf_index
    assert describe(sx.vectors._index)["type"] == "IndexIVFScalarQuantizer"
    assert sx.vectors.recovery["rebuilt"] is True
    chunk = next(sx.store.iter_vectors(1000))
    text = tiny_encoder.embed_texts(["This is a sound of a bell."])[0]
    exact = dict(zip(chunk.ids.tolist(), (chunk.vectors @ text).tolist()))
    # k past the index: every window once, scores exact
    hits = sx.search(["a bell"], k=1000).results[0].hits
    assert sorted(h.window_id for h in hits) == sorted(exact)
    assert all(abs(h.score - exact[h.window_id]) < 1e-5 for h in hits)
    assert [h.window_id for h in hits] == sorted(exact, key=lambda i: -exact[i])
    # a selective filter: exact scoring of the allowed windows
    only = sx.search(["a bell"], k=3, filters=Filters(path_glob="*/bark.wav")).results[0].hits
    bark = [i for i, f in zip(chunk.ids, chunk.file_ids) if f == only[0].file_id]
    assert len(only) == 3 and {h.path.rsplit("/", 1)[-1] for h in only} == {"bark.wav"}
    assert [h.window_id for h in only] == sorted(bark, key=lambda i: -exact[i])[:3]
    # a broad filter goes through FAISS's own id selector on the IVF index
    monkeypatch.setattr("search.core.topk.EXACT_FILTERED_MAX", 0)
    broad = sx.search(["a bell"], k=2, filters=Filters(path_glob="*/b*")).results[0].hits
    assert broad and {h.path.rsplit("/", 1)[-1] for h in broad} <= {"bark.wav", "bell.wav"}


def test_ivf_keeps_window_ids_through_removals_and_additions():
    """Removing ids from an IVF index must not shift the ids of the others (IndexIDMap2 over IVF did)."""
    from indexer.faiss_factory import IndexPlan, new_index
    from indexer.vectors import faiss_ids

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = new_index(64, IndexPlan("ivf", nlist=16))
    index.train(x)
    index.add_with_ids(x, np.arange(1000, 5000, dtype=np.int64))
    index.nprobe = 16  # every list: exact
    index.remove_ids(np.arange(1010, 1020, dtype=np.int64))
    y = rng.standard_normal((5, 64)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    index.add_with_ids(y, np.arange(9000, 9005, dtype=np.int64))
    _, found = index.search(np.vstack([x[[100, 2000]], y[3:4]]), 1)
    assert found[:, 0].tolist() == [1100, 3000, 9003]
    held = faiss_ids(index)
    assert len(held) == 3995 and 1015 not in held and {1009, 1020, 9004} <= set(held.tolist())


def test_an_owner_grows_its_index_as_it_commits_flat_to_ivf_then_more_lists_from_duckdb(tmp_path, monkeypatch):
    """A large first run never holds a flat index of every vector, and the next open has nothing to rebuild."""
    monkeypatch.setattr(faiss_factory, "FLAT_MAX_VECTORS", 50)
    store = synthetic_store(tmp_path / "index")
    vectors = VectorIndex.open(store)
    x = clustered(400, 64, 8, seed=3)
    kinds = []
    for at in range(0, 400, 100):
        ids = np.arange(at + 1, at + 101, dtype=np.int64)
        grew = synthetic_commit(store, vectors, ids, x[at : at + 100])
        kinds.append((grew is not None, describe(vectors._index)))
    ivf = "IndexIVFScalarQuantizer"
    # 100 windows: flat past 50 -> IVF of min(16, 100 // 39) = 2 lists; then rebuilt from DuckDB whenever the plan
    # wants twice the lists: 200 -> 5 (>= 2 x 2), 300 -> 7 (< 2 x 5, kept), 400 -> 10 (>= 2 x 5)
    assert [(g, d["type"], d.get("nlist"), d["ntotal"]) for g, d in kinds] == [
        (True, ivf, 2, 100),
        (True, ivf, 5, 200),
        (False, ivf, 5, 300),
        (True, ivf, 10, 400),
    ]
    assert np.array_equal(vectors.ids(), store.window_ids())
    faiss_factory.inner_index(vectors._index).nprobe = 10  # every list: the codes, not the probing, are checked
    scores, found = vectors.search(x[:5], 400)
    for q, row_ids, row_scores in zip(x[:5], found, scores):
        exact = x[row_ids - 1] @ q
        assert sorted(row_ids.tolist()) == list(range(1, 401))  # k past the index: every window once
        assert np.abs(row_scores - exact).max() < 0.02  # 8-bit codes
    vectors.save()
    store.close()
    store = synthetic_store(tmp_path / "index")
    reopened = VectorIndex.open(store)
    assert reopened.recovery["rebuilt"] is False and describe(reopened._index)["nlist"] == 10
    store.close()


def test_a_run_past_the_flat_limit_ends_with_ivf_and_reports_the_growth(
    tmp_path, make_settings, tiny_encoder, write_sound, monkeypatch
):
    for name, kind, seconds in (("bell.wav", "bell", 35.0), ("bark.wav", "bark", 25.0)):
        write_sound(tmp_path / "archive" / name, kind, seconds)
    monkeypatch.setattr(faiss_factory, "FLAT_MAX_VECTORS", 4)
    settings = make_settings(tmp_path / "index")
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
    report = sx.index([tmp_path / "archive"], progress=False)
    assert describe(sx.vectors._index)["type"] == "IndexIVFScalarQuantizer"  # during the run, not at the next open
    assert report.timings["faiss_grow_s"] > 0
    assert np.array_equal(sx.vectors.ids(), sx.store.window_ids())
    sx.close()
    sx = SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder)
    assert sx.vectors.recovery["rebuilt"] is False
    sx.close()
