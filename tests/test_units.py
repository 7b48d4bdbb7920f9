"""Unit tests of the pure modules: windows, change detection, decoder order, ownership, audio cutting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.changes import known_files, plan_changes, refuse_unmounted
from indexer.decode import DecodeLimits, decoder_order
from indexer.errors import BadInput, IndexLocked
from indexer.ownership import IndexOwnership, describe_owner
from indexer.scan import ScannedFile, ScanResult, content_hash, under_root
from indexer.store import FileRecord
from indexer.windows import WindowCutter, WindowSpan, plan_windows
from plugins.contract import DecodeError, Decoder

# -- windows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "spans"),
    [
        (0, []),
        (7, [(0, 7)]),
        (10, [(0, 10)]),
        (25, [(0, 10), (10, 10), (15, 10)]),
        (30, [(0, 10), (10, 10), (20, 10)]),
    ],
)
def test_plan_windows_aligns_the_last_window_to_the_end(total, spans):
    assert plan_windows(total, 10, 10) == [WindowSpan(s, n) for s, n in spans]


@pytest.mark.parametrize("block", [1, 3, 7, 10, 64])
@pytest.mark.parametrize(("total", "window", "hop"), [(25, 10, 10), (37, 10, 4), (9, 10, 10), (50, 8, 8)])
def test_the_streaming_cutter_emits_the_planned_windows_whatever_the_block_size(block, total, window, hop):
    audio = np.arange(total, dtype=np.float32)
    cutter = WindowCutter(window, hop)
    got = []
    for i in range(0, total, block):
        got += list(cutter.feed(audio[i : i + block]))
    got += list(cutter.finish())
    assert [span for span, _ in got] == plan_windows(total, window, hop)
    for span, samples in got:
        np.testing.assert_array_equal(samples, audio[span.start : span.start + span.length])


# -- change detection ------------------------------------------------------------------------------


def _scanned(tmp_path: Path, name: str, data: bytes, mtime: float = 1000.0) -> ScannedFile:
    path = tmp_path / name
    path.write_bytes(data)
    return ScannedFile(str(path), str(tmp_path), len(data), mtime)


def _known(file_id: int, f: ScannedFile, status: str = "indexed", hash_: str | None = "auto") -> FileRecord:
    return FileRecord(
        id=file_id,
        path=f.path,
        root=f.root,
        size=f.size,
        mtime=f.mtime,
        hash=content_hash(f.path) if hash_ == "auto" else hash_,
        status=status,
        duration=1.0,
    )


def test_plan_changes_sorts_unchanged_new_renamed_copied_and_removed(tmp_path):
    same = _scanned(tmp_path, "same.wav", b"same")
    moved = _scanned(tmp_path, "moved.wav", b"moved")
    copy = _scanned(tmp_path, "copy.wav", b"same")
    new = _scanned(tmp_path, "new.wav", b"new")
    twin = _scanned(tmp_path, "twin.wav", b"new")
    old_moved = FileRecord(
        id=2,
        path=str(tmp_path / "old-name.wav"),
        root=str(tmp_path),
        size=5,
        mtime=1.0,
        hash=content_hash(moved.path),
        status="indexed",
        duration=1.0,
    )
    gone = FileRecord(
        id=3,
        path=str(tmp_path / "gone.wav"),
        root=str(tmp_path),
        size=4,
        mtime=1.0,
        hash="x" * 40,
        status="indexed",
        duration=1.0,
    )
    known = known_files([_known(1, same), old_moved, gone])
    changes = plan_changes([str(tmp_path)], ScanResult([same, moved, copy, new, twin], []), known)
    assert changes.unchanged == 1
    assert [(k.id, f.path) for k, f, _ in changes.renamed] == [(2, moved.path)]
    assert [(c.scanned.path, c.source.id) for c in changes.copies] == [(copy.path, 1)]
    assert [c.scanned.path for c in changes.decode] == [new.path]
    assert [c.scanned.path for c in changes.twins[content_hash(new.path)]] == [twin.path]
    assert [k.id for k in changes.removed] == [3]


def test_a_touched_file_with_the_same_content_keeps_its_windows_and_failures_retry_on_request(tmp_path):
    touched = _scanned(tmp_path, "touched.wav", b"abc", mtime=2000.0)
    failed = _scanned(tmp_path, "failed.wav", b"bad")
    known = known_files(
        [_known(1, ScannedFile(touched.path, touched.root, touched.size, 1000.0)), _known(2, failed, "failed")]
    )
    changes = plan_changes([str(tmp_path)], ScanResult([touched, failed], []), known)
    assert [(k.id, f.mtime) for k, f, _ in changes.touched] == [(1, 2000.0)]
    assert changes.unchanged == 2 and changes.decode == []
    retried = plan_changes([str(tmp_path)], ScanResult([touched, failed], []), known, retry_failed=True)
    assert [c.scanned.path for c in retried.decode] == [failed.path] and retried.decode[0].previous.id == 2


def test_an_empty_root_holding_indexed_files_is_refused_as_unmounted(tmp_path):
    root = tmp_path / "mnt"
    root.mkdir()
    held = FileRecord(id=1, path=str(root / "a.wav"), root=str(root), size=1, mtime=1.0, hash=None, status="indexed")
    with pytest.raises(BadInput, match="is empty but the index holds 1 files under it; is it unmounted"):
        refuse_unmounted([str(root)], ScanResult([], []), known_files([held]))
    refuse_unmounted(
        [str(root)], ScanResult([], [(str(root / "x.txt"), "not audio")]), known_files([held])
    )  # not empty


def test_under_root_matches_whole_path_components():
    assert under_root("/a/b/c.wav", "/a/b") and under_root("/a/b/c.wav", "/a/b/") and under_root("/a/b", "/a/b")
    assert not under_root("/a/bc/d.wav", "/a/b")


# -- decoder order ---------------------------------------------------------------------------------


def _decoder(name: str, **kw) -> Decoder:
    def refuse(path, settings):
        raise DecodeError(name)

    return Decoder(name=name, open=refuse, **kw)


def test_decoder_order_is_magic_then_specific_then_generic_by_extension_then_other_generics(tmp_path):
    decoders = {
        d.name: d
        for d in (
            _decoder("ffmpeg", extensions=("mp3", "wav"), generic=True),
            _decoder("sndfile", extensions=("wav",), generic=True),
            _decoder("toot", extensions=("toot",), magic=(b"TOOT",)),
            _decoder("mp3x", extensions=("mp3",)),
        )
    }
    plain = tmp_path / "a.mp3"
    plain.write_bytes(b"ID3 whatever")
    assert [d.name for d in decoder_order(plain, decoders)] == ["mp3x", "ffmpeg", "sndfile"]
    disguised = tmp_path / "b.mp3"
    disguised.write_bytes(b"TOOT\x00\x00")
    assert [d.name for d in decoder_order(disguised, decoders)] == ["toot", "mp3x", "ffmpeg", "sndfile"]
    wav = tmp_path / "c.WAV"
    wav.write_bytes(b"RIFF")
    assert [d.name for d in decoder_order(wav, decoders)] == ["ffmpeg", "sndfile"]


def test_open_audio_lists_what_every_decoder_said(tmp_path):
    from indexer.decode import open_audio

    path = tmp_path / "x.mp3"
    path.write_bytes(b"junk")
    decoders = {"one": _decoder("one", extensions=("mp3",)), "two": _decoder("two", generic=True)}
    with pytest.raises(DecodeError, match="^one: one; two: two$"):
        open_audio(path, decoders, {}, DecodeLimits())


# -- ownership -------------------------------------------------------------------------------------


def test_one_writer_owns_an_index_and_readers_share_it(tmp_path):
    owner = IndexOwnership(tmp_path, role="index")
    try:
        assert describe_owner(tmp_path)["role"] == "index"
        with pytest.raises(IndexLocked, match=r"is in use by pid \d+"):
            IndexOwnership(tmp_path, role="serve")
        with pytest.raises(IndexLocked):
            IndexOwnership(tmp_path, shared=True)
    finally:
        owner.release()
    assert describe_owner(tmp_path) == {}
    readers = [IndexOwnership(tmp_path, shared=True), IndexOwnership(tmp_path, shared=True)]
    for reader in readers:
        reader.release()
    IndexOwnership(tmp_path).release()


def test_a_dead_owner_leaves_the_index_free(tmp_path):
    code = f"from indexer.ownership import IndexOwnership; IndexOwnership(__import__('pathlib').Path({str(tmp_path)!r})); import os; os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    IndexOwnership(tmp_path).release()  # the kernel dropped the lock with the process


# -- audio cut -------------------------------------------------------------------------------------


def test_cut_clip_takes_the_span_from_seekable_and_streamed_files(tmp_path):
    from plugins.manager import build_plugin_manager
    from search.core.audio_cut import cut_clip

    rate = 16_000
    audio = (np.arange(rate * 3) % 100 / 100).astype(np.float32)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, rate, subtype="FLOAT")
    decoders = build_plugin_manager().decoders  # the soundfile decoder's source seeks straight to the span
    clip = cut_clip(wav, 1.0, 2.0, "wav", decoders, {}, DecodeLimits())
    got, got_rate = sf.read(__import__("io").BytesIO(clip.data), dtype="float32")
    assert (clip.media_type, got_rate, clip.start_s, clip.end_s) == ("audio/wav", rate, 1.0, 2.0)
    np.testing.assert_allclose(got, audio[rate : 2 * rate], atol=1 / 32768)

    pcm = tmp_path / "b.pcm"
    pcm.write_bytes((audio * 20_000).astype("<i2").tobytes())  # the pcm decoder cannot seek: streamed from the start
    streamed = cut_clip(pcm, 0.5, 1.5, "ogg", decoders, {"pcm.sample_rate": rate}, DecodeLimits())
    assert streamed.media_type == "audio/ogg" and streamed.end_s == pytest.approx(1.5, abs=1e-3)
    with pytest.raises(DecodeError, match="no audio between 5.00 s and 6.00 s"):
        cut_clip(wav, 5.0, 6.0, "wav", decoders, {}, DecodeLimits())


def test_the_kept_half_products_graph_is_what_onnx_helper_builds():
    import onnx

    from search.core.half_products import GRAPH, half_products_graph

    kept = onnx.load_from_string(GRAPH)
    onnx.checker.check_model(kept)
    assert kept == half_products_graph()


@pytest.mark.parametrize("negatives", [0, 3])
def test_float16_chunks_score_as_their_float32_widening_does(negatives):
    from plugins.contract import LabelTexts
    from search.core import half_products
    from search.core.scorers import LabelSetScorer

    rng = np.random.default_rng(7)
    unit = rng.normal(size=(5000, 64)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    texts = unit[:4] + 0.1
    negative = unit[4 : 4 + negatives]
    owner = np.array([0, 2, 2][:negatives], dtype=np.int64)
    labels = [LabelTexts(f"l{i}", (f"t{i}",), ()) for i in range(4)]
    chunk = unit.astype(np.float16)
    wide = chunk.astype(np.float32)

    def scorer():
        return LabelSetScorer(labels, texts, negative, owner, 30.0)

    assert half_products._onnx_session() is not None  # onnxruntime is a dependency: the graph runs
    got, got_negative = scorer().logits_with_negatives(chunk)
    want, want_negative = scorer().logits_with_negatives(wide)
    assert got.dtype == np.float32 and got.shape == (5000, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got_negative, want_negative, atol=1e-4)
    np.testing.assert_allclose(want, 30.0 * wide @ texts.T, atol=1e-4)
    if negatives:
        np.testing.assert_allclose(want_negative[:, 2], 30.0 * (wide @ negative[1:].T).max(axis=1), atol=1e-4)
        assert np.isneginf(want_negative[:, 1]).all()
