"""What is said: speech models as taggers (pipeline parity, the incremental pass, kill -9), --said full-text search."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, cli_env

from plugins.builtin.transcriber import TransformersTranscriber
from plugins.contract import TranscriberLoadError

SR = 48_000
KNOWN = "tests.plugins.known_words"


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    """A tiny random wav2vec2 CTC and a tiny random Whisper, saved with save_pretrained (no download)."""
    from indexer.tiny_asr import build_random_whisper, build_tiny_ctc

    root = tmp_path_factory.mktemp("asr")
    return {"ctc": build_tiny_ctc(root / "ctc"), "whisper": build_random_whisper(root / "whisper")}


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, audio: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SR, subtype="FLOAT")
    return path


def _pipeline(model_dir: Path):
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")


def test_ctc_text_equals_the_pipeline_window_by_window_with_word_times(asr):
    transcriber = TransformersTranscriber(str(asr["ctc"]), batch_size=2, language="zh")
    windows = [_noise(10.0, 1), _noise(10.0, 2), _noise(3.5, 3)]  # two batched together, the short one alone
    got = transcriber.transcribe(windows, SR)
    pipe = _pipeline(asr["ctc"])
    assert transcriber.sample_rate == 16_000 and transcriber.timestamps == "word"
    for window, result in zip(windows, got):
        audio = transcriber.prepare(window, SR)
        assert len(audio) == round(len(window) / 3)
        assert result.text == pipe(audio)["text"] and result.text.strip()
        assert result.language == "zh"
        assert [w.text for w in result.words] == result.text.split()
        assert all(0 <= w.start <= w.end <= len(window) / SR for w in result.words)
        assert [w.start for w in result.words] == sorted(w.start for w in result.words)


def test_whisper_text_equals_the_pipeline_asked_for_the_language(asr):
    transcriber = TransformersTranscriber(str(asr["whisper"]), batch_size=2, language="zh")
    windows = [_noise(10.0, 4), _noise(10.0, 5)]
    got = transcriber.transcribe(windows, SR)
    pipe = _pipeline(asr["whisper"])
    for window, result in zip(windows, got):
        expected = pipe(transcriber.prepare(window, SR), generate_kwargs={"language": "zh", "task": "transcribe"})
        assert result.text == expected["text"]
        assert result.words == []  # no alignment heads in this checkpoint: the text spans the window
    assert transcriber.timestamps is None


def test_a_model_that_is_not_speech_recognition_is_one_clear_line(tmp_path, tiny_model_dir):
    from tagger_models import build_tiny_wav2vec2

    for model in (build_tiny_wav2vec2(tmp_path / "classifier"), tiny_model_dir):
        with pytest.raises(TranscriberLoadError, match="is not a speech-recognition checkpoint") as err:
            TransformersTranscriber(str(model))
        assert "\n" not in str(err.value)
    with pytest.raises(TranscriberLoadError, match="no model directory at"):
        TransformersTranscriber(str(tmp_path / "missing"))


def _segments(sx) -> dict[int, tuple]:
    rows = (
        sx.store.cursor()
        .execute(
            "SELECT window_id, model, revision, language, text, CAST(words AS VARCHAR), seg_start, seg_end "
            "FROM window_transcripts ORDER BY window_id"
        )
        .fetchall()
    )
    return {int(r[0]): r[1:] for r in rows}


def test_transcribe_pass_equals_the_pipeline_on_each_window_and_is_incremental(tmp_path, open_index, asr):
    archive = tmp_path / "archive"
    _write(archive / "long.wav", _noise(23.0, 7))  # windows 0-10, 10-20, 13-23
    _write(archive / "short.wav", _noise(4.0, 8))
    sx = open_index()
    sx.index([archive])
    report = sx.transcribe(f"asr={asr['ctc']}", language="zh")
    doc = report.document()
    assert (doc["windows_transcribed"], doc["windows_already"], doc["alias"], doc["language"]) == (4, 0, "asr", "zh")
    assert doc["revision"].startswith("sha256:") and doc["note"] is None
    stored = _segments(sx)
    spans = dict(
        (int(w), (p, s, e))
        for w, p, s, e in sx.store.cursor()
        .execute('SELECT w.id, f.path, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id')
        .fetchall()
    )
    assert set(stored) == set(spans)
    pipe = _pipeline(asr["ctc"])
    transcriber = TransformersTranscriber(str(asr["ctc"]))
    for wid, (model, revision, language, text, words, seg_start, seg_end) in stored.items():
        path, start, end = spans[wid]
        audio, _ = sf.read(path, dtype="float32", start=int(round(start * SR)), stop=int(round(end * SR)))
        assert text == pipe(transcriber.prepare(audio, SR))["text"]  # the same 16 kHz audio, the same text
        assert (model, revision, language) == (str(asr["ctc"]), doc["revision"], "zh")
        times = json.loads(words)
        assert [w[0] for w in times] == text.split()
        assert all(start <= w[1] <= w[2] <= end for w in times)
        assert (seg_start, seg_end) == (times[0][1], times[-1][2])
    again = sx.transcribe(str(asr["ctc"])).document()
    assert (again["windows_transcribed"], again["windows_already"], again["alias"]) == (0, 4, "asr")
    assert sx.stats()["transcripts"][0]["windows_transcribed"] == 4
    redo = sx.transcribe(str(asr["ctc"]), retranscribe=True).document()
    assert (redo["windows_transcribed"], redo["retranscribed"]) == (4, True) and len(_segments(sx)) == 4


def test_index_time_transcriber_and_a_ray_run_refuses_it(tmp_path, open_index, asr):
    from indexer.transcribe_pass import TranscriberError, configured_transcribers

    archive = tmp_path / "archive"
    _write(archive / "a.wav", _noise(5.0, 9))
    sx = open_index(plugin={"transcriber": {"models": [f"asr={asr['ctc']}"], "language": "zh"}})
    report = sx.index([archive]).document()
    assert [(t["alias"], t["windows_transcribed"], t["language"]) for t in report["transcripts"]] == [("asr", 1, "zh")]
    assert len(_segments(sx)) == 1
    again = sx.index([archive]).document()
    assert again["transcripts"][0]["windows_transcribed"] == 0  # incremental at index time too
    with pytest.raises(TranscriberError, match="runs only in a local run, not on a Ray cluster"):
        configured_transcribers(sx.plugins, sx.settings, cluster=object())


@pytest.fixture(scope="module")
def said_index(tmp_path_factory, tiny_encoder, tiny_model_dir):
    """An index of tones whose words are known (tests/plugins/known_words.py), transcribed by that plugin."""
    import importlib

    from indexer.settings import load_settings
    from plugins.manager import build_plugin_manager
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("said")
    archive = root / "archive"
    for freq in (300, 450, 600, 750, 900):
        _write(archive / f"f{freq}.wav", _tone(freq, 4.0))
    _write(archive / "long300.wav", _tone(300, 14.0))  # two windows: 0-10, 4-14
    settings = load_settings(index=root / "index", model=str(tiny_model_dir), device="cpu", decode_workers=1)
    plugins = build_plugin_manager(extra=[importlib.import_module(KNOWN)])
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder, plugins=plugins)
    sx.index([archive])
    report = sx.transcribe("known-words").document()
    assert report["windows_transcribed"] == 7 and report["windows_without_speech"] == 1
    yield sx
    sx.close()


def _names(response) -> list[str]:
    return [Path(h.path).name for h in response.results[0].hits]


def test_said_search_finds_the_known_words_with_highlights(said_index):
    from search.filters import Filters

    def said(text, k=10):
        return said_index.search([], k=k, filters=Filters(said=text))

    found = said("退款 OR 投诉")
    assert sorted(_names(found)) == ["f300.wav", "long300.wav", "long300.wav"]
    hit = found.results[0].hits[0]
    assert hit.said.text == "客户投诉 说 要求 退款"
    assert hit.said.highlights == [[2, 4], [10, 12]]  # 投诉 inside 客户投诉, and 退款
    assert hit.said.start == pytest.approx(hit.start + 0.1 * (hit.end - hit.start), abs=1e-3)
    assert hit.said.end == pytest.approx(hit.start + 0.9 * (hit.end - hit.start), abs=1e-3)
    assert found.results[0].texts == [] and all(h.score > 0 for h in found.results[0].hits)
    assert _names(said("shouting")) == ["f450.wav"]  # SHOUTING, case-folded
    assert said("shouting").results[0].hits[0].said.highlights == [[16, 24]]
    assert _names(said("creme brulee")) == ["f600.wav"]  # crème brûlée, accent-folded
    assert _names(said("shout*")) == ["f450.wav"]
    assert _names(said('"about a refund"')) == ["f450.wav"]  # a stop word inside a phrase still counts
    assert _names(said('"refund about"')) == []
    assert _names(said("refund NOT shouting")) == []
    assert _names(said("(refund OR 求助) NOT shouting")) == ["f750.wav"]
    assert _names(said("投訴")) == _names(said("投诉"))  # Traditional folded to Simplified
    assert _names(said("紧急求助")) == ["f750.wav"] and _names(said("求助")) == ["f750.wav"]
    assert len(said("退款", k=1).results[0].hits) == 1


def test_hybrid_said_filters_by_what_is_said_and_ranks_by_sound(said_index):
    from search.core.said import RRF_K
    from search.filters import Filters

    plain = {h.window_id: h.score for h in said_index.search(["a tone"], k=50).results[0].hits}
    filtered = said_index.search(["a tone"], k=50, filters=Filters(said="投诉"))
    hits = filtered.results[0].hits
    assert sorted(Path(h.path).name for h in hits) == ["f300.wav", "long300.wav", "long300.wav"]
    assert [h.score for h in hits] == sorted((plain[h.window_id] for h in hits), reverse=True)
    assert all(h.said is not None and h.said.highlights == [[2, 4]] for h in hits)
    fused = said_index.search(["a tone"], k=50, filters=Filters(said="求助"), fuse="rrf").results[0].hits
    sound_rank = {wid: r for r, wid in enumerate(sorted(plain, key=lambda w: -plain[w]), 1)}
    assert len(fused) == len(plain)  # every sound hit, and the said one among them
    for h in fused:
        expected = 1 / (RRF_K + sound_rank[h.window_id]) + (1 / (RRF_K + 1) if Path(h.path).name == "f750.wav" else 0)
        assert h.score == pytest.approx(expected, abs=1e-6)
        assert (h.said is not None) == (Path(h.path).name == "f750.wav")
    rows = said_index.classify("tone, noise", filters=Filters(said="shouting")).rows
    assert [Path(r.path).name for r in rows] == ["f450.wav"]


def test_file_view_and_export_column_carry_the_transcript(said_index, tmp_path):
    from search.core.transcript_column import export_columns
    from search.core.writers import write_rows
    from search.http.catalog import file_detail

    fid = next(f for f, p in said_index.store.indexed_paths().items() if p.endswith("long300.wav"))
    detail = file_detail(said_index, fid)
    assert [(s.start, s.text, s.model) for s in detail.transcript] == [
        (1.0, "客户投诉 说 要求 退款", "known"),
        (5.0, "客户投诉 说 要求 退款", "known"),
    ]
    assert [w.text for w in detail.transcript[0].words] == ["客户投诉", "说", "要求", "退款"]
    header, rows = said_index.iter_classify("tone, noise")
    rows, extra = export_columns(said_index.store, rows, "window")
    count = write_rows(tmp_path / "rows.csv", header, rows, extra)
    with open(tmp_path / "rows.csv", newline="", encoding="utf-8") as fh:
        got = {Path(r["path"]).name: r["transcript"] for r in csv.DictReader(fh)}
    assert count == 7 and extra == ["transcript"]
    assert got["f450.wav"] == "the customer is SHOUTING about a refund" and got["f900.wav"] == ""


def test_the_fulltext_index_is_derived_and_rebuilt_from_duckdb(said_index):
    from indexer.fulltext import FTS_NAME
    from search.core.said import fulltext_of, said_window_ids

    before = sorted(said_window_ids(said_index, "退款"))
    fulltext_of(said_index).close()
    (said_index.store.index_dir / FTS_NAME).write_bytes(b"not a database")
    said_index.__dict__.pop("_fulltext", None)
    assert sorted(said_window_ids(said_index, "退款")) == before and len(before) == 3
    assert len(fulltext_of(said_index)) == 7


@pytest.mark.parametrize(
    "query, message",
    [
        ('"wrong number', "unbalanced quote"),
        ("the of a 的 了", "only stop words"),
        ("NOT 投诉", "only says what must not be said"),
        ("(退款 OR 投诉", "unbalanced parenthesis"),
        ("退款 OR", "OR with nothing after it"),
        ("退款 NOT", "ends with an operator"),
    ],
)
def test_bad_said_queries_are_one_clear_line(query, message):
    from indexer.errors import BadInput
    from search.core.said import parse_said

    with pytest.raises(BadInput, match=message) as err:
        parse_said(query)
    assert "\n" not in str(err.value)


def test_said_cli_no_speech_note_and_bad_query(tmp_path, run_cli, open_index):
    archive = tmp_path / "quiet"
    _write(archive / "hum.wav", _tone(900, 3.0))  # the known-words plugin hears nothing at 900 Hz
    sx = open_index()
    sx.index([archive])
    index = sx.store.index_dir
    sx.close()
    env = {"SOUNDSIFT_EXTRA_PLUGINS": KNOWN}
    missing = run_cli("search", "--said", "退款", "--index", index, check=False, env=env)
    assert missing.returncode != 0 and missing.stderr.strip().startswith("error: no transcripts in")
    done = run_cli("transcribe", "--index", index, "--model", "known-words", "--json", env=env)
    assert done.json["windows_transcribed"] == 1 and done.json["windows_without_speech"] == 1
    assert "note: no speech was heard in any of the 1 windows" in done.stderr
    bad = run_cli("search", "--said", '"wrong number', "--index", index, check=False)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "unbalanced quote" in bad.stderr


@pytest.mark.slow
def test_transcribe_cli_resumes_after_kill_9_with_every_window_once(tmp_path, tiny_model_dir, run_cli, asr):
    archive = tmp_path / "archive"
    for i in range(4):
        _write(archive / f"f{i}.wav", _noise(6.0, 20 + i))
    index = tmp_path / "index"
    run_cli("index", archive, "--index", index)
    model = str(asr["ctc"])
    env = cli_env(tiny_model_dir)
    env.update({"SOUNDSIFT_TEST_PAUSE_AT": "transcript_commit:2", "SOUNDSIFT_COMMIT_EVERY_S": "0.001"})
    args = ["transcribe", "--index", str(index), "--model", model, "--alias", "asr", "--batch-size", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    paused = False
    for line in proc.stderr:  # one commit per window: pause inside the second one
        if line.startswith("soundsift-paused-at transcript_commit"):
            paused = True
            break
    assert paused, "the transcribe pass never reached its second commit"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def stored() -> list[int]:
        import duckdb

        with duckdb.connect(str(index / "soundsift.duckdb"), read_only=True) as con:
            return [r[0] for r in con.execute("SELECT window_id FROM window_transcripts ORDER BY window_id").fetchall()]

    assert len(stored()) == 1  # the first commit survived the kill; the second never happened
    resumed = run_cli("transcribe", "--index", index, "--model", model, "--json").json
    assert (resumed["windows_transcribed"], resumed["windows_already"], resumed["alias"]) == (3, 1, "asr")
    assert stored() == sorted(set(stored())) and len(stored()) == 4  # every window once


def test_server_transcribe_job_file_view_and_said_search(tmp_path, tiny_model_dir, monkeypatch):
    from api_server import LiveServer, api_settings, build_index

    from plugins.manager import reset_default_plugins
    from search.http.app import create_app

    monkeypatch.setenv("SOUNDSIFT_EXTRA_PLUGINS", KNOWN)
    reset_default_plugins()
    try:
        archive = tmp_path / "archive"
        _write(archive / "a.wav", _tone(300, 4.0))
        _write(archive / "b.wav", _tone(450, 4.0))
        settings = api_settings(tmp_path / "index", tiny_model_dir)
        build_index(settings, [archive])
        with LiveServer(create_app(settings)) as server, server.client() as http:
            job = http.post("/jobs/transcribe", json={"model": "known-words", "language": "zh"})
            assert job.status_code == 202 and job.json()["kind"] == "transcribe"
            for _ in range(600):
                info = http.get(f"/jobs/{job.json()['id']}").json()
                if info["status"] not in ("queued", "running"):
                    break
                time.sleep(0.1)
            assert info["status"] == "completed", info
            assert info["report"]["windows_transcribed"] == 2 and info["progress"]["windows"] == 2
            found = http.post("/search", json={"queries": [], "filters": {"said": "退款 OR 投诉"}}).json()
            hits = found["results"][0]["hits"]
            assert [Path(h["path"]).name for h in hits] == ["a.wav"]
            assert hits[0]["said"] == {
                "text": "客户投诉 说 要求 退款",
                "highlights": [[2, 4], [10, 12]],
                "start": 0.4,
                "end": 3.6,
            }
            both = http.post("/search", json={"queries": ["a tone"], "filters": {"said": "refund"}, "fuse": "rrf"})
            assert both.status_code == 200 and len(both.json()["results"][0]["hits"]) == 2
            bad = http.post("/search", json={"queries": [], "filters": {"said": '"open'}})
            assert bad.status_code == 422 and "unbalanced quote" in bad.json()["detail"]
            fid = next(h["file_id"] for h in hits)
            detail = http.get(f"/files/{fid}").json()
            assert [s["text"] for s in detail["transcript"]] == ["客户投诉 说 要求 退款"]
            assert http.get("/stats").json()["transcripts"][0]["windows_with_speech"] == 2
        # a finished pass's job, report included, is still there after the server restarts
        with LiveServer(create_app(settings)) as server, server.client() as http:
            again = http.get(f"/jobs/{job.json()['id']}").json()
            assert again["status"] == "completed" and again["report"] == info["report"]
    finally:
        reset_default_plugins()


def test_the_fulltext_index_follows_new_and_removed_transcripts(tmp_path, open_index):
    import importlib

    from plugins.manager import build_plugin_manager
    from search.core.said import fulltext_of, said_window_ids

    archive = tmp_path / "archive"
    _write(archive / "a.wav", _tone(300, 3.0))
    _write(archive / "b.wav", _tone(450, 3.0))
    sx = open_index()
    sx.plugins = build_plugin_manager(extra=[importlib.import_module(KNOWN)])
    sx.index([archive])
    sx.transcribe("known-words")
    assert len(said_window_ids(sx, "退款")) == 1
    _write(archive / "c.wav", _tone(300, 3.0) * 0.9)  # new content saying the same
    sx.index([archive])
    sx.transcribe("known-words")
    assert len(said_window_ids(sx, "退款")) == 2 and len(fulltext_of(sx)) == 3  # caught up, not rebuilt
    (archive / "a.wav").unlink()
    sx.index([archive])  # its window and transcript leave the index: the full-text index is rebuilt
    assert len(said_window_ids(sx, "退款")) == 1 and len(fulltext_of(sx)) == 2
    assert said_window_ids(sx, "refund") == [w for w in said_window_ids(sx, "shouting")]
