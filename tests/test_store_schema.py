"""The store owns the schema: numbered migrations keyed on the stored schema version, typed records from its queries."""

from __future__ import annotations

import duckdb
import pytest

from indexer.errors import IndexCorrupt
from indexer.queries import FileDecoding, FileLocation, MaxIds, RunRecord, stored_model_id
from indexer.store import MIGRATIONS, SCHEMA_VERSION, FileRecord, IndexStore


def test_a_new_index_records_the_latest_schema_version(open_index, tmp_path):
    sx = open_index()
    assert sx.store.schema_version() == SCHEMA_VERSION == max(MIGRATIONS)
    assert sx.store.migrate() == []  # nothing left to apply


def test_an_index_from_before_numbered_migrations_is_migrated_by_its_owner(
    open_index, write_sound, tmp_path, tiny_encoder
):
    write_sound(tmp_path / "archive" / "a.wav", "tone", 3.0)
    sx = open_index()
    sx.index([tmp_path / "archive"], progress=False)
    index_dir = sx.store.index_dir
    sx.close()
    with duckdb.connect(str(index_dir / "soundsift.duckdb")) as con:  # as version 1 wrote it: no notes, no version key
        con.execute("ALTER TABLE files DROP COLUMN notes")
        con.execute("DELETE FROM meta WHERE key = 'schema_version'")
    store = IndexStore.open(index_dir, tiny_encoder.identity, create=False)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        (record,) = store.known_files()
        assert isinstance(record, FileRecord) and record.status == "indexed" and record.notes is None
        assert record.path.endswith("a.wav") and record.decoder == "soundfile" and record.duration == pytest.approx(3.0)
    finally:
        store.close()


def test_an_index_from_a_newer_soundsift_is_refused(open_index, tiny_encoder):
    sx = open_index()
    index_dir = sx.store.index_dir
    sx.close()
    with duckdb.connect(str(index_dir / "soundsift.duckdb")) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(IndexCorrupt, match=f"schema version {SCHEMA_VERSION + 1}, newer than this soundsift"):
        IndexStore.open(index_dir, tiny_encoder.identity, create=False)


def test_queries_return_named_records(open_index, write_sound, tmp_path):
    write_sound(tmp_path / "archive" / "a.wav", "tone", 12.0)
    sx = open_index()
    report = sx.index([tmp_path / "archive"], progress=False)
    store = sx.store
    ids = store.max_ids()
    assert isinstance(ids, MaxIds) and (ids.file, ids.window, ids.run) == (1, 2, report.run_id)
    decoding = store.decoding_of(1)
    assert isinstance(decoding, FileDecoding) and decoding.decoder == "soundfile" and decoding.channels == 1
    assert store.file_locations() == [FileLocation(1, str(tmp_path / "archive" / "a.wav"), str(tmp_path / "archive"))]
    (run,) = store.runs()
    assert isinstance(run, RunRecord) and run.status == "completed" and run.summary == report.document()
    assert store.indexed_window_count() == 2 and store.unfinished_run_count() == 0
    assert len(store.non_finite_window_ids()) == 0 and len(store.dangling_window_ids()) == 0
    row = store.window_rows([1])[1]
    assert (row.path, row.start, row.end, row.file_id) == (str(tmp_path / "archive" / "a.wav"), 0.0, 10.0, 1)
    assert store.files_by_path()[row.path].status == "indexed"
    path, root = str(tmp_path / "archive" / "a.wav"), str(tmp_path / "archive")
    assert store.roots() == [root] and store.indexed_paths() == {1: path} and store.path_of(1) == path
    assert store.path_of(99) is None and store.first_window_of(1) == 1 and store.first_window_of(99) is None
    place = store.window_place(2)
    assert (place.path, place.root, place.start, place.end, place.duration) == (
        path,
        root,
        2.0,
        12.0,
        pytest.approx(12.0),
    )
    windows = store.windows_of_file(1)
    assert windows.ids == [1, 2] and windows.starts == [0.0, 2.0] and windows.vectors.shape == (2, store.embedding_dim)
    assert store.window_ids_where("f.path GLOB $g", {"g": "*/a.wav"}).tolist() == [1, 2]
    total, rows = store.file_rows("f.id, f.path", "f.status = $s", {"s": "indexed"}, limit=10)
    assert (total, rows) == (1, [(1, path, 2)])


def test_stored_model_id_reads_a_closed_index(open_index, tiny_model_dir):
    sx = open_index()
    index_dir = sx.store.index_dir
    sx.close()
    assert stored_model_id(index_dir) == sx.encoder.identity.model_id
    assert stored_model_id(index_dir / "nowhere") is None


def test_server_jobs_is_migration_6_and_old_indexes_get_it(open_index, tiny_encoder):
    from indexer import job_store

    assert MIGRATIONS[6] == job_store.JOB_TABLES
    sx = open_index()
    index_dir = sx.store.index_dir
    sx.close()
    with duckdb.connect(str(index_dir / "soundsift.duckdb")) as con:  # as version 5 left it: no jobs table
        con.execute("DROP TABLE server_jobs")
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    store = IndexStore.open(index_dir, tiny_encoder.identity, create=False)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        cur = store.cursor()
        job_store.save_job(cur, "b", 2, "queued", '{"id": "b"}')
        job_store.save_job(cur, "a", 1, "completed", '{"id": "a"}')
        job_store.save_job(cur, "a", 1, "failed", '{"id": "a", "x": 1}')  # replaces, never duplicates
        assert job_store.saved_jobs(cur) == [(1, '{"id": "a", "x": 1}'), (2, '{"id": "b"}')]
        job_store.drop_jobs(cur, ["a"])
        assert [j.seq for j in job_store.saved_jobs(cur)] == [2]
        assert job_store.run_recorded(cur, 1) is False
    finally:
        store.close()


def test_allowed_roots_are_the_directories_on_disk_even_when_their_names_are_not_utf8(open_index, tmp_path):
    import os

    import soundfile as sf

    from search.demo_audio import synthesize
    from search.http.job_paths import allowed_roots

    root = os.path.join(os.fsencode(tmp_path), b"arch\xff")  # a root whose name is not UTF-8
    os.makedirs(root)
    sf.write(str(tmp_path / "a.wav"), synthesize("tone", 2.0, 16_000, 0), 16_000)
    os.rename(os.fsencode(tmp_path / "a.wav"), os.path.join(root, b"a.wav"))  # libsndfile takes UTF-8 names only
    sx = open_index()
    sx.index([os.fsdecode(root)], progress=False)
    extra = tmp_path / "more"
    extra.mkdir()
    assert allowed_roots(sx.store, [str(extra)]) == sorted(
        [os.path.realpath(os.fsdecode(root)), os.path.realpath(extra)]
    )
    assert all(os.path.isdir(r) for r in allowed_roots(sx.store))
