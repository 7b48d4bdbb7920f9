"""Fixed-label audio classifiers as window taggers: pipeline parity, index-time tags, the tag pass, filters, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, cli_env
from tagger_models import LABELS, build_tiny_ast, build_tiny_wav2vec2

SR = 48_000


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random AST and wav2vec2 audio classifier, saved with save_pretrained (no download)."""
    root = tmp_path_factory.mktemp("classifiers")
    return {"ast": build_tiny_ast(root / "ast"), "wav2vec2": build_tiny_wav2vec2(root / "wav2vec2")}


def _windows(seconds=(10.0, 10.0, 3.5), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(max(seconds) * SR)) / SR
    out = []
    for i, s in enumerate(seconds):
        n = int(s * SR)
        tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t[:n])
        out.append((tone + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return out


def _pipeline(model_dir: Path):
    from transformers import pipeline

    return pipeline("audio-classification", model=str(model_dir), device="cpu")


@pytest.mark.parametrize("kind", ["ast", "wav2vec2"])
@pytest.mark.parametrize("top_k, function", [(3, None), (6, "sigmoid"), (2, "none")])
def test_tags_equal_the_transformers_pipeline_window_by_window(checkpoints, kind, top_k, function):
    from plugins.builtin.tag_classifier import TransformersClassifier

    classifier = TransformersClassifier(str(checkpoints[kind]), top_k=top_k, function_to_apply=function, batch_size=2)
    assert classifier.sample_rate == 16_000 and classifier.labels == LABELS
    windows = _windows()
    got = classifier.classify(windows, SR)  # two full windows batched together, the short one alone
    pipe = _pipeline(checkpoints[kind])
    for window, pairs in zip(windows, got):
        audio = classifier.prepare(window, SR)
        assert len(audio) == round(len(window) / 3)  # 48 kHz -> the extractor's 16 kHz (soxr)
        expected = pipe(audio, top_k=top_k, **({"function_to_apply": function} if function else {}))
        assert [p[0] for p in pairs] == [e["label"] for e in expected]
        np.testing.assert_allclose([p[1] for p in pairs], [e["score"] for e in expected], atol=1e-5, rtol=0)
    assert classifier.function_to_apply == (function or "softmax")


def _write(archive: Path, name: str, audio: np.ndarray) -> Path:
    archive.mkdir(parents=True, exist_ok=True)
    sf.write(str(archive / name), audio, SR, subtype="FLOAT")
    return archive / name


def _stored(sx) -> dict[int, list[tuple[str, str, float]]]:
    rows = (
        sx.store.cursor()
        .execute("SELECT window_id, model, label, score FROM window_tags ORDER BY window_id, score DESC")
        .fetchall()
    )
    out: dict[int, list] = {}
    for wid, model, label, score in rows:
        out.setdefault(int(wid), []).append((model, label, float(score)))
    return out


def test_index_time_tags_match_the_pipeline_and_filter_search_and_classify(tmp_path, open_index, checkpoints):
    from search.filters import Filters

    archive = tmp_path / "archive"
    audio = {
        name: a
        for name, a in zip(
            ("long.wav", "short.wav"), [np.concatenate(_windows((10.0, 10.0), 1)), _windows((4.0,), 2)[0]]
        )
    }
    for name, a in audio.items():
        _write(archive, name, a)
    emotion = str(checkpoints["wav2vec2"])
    sx = open_index(plugin={"classifier": {"models": [f"emotion={emotion}"], "top_k": 3}})
    report = sx.index([str(archive)], progress=False)
    assert report.windows == 3 and report.files_failed == 0
    stored = _stored(sx)
    windows = (
        sx.store.cursor()
        .execute('SELECT w.id, f.path, w.start, w."end" FROM windows w JOIN files f ON f.id = w.file_id')
        .fetchall()
    )
    assert sorted(stored) == sorted(w[0] for w in windows)
    pipe = _pipeline(checkpoints["wav2vec2"])
    from plugins.builtin.tag_classifier import TransformersClassifier

    prep = TransformersClassifier(emotion, top_k=3)
    for wid, path, start, end in windows:
        window = audio[Path(path).name][round(start * SR) : round(end * SR)]
        expected = pipe(prep.prepare(window, SR), top_k=3)
        assert [(m, lab) for m, lab, _ in stored[wid]] == [(emotion, e["label"]) for e in expected]
        np.testing.assert_allclose([s for *_, s in stored[wid]], [e["score"] for e in expected], atol=1e-5, rtol=0)

    doc = sx.stats()["tags"]
    assert doc == [
        {
            "model": emotion,
            "revision": prep.revision,
            "alias": "emotion",
            "labels": 6,
            "top_k": 3,
            "function_to_apply": "softmax",
            "windows_tagged": 3,
        }
    ]
    # Filters: the windows whose stored score for a label passes the comparison, and nothing else.
    label = stored[windows[0][0]][0][1]
    for op, cmp in ((">=", np.greater_equal), ("<", np.less)):
        cut = float(np.median([s for rows in stored.values() for _, lab, s in rows if lab == label]))
        expected_ids = sorted(
            w for w, rows in stored.items() if any(lab == label and cmp(s, cut) for _, lab, s in rows)
        )
        for tags in (
            [f"emotion:{label}{op}{cut}"],
            [f"emo:{label.upper()} {op} {cut}"],
            {f"emotion:{label}": f"{op}{cut}"},
        ):
            hits = sx.search(["a sound"], k=10, filters=Filters(tags=tags)).results[0].hits
            assert sorted(h.window_id for h in hits) == expected_ids, (tags, op)
        rows = sx.classify("tone, noise", filters=Filters(tags=[f"emotion:{label}{op}{cut}"])).rows
        assert sorted(r.window_id for r in rows) == expected_ids
    present = sorted(w for w, rows in stored.items() if any(lab == "silence" for _, lab, _ in rows))
    hits = sx.search(["a sound"], k=10, filters=Filters(tags={"emotion:silence": True})).results[0].hits
    assert sorted(h.window_id for h in hits) == present
    hits = sx.search(["a sound"], k=10, filters=Filters(tags={"emotion:silence": False})).results[0].hits
    assert sorted(h.window_id for h in hits) == sorted(set(stored) - set(present))
    from indexer.errors import BadInput

    with pytest.raises(BadInput, match="no model tagged this index as 'nope'"):
        sx.search(["a sound"], filters=Filters(tags=["nope:angry>=0.1"]))
    with pytest.raises(BadInput, match="has no label 'furious'"):
        sx.search(["a sound"], filters=Filters(tags=["emotion:furious>=0.1"]))

    # A copy of identical content takes its twin's windows and their tags, without decoding.
    (archive / "copy.wav").write_bytes((archive / "long.wav").read_bytes())
    assert sx.index([str(archive)], progress=False).files_reused == 1
    after = _stored(sx)
    copy_ids = [
        r[0]
        for r in sx.store.cursor()
        .execute(
            "SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id WHERE f.path LIKE '%copy.wav' ORDER BY w.start"
        )
        .fetchall()
    ]
    long_ids = [
        r[0]
        for r in sx.store.cursor()
        .execute(
            "SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id WHERE f.path LIKE '%long.wav' ORDER BY w.start"
        )
        .fetchall()
    ]
    assert [after[c] for c in copy_ids] == [after[i] for i in long_ids]
    # A file leaving the archive takes its tags with it.
    (archive / "short.wav").unlink()
    sx.index([str(archive)], progress=False)
    assert sorted(_stored(sx)) == sorted(copy_ids + long_ids)


def test_tag_pass_is_incremental_and_refuses_a_changed_label_set(tmp_path, open_index, checkpoints):
    from indexer.errors import SoundsiftError
    from indexer.tag_pass import TagLabelsChanged, TagModelError, run_tag_pass

    archive = tmp_path / "archive"
    _write(archive, "a.wav", np.concatenate(_windows((10.0, 5.0), 3)))
    sx = open_index()
    sx.index([str(archive)], progress=False)
    import shutil

    ast = str(shutil.copytree(checkpoints["ast"], tmp_path / "ast"))

    def tag(model=ast, **kw):
        return run_tag_pass(sx.store, sx.plugins, sx.settings, model, progress=False, **kw)

    first = tag(top_k=2)
    assert (first.windows_tagged, first.windows_already, first.files_tagged, first.alias) == (2, 0, 1, "ast")
    again = tag(top_k=2)
    assert (again.windows_tagged, again.windows_already) == (0, 2)
    _write(archive, "b.wav", _windows((3.0,), 4)[0])
    sx.index([str(archive)], progress=False)
    third = tag(top_k=2)
    assert (third.windows_tagged, third.windows_already, third.files_tagged) == (1, 2, 1)
    assert sx.store.cursor().execute("SELECT count(*), count(DISTINCT window_id) FROM window_tags").fetchone() == (6, 3)

    rows_before = sx.store.cursor().execute("SELECT * FROM window_tags ORDER BY ALL").fetchall()
    build_tiny_ast(Path(ast), labels=("dog", "cat", "speech"))  # same id, another label set
    with pytest.raises(TagLabelsChanged) as refused:
        tag(top_k=2)
    assert (
        "\n" not in str(refused.value) and "--retag" in str(refused.value) and "label set changed" in str(refused.value)
    )
    assert (
        sx.store.cursor().execute("SELECT * FROM window_tags ORDER BY ALL").fetchall() == rows_before
    )  # nothing written
    with pytest.raises(TagLabelsChanged, match="top_k 2 stored, 3 now"):
        tag(top_k=3)
    retagged = tag(top_k=2, retag=True)
    assert retagged.retagged and retagged.windows_tagged == 3
    labels = {r[0] for r in sx.store.cursor().execute("SELECT DISTINCT label FROM window_tags").fetchall()}
    assert labels <= {"dog", "cat", "speech"}
    assert sx.store.cursor().execute("SELECT count(*) FROM window_tags").fetchone()[0] == 6
    assert json.loads(sx.store.cursor().execute("SELECT labels FROM tag_models").fetchone()[0]) == [
        "dog",
        "cat",
        "speech",
    ]

    for bad, message in (
        (str(tmp_path / "missing-model"), "no model directory at"),
        (str(tmp_path), "not found locally"),
        ("no-such-org/no-such-model", "not found locally or in the Hugging Face cache"),
    ):
        with pytest.raises(TagModelError, match=message) as err:
            tag(bad)
        assert "\n" not in str(err.value) and isinstance(err.value, SoundsiftError)
    from indexer.tiny_clap import build_tiny_clap

    with pytest.raises(TagModelError, match="is not an audio-classification checkpoint") as err:
        tag(str(build_tiny_clap(tmp_path / "clap")))
    assert "\n" not in str(err.value)
    with pytest.raises(TagModelError, match="function_to_apply must be one of"):
        tag(function_to_apply="relu")


@pytest.mark.slow
def test_tag_cli_resumes_after_kill_9_and_exports_tag_columns(tmp_path, tiny_model_dir, run_cli, checkpoints):
    archive = tmp_path / "archive"
    for i in range(4):
        _write(archive, f"f{i}.wav", _windows((6.0,), 10 + i)[0])
    index = tmp_path / "index"
    run_cli("index", archive, "--index", index)
    model = str(checkpoints["wav2vec2"])
    env = cli_env(tiny_model_dir)
    env.update({"SOUNDSIFT_TEST_PAUSE_AT": "tag_commit:2", "SOUNDSIFT_COMMIT_EVERY_S": "0.001"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search.cli",
            "tag",
            "--index",
            str(index),
            "--model",
            model,
            "--alias",
            "emo",
            "--top-k",
            "2",
            "--batch-size",
            "1",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    paused = False
    for line in proc.stderr:  # a commit per window (batch 1, commit at once): pause inside the second one
        if line.startswith("soundsift-paused-at tag_commit"):
            paused = True
            break
    assert paused, "the tag pass never reached its second commit"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def tagged() -> tuple[int, str]:
        import duckdb

        with duckdb.connect(str(index / "soundsift.duckdb"), read_only=True) as con:
            count = con.execute("SELECT count(DISTINCT window_id) FROM window_tags").fetchall()[0][0]
            return count, con.execute("SELECT alias FROM tag_models").fetchall()[0][0]

    before, alias = tagged()
    assert alias == "emo" and before == 1  # the first commit survived the kill; the second never happened
    resumed = run_cli("tag", "--index", index, "--model", model, "--top-k", "2", "--json").json
    assert (resumed["windows_tagged"], resumed["windows_already"], resumed["alias"]) == (3, 1, "emo")  # the alias stays
    assert tagged() == (4, "emo")

    out = tmp_path / "rows.csv"
    run_cli("classify", "--index", index, "--labels", "tone, noise", "--out", out)
    import csv

    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and list(rows[0])[-2:] == ["tag:emo", "tag:emo:score"]
    assert all(r["tag:emo"] in LABELS and 0.0 <= float(r["tag:emo:score"]) <= 1.0 for r in rows)

    from typer.testing import CliRunner

    from search.cli import app

    runner = CliRunner()
    label = rows[0]["tag:emo"]
    env = {"SOUNDSIFT_MODEL": str(tiny_model_dir), "SOUNDSIFT_DEVICE": "cpu"}
    found = runner.invoke(
        app, ["search", "a sound", "--index", str(index), "--tag", f"emo:{label}>=0", "--json"], env=env
    )
    hits = json.loads(found.stdout)["results"][0]["hits"]
    assert {Path(h["path"]).name for h in hits} == {Path(r["path"]).name for r in rows if r["tag:emo"] == label}
    plugins = runner.invoke(
        app, ["plugins", "--json"], env={"SOUNDSIFT_PLUGIN__CLASSIFIER__MODELS": json.dumps([f"emo={model}"])}
    )
    tagger = next(t for t in json.loads(plugins.stdout)["taggers"] if t["name"] == "classifier")
    assert tagger["models"] == [f"emo={model}"]


def test_a_bad_tag_filter_is_one_line_before_any_model_loads(run_cli, tmp_path):
    bad = run_cli("search", "a sound", "--index", tmp_path / "none", "--tag", "emo", check=False)
    assert (
        bad.returncode == 2
        and bad.stderr.startswith("error: cannot read the tag filter 'emo'")
        and bad.stderr.count("\n") == 1
    )


def test_server_tag_job_and_file_view(tmp_path, tiny_model_dir, checkpoints):
    from api_server import LiveServer, api_settings, build_index, job_done

    from search.http.app import create_app

    archive = tmp_path / "archive"
    _write(archive, "a.wav", np.concatenate(_windows((10.0, 2.0), 5)))
    settings = api_settings(tmp_path / "index", tiny_model_dir)
    build_index(settings, [archive])
    with LiveServer(create_app(settings)) as server, server.client() as http:
        job = http.post("/jobs/tag", json={"model": f"ast={checkpoints['ast']}", "top_k": 2})
        assert job.status_code == 202 and job.json()["kind"] == "tag"
        info = job_done(http, job.json()["id"])
        assert info["status"] == "completed", info
        assert info["report"]["windows_tagged"] == 2 and info["progress"]["windows"] == 2
        stats = http.get("/stats").json()
        assert stats["tags"][0]["alias"] == "ast" and stats["tags"][0]["windows_tagged"] == 2
        files = http.get("/files").json()["files"]
        detail = http.get(f"/files/{files[0]['id']}").json()
        tags = [w["model_tags"]["ast"] for w in detail["windows"]]
        assert all(len(t) == 2 and t[0]["score"] >= t[1]["score"] and t[0]["label"] in LABELS for t in tags)
        best = tags[0][0]
        hits = http.post(
            "/search",
            json={"queries": ["a sound"], "filters": {"tags": [f"ast:{best['label']}>={best['score'] - 1e-6}"]}},
        )
        assert hits.status_code == 200 and detail["windows"][0]["id"] in [
            h["window_id"] for h in hits.json()["results"][0]["hits"]
        ]
        same = http.post(
            "/search",
            json={"queries": ["a sound"], "filters": {"tags": {f"ast:{best['label']}": best["score"] - 1e-6}}},
        )
        assert same.json()["results"][0]["hits"] == hits.json()["results"][0]["hits"]
        assert http.post("/search", json={"queries": ["a"], "filters": {"tags": ["ast"]}}).status_code == 422
        unknown = http.post("/search", json={"queries": ["a"], "filters": {"tags": ["nope:x>=1"]}})
        assert unknown.status_code in (400, 422) and "no model tagged this index" in unknown.json()["detail"]
        failed = http.post("/jobs/tag", json={"model": str(tmp_path / "missing")})
        info = job_done(http, failed.json()["id"])
        assert info["status"] == "failed" and info["error"].startswith("no model directory at")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("emotion:angry>=0.5", ("emotion", "angry", ">=", 0.5)),
        ("ast:Male speech, man speaking < 0.2", ("ast", "Male speech, man speaking", "<", 0.2)),
        ("MIT/ast:Speech", ("MIT/ast", "Speech", None, None)),
        ("w2v:yes==1e-1", ("w2v", "yes", "=", 0.1)),
        ("silence=false", (None, "silence", "=", False)),
        ("rms_db=-20", (None, "rms_db", "=", -20)),
    ],
)
def test_the_tag_filter_syntax(text, expected):
    from search.filters import parse_tag_filter

    t = parse_tag_filter(text)
    assert (t.model, t.label, t.op, t.value) == expected


def test_a_local_model_directory_is_keyed_by_its_absolute_path(tmp_path, monkeypatch):
    from search.cli.tagging import model_ref

    (tmp_path / "emotion").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_ref("emotion", None) == str(tmp_path / "emotion")
    assert model_ref("emotion", "emo") == f"emo={tmp_path / 'emotion'}"
    assert model_ref("emo=emotion", None) == f"emo={tmp_path / 'emotion'}"
    assert model_ref("superb/hubert-large-superb-er", None) == "superb/hubert-large-superb-er"
