"""The window matrix: float16 scores within 1e-3 of float32, rebuilt when stale, classification and archive statistics from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.matrix import WindowMatrix, matrix_files, matrix_paths
from plugins.builtin.policies import softmax
from search.core.classify import LabelMatrix, chunk_logits
from search.filters import Filters
from search.sound_index import SoundIndex


@pytest.fixture()
def sx(tmp_path, make_settings, tiny_encoder, write_sound):
    for name, kind, seconds in (
        ("bearing.wav", "bearing", 45.0),
        ("bark.wav", "bark", 25.0),
        ("bell.mp3", "bell", 15.0),
    ):
        write_sound(tmp_path / "archive" / name, kind, seconds)
    settings = make_settings(tmp_path / "index")
    index = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
    index.index([tmp_path / "archive"], progress=False)
    yield index
    index.close()


def _labels(n: int, dim: int, seed: int, scale: float) -> LabelMatrix:
    t = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return LabelMatrix(
        labels=[None] * n,
        positive=torch.from_numpy(t),
        negative=torch.zeros((0, dim)),
        negative_owner=np.zeros(0, np.int64),
        logit_scale=scale,
    )


@pytest.mark.parametrize("scale", [14.285714, 33.0])
def test_float16_scores_within_1e3_of_float32(scale):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((100_000, 512)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = _labels(10, 512, 1, scale)
    p32 = softmax(chunk_logits(labels, v)[0])
    p16 = softmax(chunk_logits(labels, v.astype(np.float16))[0])
    assert np.abs(p16 - p32).max() <= 1e-3
    assert np.abs(p16 - p32).max() > 0  # float16 really was scored as float16


def test_matrix_of_a_real_index_float16_and_float32(sx, tiny_encoder):
    seq = sx.store.commit_seq()
    stored = next(sx.store.iter_vectors(10_000))
    wm32 = sx.window_matrix()
    assert wm32.seq == seq and wm32.vectors.dtype == np.float32  # small archives: float32, exact
    assert np.array_equal(wm32.ids, stored.ids) and np.array_equal(np.asarray(wm32.vectors), stored.vectors)
    assert np.array_equal(wm32.rows["file_id"], stored.file_ids) and np.array_equal(wm32.rows["end"], stored.ends)
    wm16 = WindowMatrix.build(sx.store, seq, dtype=np.float16)
    labels = LabelMatrix(
        labels=[None] * 3,
        positive=torch.from_numpy(tiny_encoder.embed_texts(["a", "b", "c"])),
        negative=torch.zeros((0, 512)),
        negative_owner=np.zeros(0, np.int64),
        logit_scale=tiny_encoder.logit_scale,
    )
    p32 = softmax(chunk_logits(labels, stored.vectors)[0])
    p16 = softmax(chunk_logits(labels, next(wm16.chunks(1000)).vectors)[0])
    assert np.abs(p16 - p32).max() <= 1e-3


def test_matrix_follows_commits_and_a_damaged_file_is_rebuilt(sx, tmp_path, write_sound):
    first = sx.window_matrix()
    n0 = len(first)
    write_sound(tmp_path / "archive" / "more.wav", "engine", 21.0)
    sx.index([tmp_path / "archive"], progress=False)
    second = sx.window_matrix()
    assert second.seq == sx.store.commit_seq() > first.seq and len(second) == n0 + 3
    assert [seq for seq, _ in matrix_files(sx.store.index_dir)] == [second.seq]  # the stale one is gone
    vec_path, _ = matrix_paths(sx.store.index_dir, second.seq)
    vec_path.write_bytes(vec_path.read_bytes()[:100])  # truncated
    assert WindowMatrix.load(sx.store.index_dir, second.seq) is None
    sx._matrix = None
    assert len(sx.window_matrix()) == n0 + 3


def test_classify_from_the_matrix_equals_scoring_duckdb_vectors(sx, tiny_encoder):
    labels = ["abnormal bearing noise", "dog barking", "a bell ringing"]
    everything = sx.classify(labels)
    stored = next(sx.store.iter_vectors(10_000))
    text = tiny_encoder.embed_texts([f"This is a sound of {l}." for l in labels])
    probs = softmax(tiny_encoder.logit_scale * stored.vectors @ text.T)
    by_id = {r.window_id: r for r in everything.rows}
    assert sorted(by_id) == stored.ids.tolist()
    for wid, p in zip(stored.ids, probs):
        assert [by_id[wid].scores[l] for l in labels] == pytest.approx(list(p), abs=1e-5)
    # top N: the N best rows of the full listing, best first, built without scoring every row into objects
    key = lambda r: r.scores[r.label] if r.label else max(r.scores.values())
    best = sorted(everything.rows, key=key, reverse=True)[:4]
    top = sx.classify(labels, top=4).rows
    assert [r.window_id for r in top] == [r.window_id for r in best]
    assert [r.scores for r in top] == [r.scores for r in best]
    # filters and paging select rows of the matrix
    bark = sx.classify(labels, filters=Filters(path_glob="*/bark.wav")).rows
    assert bark and {r.path.rsplit("/", 1)[-1] for r in bark} == {"bark.wav"}
    after = sorted(by_id)[2]
    assert [r.window_id for r in sx.classify(labels, after=after).rows] == sorted(i for i in by_id if i > after)


def test_archive_statistics_are_computed_once_per_label_set_and_commit(sx):
    labels = ["abnormal bearing noise", "dog barking"]
    first = sx.classify(labels, policy="archive")
    wm = sx.window_matrix()
    cached = dict(wm._cache)
    assert len(cached) == 1
    second = sx.classify(labels, policy="archive")
    assert dict(wm._cache) == cached and [r.scores for r in second.rows] == [r.scores for r in first.rows]
    sx.classify(labels, policy="archive", filters=Filters(path_glob="*/bark.wav"))
    assert dict(wm._cache) == cached  # statistics are over the whole index, whatever the filter
    sx.classify(["dog barking"], policy="archive")
    assert len(wm._cache) == 2  # another label set is computed once more


@pytest.mark.parametrize("read_only", [False, True])
def test_matrix_rows_follow_window_ids_when_the_table_stores_them_out_of_order(tmp_path, read_only):
    """The matrix is filled from DuckDB in stored order (no sort of every vector) and must still be in id order."""
    from synthetic_index import synthetic_commit, synthetic_store

    from indexer.store import IndexStore
    from indexer.vectors import VectorIndex

    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = synthetic_store(tmp_path / "index")
    vectors = VectorIndex.open(store)
    for block in (np.arange(201, 301), np.arange(1, 101), np.arange(101, 201)[::-1]):  # stored: 201.., 1.., 200..101
        synthetic_commit(store, vectors, block.astype(np.int64), x[block - 1])
    if read_only:
        store.close()
        store = IndexStore.open(tmp_path / "index", None, create=False, read_only=True)
    wm = WindowMatrix.build(store, store.commit_seq())
    assert wm.ids.tolist() == list(range(1, 301))
    assert np.array_equal(np.asarray(wm.vectors), x)
    assert wm.rows["file_id"].tolist() == [(i - 1) // 10 + 1 for i in range(1, 301)]
    assert wm.rows["start"].tolist() == [((i - 1) % 10) * 10.0 for i in range(1, 301)]
    store.close()
