"""Indexing through the Python API: window boundaries, formats, search ranking, classification, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from search.filters import Filters
from search.sound_index import SoundIndex, classify_array, classify_file

SR = 48_000


def _spans(sx: SoundIndex) -> dict[str, list[tuple[float, float]]]:
    rows = (
        sx.store.cursor()
        .execute(
            'SELECT f.path, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id ORDER BY f.path, w.start'
        )
        .fetchall()
    )
    out: dict[str, list] = {}
    for path, start, end in rows:
        out.setdefault(path.rsplit("/", 1)[-1], []).append((round(start, 6), round(end, 6)))
    return out


def test_window_boundaries(tmp_path, open_index):
    archive = tmp_path / "archive"
    archive.mkdir()
    rng = np.random.default_rng(0)
    lengths = {
        "a_3.5.wav": int(3.5 * SR),
        "b_10.wav": 10 * SR,
        "c_10plus1.wav": 10 * SR + 1,
        "d_25.wav": 25 * SR,
        "e_31.wav": 31 * SR,
    }
    for name, n in lengths.items():
        sf.write(archive / name, (0.1 * rng.standard_normal(n)).astype(np.float32), SR, subtype="FLOAT")
    sx = open_index()
    report = sx.index([archive], progress=False)
    assert report.files_indexed == 5 and report.files_failed == 0
    one = round(1 / SR, 6)
    assert _spans(sx) == {
        "a_3.5.wav": [(0.0, 3.5)],
        "b_10.wav": [(0.0, 10.0)],
        "c_10plus1.wav": [(0.0, 10.0), (one, round(10 + 1 / SR, 6))],
        "d_25.wav": [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)],
        "e_31.wav": [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (21.0, 31.0)],
    }
    assert report.windows == 11


def test_hop_is_configurable(tmp_path, open_index, write_sound):
    write_sound(tmp_path / "archive" / "x.wav", "noise", 25.0)
    sx = open_index(hop_s=5.0)
    sx.index([tmp_path / "archive"], progress=False)
    assert _spans(sx)["x.wav"] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0)]


@pytest.mark.parametrize(
    "ext,rate,channels",
    [
        (".wav", 44_100, 2),
        (".flac", 48_000, 1),
        (".ogg", 22_050, 1),
        (".mp3", 44_100, 2),
        (".m4a", 44_100, 1),
        (".opus", 48_000, 1),
        (".aac", 32_000, 1),
    ],
)
def test_each_format_is_indexed_with_its_duration(tmp_path, open_index, write_sound, ext, rate, channels):
    path = write_sound(tmp_path / "archive" / f"clip{ext}", "bell", 12.0, sample_rate=rate, channels=channels)
    sx = open_index()
    report = sx.index([path.parent], progress=False)
    assert report.files_failed == 0, report.errors
    duration, sample_rate, file_channels = (
        sx.store.cursor().execute("SELECT duration, sample_rate, channels FROM files").fetchone()
    )
    assert abs(duration - 12.0) < 0.12  # encoder priming/padding of lossy codecs, within 1 %
    assert (sample_rate, file_channels) == (rate, channels)
    assert [s for s, _ in _spans(sx)[path.name]] == [0.0, pytest.approx(duration - 10.0, abs=1e-6)]


def test_downmix_is_the_channel_mean(tmp_path, open_index, tiny_encoder):
    left = (0.3 * np.sin(2 * np.pi * 440 * np.arange(5 * SR) / SR)).astype(np.float32)
    right = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)
    (tmp_path / "archive").mkdir()
    sf.write(tmp_path / "archive" / "stereo.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    sx = open_index()
    sx.index([tmp_path / "archive"], progress=False)
    stored = next(sx.store.iter_vectors(10)).vectors[0]
    expected = tiny_encoder.embed_windows([(left + right) / 2])[0]
    assert np.max(np.abs(stored - expected)) < 1e-5


def test_search_ranking_equals_brute_force_cosine(tmp_path, open_index, write_sound, tiny_encoder):
    for i, kind in enumerate(["tone", "noise", "bell", "bearing", "bark", "glass", "engine", "chirp"]):
        write_sound(tmp_path / "archive" / f"{kind}.wav", kind, 15.0 + i, seed=i)
    sx = open_index()
    sx.index([tmp_path / "archive"], progress=False)
    chunk = next(sx.store.iter_vectors(10_000))
    queries = ["a pure tone", "glass breaking", "a dog barking"]
    response = sx.search(queries, k=5)
    for query, result in zip(queries, response.results):
        q = tiny_encoder.embed_texts([f"This is a sound of {query}."])[0]
        cos = chunk.vectors @ q
        by_id = dict(zip(chunk.ids.tolist(), cos.tolist()))
        # The k best brute-force scores, in order; each hit's score is its own window's cosine
        # (windows whose cosines tie within float error may come in either order).
        assert [h.score for h in result.hits] == pytest.approx(sorted(cos, reverse=True)[:5], abs=1e-5)
        assert all(abs(h.score - by_id[h.window_id]) < 1e-5 for h in result.hits)
        assert result.texts == [f"This is a sound of {query}."]
    # k larger than the index returns every window once
    assert len(sx.search(["a bell"], k=1000).results[0].hits) == len(chunk.ids)
    # a path filter restricts hits to matching files
    only = sx.search(["a bell"], k=100, filters=Filters(path_glob="*/bell.wav")).results[0].hits
    assert only and {h.path.rsplit("/", 1)[-1] for h in only} == {"bell.wav"}


def test_classify_by_window_and_by_file(tmp_path, open_index, write_sound, tiny_encoder):
    write_sound(tmp_path / "archive" / "long.wav", "bearing", 25.0)
    write_sound(tmp_path / "archive" / "short.wav", "bark", 4.0)
    sx = open_index()
    sx.index([tmp_path / "archive"], progress=False)
    labels = ["abnormal bearing noise", "dog barking", "silence"]
    windows = sx.classify(", ".join(labels))
    assert windows.texts == [[f"This is a sound of {l}."] for l in labels]
    assert len(windows.rows) == 4
    chunk = next(sx.store.iter_vectors(100))
    text = tiny_encoder.embed_texts([f"This is a sound of {l}." for l in labels])
    logits = tiny_encoder.logit_scale * chunk.vectors @ text.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for row, p in zip(sorted(windows.rows, key=lambda r: r.window_id), probs):
        assert [row.scores[l] for l in labels] == pytest.approx(list(p), abs=1e-5)
    files = sx.classify(labels, by="file")
    assert len(files.rows) == 2
    long_row = next(r for r in files.rows if r.path.endswith("long.wav"))
    long_windows = [r for r in windows.rows if r.path.endswith("long.wav")]
    for label in labels:
        assert long_row.scores[label] == pytest.approx(max(r.scores[label] for r in long_windows), abs=1e-6)
    peak = max(long_windows, key=lambda r: r.scores[long_row.label])
    assert (long_row.start, long_row.end) == (peak.start, peak.end)
    # --top keeps the N best rows; --threshold drops rows whose label scores below it
    top = sx.classify(labels, top=2)
    best = sorted((max(r.scores.values()) for r in windows.rows), reverse=True)[:2]
    assert [max(r.scores.values()) for r in top.rows] == pytest.approx(best)
    cut = sorted(max(r.scores.values()) for r in windows.rows)[1]
    kept = sx.classify(labels, threshold=cut)
    assert len(kept.rows) == 3 and all(max(r.scores.values()) >= cut for r in kept.rows)


def test_classify_file_and_array_need_no_index(tmp_path, write_sound, make_settings, tiny_encoder):
    path = write_sound(tmp_path / "one.flac", "bell", 14.0, sample_rate=44_100)
    settings = make_settings(tmp_path / "unused")
    result = classify_file(path, "church bell, dog barking", tiny_encoder, settings)
    assert [(w.start, w.end) for w in result.windows] == [(0.0, 10.0), (4.0, 14.0)]
    assert result.file.scores["church bell"] == pytest.approx(max(w.scores["church bell"] for w in result.windows))
    audio, rate = sf.read(path, dtype="float32")
    from_array = classify_array(audio, rate, ["church bell", "dog barking"], tiny_encoder, settings)
    assert len(from_array.windows) == len(result.windows) == 2
    for a, b in zip(result.windows, from_array.windows):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
    assert not (tmp_path / "unused").exists()


def test_cli_outputs_csv_parquet_jsonl(tmp_path, write_sound, run_cli):
    import csv
    import json

    import pyarrow.parquet as pq

    write_sound(tmp_path / "archive" / "a.wav", "tone", 21.0)
    index = tmp_path / "index"
    run_cli("index", tmp_path / "archive", "--index", index)
    run_cli("classify", "--index", index, "--labels", "tone, 噪音 noise", "--out", tmp_path / "r.csv")
    run_cli("classify", "--index", index, "--labels", "tone, noise", "--out", tmp_path / "r.parquet")
    run_cli("classify", "--index", index, "--labels", "tone, noise", "--out", tmp_path / "r.jsonl")
    rows = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    assert len(rows) == 3 and set(rows[0]) >= {"path", "start", "end", "label", "tone"}
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 3 and table.column_names == [
        "path",
        "start",
        "end",
        "label",
        "tone",
        "noise",
        "confidence",
        "fired",
    ]
    lines = [json.loads(line) for line in open(tmp_path / "r.jsonl", encoding="utf-8")]
    assert [l["start"] for l in lines] == [0.0, 10.0, 11.0]


def test_scan_follows_no_symlink_out_of_the_roots(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    outside = tmp_path / "outside"
    write_sound(archive / "in.wav", "tone", 2.0)
    write_sound(outside / "secret.wav", "noise", 2.0)
    (archive / "link_out.wav").symlink_to(outside / "secret.wav")
    (archive / "dir_out").symlink_to(outside, target_is_directory=True)
    (archive / "link_in.wav").symlink_to(archive / "in.wav")
    (archive / "notes.txt").write_text("not audio")
    sx = open_index()
    report = sx.index([archive], progress=False)
    indexed = sorted(p.rsplit("/", 1)[-1] for p in sx.store.files_by_path())
    assert indexed == ["in.wav", "link_in.wav"]
    assert report.files_skipped == 2  # link_out.wav (out of the root) and notes.txt (extension)


def test_policy_options_are_checked_before_scoring_and_fired_labels_listed(tmp_path, open_index, write_sound):
    from indexer.errors import BadInput

    write_sound(tmp_path / "archive" / "a.wav", "tone", 12.0)
    write_sound(tmp_path / "archive" / "b.wav", "noise", 25.0, seed=3)
    sx = open_index()
    sx.index([tmp_path / "archive"], progress=False)
    with pytest.raises(BadInput, match="thresholds names labels that are not in the label set"):
        sx.iter_classify("tone, noise", policy="multilabel", policy_options={"thresholds": {"no such label": 0.5}})
    # a threshold of 0 fires every label under multilabel: rows list them all
    rows = sx.classify("tone, noise", policy="multilabel", policy_options={"threshold": 0.0}).rows
    assert len(rows) == 5 and all(r.fired == ["tone", "noise"] for r in rows)
    # archive statistics cover the whole index, whatever the filter selects
    whole = [r for r in sx.classify("tone, noise", policy="archive").rows if r.path.endswith("a.wav")]
    one = sx.classify("tone, noise", policy="archive", filters=Filters(path_glob="*/a.wav")).rows
    # (equal to float32 rounding: the two calls score different numbers of rows per matrix product)
    assert len(one) == 2 and [r.scores for r in one] == [pytest.approx(r.scores, abs=1e-5) for r in whole]


def test_editing_a_pcm_sidecar_reindexes_the_file(tmp_path, open_index):
    import os

    archive = tmp_path / "archive"
    archive.mkdir()
    pcm = archive / "take1.pcm"
    pcm.write_bytes((np.sin(np.arange(16_000 * 4) / 10) * 20_000).astype("<i2").tobytes())  # 4 s at 16 kHz
    sidecar = archive / "take1.pcm.toml"
    sidecar.write_text("sample_rate = 16000\n")
    sx = open_index()
    sx.index([archive], progress=False)
    duration = lambda: sx.store.cursor().execute("SELECT duration FROM files WHERE status = 'indexed'").fetchone()[0]
    assert duration() == pytest.approx(4.0, abs=1e-3)
    sidecar.write_text("sample_rate = 8000\n")
    os.utime(sidecar, (pcm.stat().st_mtime + 5, pcm.stat().st_mtime + 5))
    report = sx.index([archive], progress=False)
    assert report.files_indexed == 1 and report.files_unchanged == 0
    assert duration() == pytest.approx(8.0, abs=1e-3)


def test_what_a_decoder_leaves_out_is_recorded_with_the_file(tmp_path, run_cli):
    archive = tmp_path / "archive"
    archive.mkdir()
    samples = (np.sin(np.arange(16_000 * 3) / 7) * 10_000).astype("<i2").tobytes()
    (archive / "odd.pcm").write_bytes(samples + b"\x01")  # a partial last s16le frame
    report = run_cli("index", archive, "--index", tmp_path / "index", "--json").json
    assert report["files_indexed"] == 1 and report["errors"] == []
    assert report["warnings"] == [
        {"path": str(archive / "odd.pcm"), "warning": "dropped a partial final frame (1 of 2 bytes)"}
    ]
    import duckdb

    con = duckdb.connect(str(tmp_path / "index" / "soundsift.duckdb"), read_only=True)
    assert con.execute("SELECT status, notes, duration FROM files").fetchall() == [
        ("indexed", "dropped a partial final frame (1 of 2 bytes)", 3.0)
    ]
    con.close()
