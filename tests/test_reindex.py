"""Incremental re-indexing on real files and a real index: add, modify, delete, rename, copy, retry; recovery of a
damaged index (truncated FAISS, orphan and missing ids, an unreplayable WAL); the unmounted-root guard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import faiss
import numpy as np
import pytest

from indexer.errors import BadInput, IndexCorrupt
from indexer.store import IndexStore
from indexer.vectors import VectorIndex, faiss_files
from search.sound_index import SoundIndex

SR = 16_000


def windows_by_file(sx: SoundIndex) -> dict[str, list[tuple[int, float, float]]]:
    rows = (
        sx.store.cursor()
        .execute(
            'SELECT f.path, w.id, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id ORDER BY f.path, w.start'
        )
        .fetchall()
    )
    out: dict[str, list] = {}
    for path, wid, start, end in rows:
        out.setdefault(os.path.basename(path), []).append((wid, round(start, 3), round(end, 3)))
    return out


def assert_consistent(sx: SoundIndex) -> None:
    assert np.array_equal(sx.vectors.ids(), sx.store.window_ids())
    assert sx.vectors.ntotal == sx.store.window_count()


def test_add_modify_delete_rename_copy(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "a.wav", "noise", 3.0, SR, seed=1)  # 1 window
    write_sound(archive / "b.wav", "chirp", 12.0, SR, seed=2)  # 2 windows: [0,10] [2,12]
    write_sound(archive / "c.wav", "bell", 25.0, SR, seed=3)  # 3 windows
    sx = open_index()
    r = sx.index([archive], progress=False)
    assert (r.files_added, r.files_updated, r.files_removed, r.files_unchanged, r.windows) == (3, 0, 0, 0, 6)
    first = windows_by_file(sx)
    assert [len(first[n]) for n in ("a.wav", "b.wav", "c.wav")] == [1, 2, 3]

    # Nothing changed: nothing decoded, nothing written.
    r = sx.index([archive], progress=False)
    assert (r.files_added, r.files_updated, r.files_removed, r.files_unchanged, r.windows) == (0, 0, 0, 3, 0)
    assert r.timings["embed_s"] == 0.0

    # Add d, modify b (longer), delete c, rename a -> a2, copy b's old content? no: copy d to e (identical content).
    write_sound(archive / "d.wav", "tone", 15.0, SR, seed=4)  # 2 windows
    shutil.copy(archive / "d.wav", archive / "e.wav")  # same content: embedded once
    write_sound(archive / "b.wav", "chirp", 31.0, SR, seed=5)  # 4 windows now
    (archive / "c.wav").unlink()
    (archive / "a.wav").rename(archive / "a2.wav")
    r = sx.index([archive], progress=False)
    assert (r.files_added, r.files_updated, r.files_removed, r.files_renamed, r.files_unchanged) == (2, 1, 1, 1, 0)
    assert r.files_reused == 1  # e.wav copied d.wav's windows
    assert r.windows == 2 + 2 + 4 and r.windows_removed == 2 + 3
    now = windows_by_file(sx)
    assert sorted(now) == ["a2.wav", "b.wav", "d.wav", "e.wav"]
    assert now["a2.wav"] == first["a.wav"]  # a rename keeps the row, the windows and their ids
    assert [len(now[n]) for n in ("b.wav", "d.wav", "e.wav")] == [4, 2, 2]
    assert [w[1:] for w in now["d.wav"]] == [w[1:] for w in now["e.wav"]]
    d_vecs = sx.store.window_batch_of(sx.store.files_by_path()[str(archive / "d.wav")][0]).vectors
    e_vecs = sx.store.window_batch_of(sx.store.files_by_path()[str(archive / "e.wav")][0]).vectors
    assert np.array_equal(d_vecs, e_vecs)
    assert sx.store.window_count() == 1 + 4 + 2 + 2
    assert_consistent(sx)
    # Removed and replaced windows never come back in a result; ids are never reused.
    gone = {w[0] for w in first["c.wav"] + first["b.wav"]}
    hits = sx.search(["a sound"], k=50).results[0].hits
    assert len(hits) == 9 and not gone & {h.window_id for h in hits}
    assert min(w[0] for n in ("b.wav", "d.wav", "e.wav") for w in now[n]) > max(
        w[0] for ws in first.values() for w in ws
    )

    # Touched (mtime only): the row is refreshed, nothing embedded again.
    os.utime(archive / "d.wav", (1_000_000, 1_000_000))
    r = sx.index([archive], progress=False)
    assert (r.files_added, r.files_updated, r.files_unchanged, r.windows) == (0, 0, 4, 0)
    assert windows_by_file(sx) == now

    # Same size, same mtime, other content: only --verify-content sees it.
    st = os.stat(archive / "e.wav")
    write_sound(archive / "e.wav", "tone", 15.0, SR, seed=4)
    data = bytearray((archive / "e.wav").read_bytes())
    data[-100:] = bytes(100)  # silence the last samples: same size, other content
    (archive / "e.wav").write_bytes(bytes(data))
    os.utime(archive / "e.wav", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sx.index([archive], progress=False).files_updated == 0
    r = sx.index([archive], progress=False, verify_content=True)
    assert (r.files_updated, r.files_unchanged, r.windows, r.files_reused) == (1, 3, 2, 0)
    assert_consistent(sx)
    runs = sx.store.cursor().execute("SELECT status, summary->>'files_updated' FROM runs ORDER BY id").fetchall()
    assert runs[-1] == ("completed", "1") and len(runs) == 6  # every run is recorded with what it did


def test_failed_files_are_retried_when_changed_or_asked(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "ok.wav", "noise", 3.0, SR)
    (archive / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    sx = open_index()
    r = sx.index([archive], progress=False)
    assert (r.files_added, r.files_failed) == (1, 1)
    r = sx.index([archive], progress=False)
    assert (r.files_failed, r.files_unchanged) == (0, 2)  # not retried: it did not change
    r = sx.index([archive], progress=False, retry_failed=True)
    assert (r.files_failed, r.files_unchanged) == (1, 1)
    write_sound(archive / "bad.wav", "noise", 3.0, SR, seed=9)  # fixed on disk
    r = sx.index([archive], progress=False)
    assert (r.files_updated, r.files_failed, r.windows) == (1, 0, 1)
    assert_consistent(sx)


def test_empty_root_is_refused_as_unmounted(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "a.wav", "noise", 3.0, SR)
    write_sound(archive / "b.wav", "noise", 3.0, SR, seed=1)
    sx = open_index()
    sx.index([archive], progress=False)
    hidden = tmp_path / "hidden"
    archive.rename(hidden)
    archive.mkdir()  # an empty mount point
    seq = sx.store.commit_seq()
    with pytest.raises(BadInput, match="is empty but the index holds 2 files under it; is it unmounted"):
        sx.index([archive], progress=False)
    assert sx.store.commit_seq() == seq and sx.store.window_count() == 2
    r = sx.index([archive], progress=False, allow_empty_root=True)  # the operator says it really is empty
    assert r.files_removed == 2 and sx.store.window_count() == 0
    assert_consistent(sx)


def test_unmounted_root_cli(tmp_path, write_sound, run_cli):
    archive = tmp_path / "mnt" / "archive"
    write_sound(archive / "a.wav", "noise", 3.0, SR)
    index = tmp_path / "index"
    run_cli("index", archive, "--index", index, "--json")
    shutil.rmtree(tmp_path / "mnt")  # the mount went away
    missing = run_cli("index", archive, "--index", index, "--json", check=False)
    assert missing.returncode == 2 and "not mounted" in missing.stderr and "index was not touched" in missing.stderr
    archive.mkdir(parents=True)  # the bare mount point is back, the disk is not
    empty = run_cli("index", archive, "--index", index, "--json", check=False)
    assert empty.returncode == 2 and "is it unmounted? Nothing was changed" in empty.stderr
    check = run_cli("check", "--index", index, "--json", check=False)
    assert check.returncode == 0 and check.json["windows"] == 1 and check.json["missing_files"] == 1


def _three_noise_files_indexed(tmp_path, open_index, write_sound):
    """Index three 12 s noise files (6 windows); returns the closed index's directory and its window ids."""
    archive = tmp_path / "archive"
    for i in range(3):
        write_sound(archive / f"{i}.wav", "noise", 12.0, SR, seed=i)
    sx = open_index()
    sx.index([archive], progress=False)
    index_dir, ids = sx.store.index_dir, sx.store.window_ids()
    sx.close()
    return index_dir, ids


def test_truncated_faiss_is_rebuilt(tmp_path, open_index, write_sound, run_cli):
    index_dir, _ = _three_noise_files_indexed(tmp_path, open_index, write_sound)
    ((_, path),) = faiss_files(index_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    report = run_cli("check", "--index", index_dir, "--json", check=False)
    assert report.returncode == 1 and report.json["unreadable_faiss_files"] and report.json["faiss_file"] is None
    store = IndexStore.open(index_dir, None, create=False)
    try:
        vectors = VectorIndex.open(store)
        assert vectors.recovery["rebuilt"] and vectors.ntotal == store.window_count() == 6
    finally:
        store.close()
    assert run_cli("check", "--index", index_dir, "--json").json["ok"]


def test_check_finds_and_repairs_orphan_and_missing_ids(tmp_path, open_index, write_sound, run_cli):
    index_dir, ids = _three_noise_files_indexed(tmp_path, open_index, write_sound)
    ((_, path),) = faiss_files(index_dir)
    index = faiss.read_index(str(path))
    index.remove_ids(ids[:2])
    index.add_with_ids(np.ones((1, index.d), np.float32) / np.sqrt(index.d), np.array([9999], np.int64))
    faiss.write_index(index, str(path))
    (tmp_path / "archive" / "2.wav").unlink()
    report = run_cli("check", "--index", index_dir, "--json", check=False)
    assert report.returncode == 1
    assert (report.json["orphan_ids"], report.json["missing_ids"], report.json["missing_files"]) == (1, 2, 1)
    assert report.json["orphan_sample"] == [9999] and report.json["missing_sample"] == ids[:2].tolist()
    repaired = run_cli("check", "--index", index_dir, "--repair", "--json").json
    assert repaired["ok"] and repaired["repaired"]["removed_files"] == 1
    assert (repaired["windows"], repaired["faiss_vectors"], repaired["missing_files"]) == (4, 4, 0)


def test_unreplayable_wal_is_reported_and_kept(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "a.wav", "noise", 3.0, SR)
    sx = open_index()
    sx.index([archive], progress=False)
    index_dir = sx.store.index_dir
    sx.close()
    db = index_dir / "soundsift.duckdb"
    wal = index_dir / "soundsift.duckdb.wal"
    # A process killed after a commit leaves its WAL behind (no checkpoint at exit).
    code = (
        "import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); c.execute(\"SET checkpoint_threshold = '1TB'\"); "
        "c.execute(\"INSERT INTO meta VALUES ('note', 'x')\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    assert wal.exists()
    data = bytearray(wal.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = b"\xff" * 32  # a checksum that no longer matches
    wal.write_bytes(bytes(data))
    before = (db.read_bytes(), wal.read_bytes())
    with pytest.raises(IndexCorrupt, match="cannot be replayed.*move .*soundsift.duckdb.wal aside"):
        IndexStore.open(index_dir, None, create=False)
    assert (db.read_bytes(), wal.read_bytes()) == before  # never silently replaced


def test_swapped_contents_are_copied_not_embedded(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "a.wav", "noise", 3.0, SR, seed=1)
    write_sound(archive / "b.wav", "chirp", 12.0, SR, seed=2)
    sx = open_index()
    sx.index([archive], progress=False)
    before = windows_by_file(sx)
    a, b = (archive / "a.wav").read_bytes(), (archive / "b.wav").read_bytes()
    (archive / "a.wav").write_bytes(b)
    (archive / "b.wav").write_bytes(a)
    r = sx.index([archive], progress=False)
    assert (r.files_updated, r.files_reused, r.windows, r.windows_removed) == (2, 2, 3, 3)
    assert r.timings["embed_s"] == 0.0
    after = windows_by_file(sx)
    assert [w[1:] for w in after["a.wav"]] == [w[1:] for w in before["b.wav"]]
    assert [w[1:] for w in after["b.wav"]] == [w[1:] for w in before["a.wav"]]
    assert_consistent(sx)
