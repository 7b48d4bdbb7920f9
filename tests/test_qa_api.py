"""The QA workflow over HTTP (a real uvicorn): every option per request, localize, envelopes, uploads with
file info and acoustic warnings; the same options from the CLI and `classify_audio` from Python."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import soundfile as sf
from api_server import LiveServer, api_settings
from band_encoder import BandEncoder, burst_in_noise

BURST_AT = 13.3


@pytest.fixture(scope="module")
def band(tiny_encoder):
    return BandEncoder(tiny_encoder)


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir, band):
    from search.http.app import create_app
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("qa")
    archive = root / "archive"
    archive.mkdir()
    sf.write(archive / "burst.wav", burst_in_noise(20.0, BURST_AT, 0.5, seed=1), 48_000, subtype="PCM_16")
    sf.write(archive / "noise.flac", burst_in_noise(12.0, 0.0, 0.0, seed=2), 48_000)
    settings = api_settings(root / "index", tiny_model_dir)
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=band)
    sx.index([archive], progress=False)
    with LiveServer(create_app(settings, sound_index=sx)) as server:
        server.root = root
        server.sx = sx
        with server.client() as client:
            server.http = client
            yield server


def _window_of(live, name: str, at: float) -> dict:
    files = live.http.get("/files").json()["files"]
    fid = next(f["id"] for f in files if f["path"].endswith(name))
    detail = live.http.get(f"/files/{fid}").json()
    return next(w for w in detail["windows"] if w["start"] <= at < w["end"]) | {"file_id": fid}


def test_localize_finds_the_burst_in_seconds_of_the_file(live):
    w = _window_of(live, "burst.wav", BURST_AT)
    r = live.http.get(f"/windows/{w['id']}/localize", params={"query": "a tone", "sub_s": 1.0, "hop_s": 0.25})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert abs((doc["start"] + doc["end"]) / 2 - (BURST_AT + 0.25)) <= 0.5
    assert doc["end"] - doc["start"] == pytest.approx(1.0)
    assert (doc["window_start"], doc["window_end"]) == (w["start"], w["end"])
    assert doc["window_id"] == w["id"] and doc["texts"] == ["This is a sound of a tone."]
    assert len(doc["steps"]) == 37 and doc["score"] == max(s["score"] for s in doc["steps"])
    assert live.http.get("/windows/999999/localize", params={"query": "tone"}).status_code == 404
    bad = live.http.get(f"/windows/{w['id']}/localize", params={"query": "tone", "sub_s": 30})
    assert bad.status_code == 422 and "sub_s" in bad.text


def test_search_takes_a_prompt_template_and_localizes_hits(live):
    r = live.http.post(
        "/search", json={"queries": ["a tone"], "k": 2, "prompt_template": "the sound of {}", "localize": True}
    )
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["texts"] == ["the sound of a tone"]
    best = result["hits"][0]
    assert best["path"].endswith("burst.wav") and best["start"] <= BURST_AT < best["end"]
    assert abs(best["localized"]["start"] - BURST_AT) <= 0.75 and best["localized"]["window_id"] == best["window_id"]
    plain = live.http.post("/search", json={"queries": ["a tone"], "k": 1}).json()["results"][0]
    assert plain["texts"] == ["This is a sound of a tone."] and "localized" not in plain["hits"][0]
    bad = live.http.post("/search", json={"queries": ["a tone"], "prompt_template": "no placeholder"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "prompt_template"


def test_classify_takes_policy_options_and_prompt_template_and_names_peaks(live):
    body = {
        "labels": "tone, noise",
        "policy": "margin",
        "policy_options": {"min_margin": 0.0},
        "prompt_template": "a {} sound",
    }
    r = live.http.post("/classify", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["texts"] == [["a tone sound"], ["a noise sound"]]
    assert all("confidence" in row["extras"] and row["label"] for row in doc["rows"])
    strict = live.http.post("/classify", json={**body, "policy_options": {"min_margin": 1.01}}).json()
    assert all(row["label"] is None and row["fired"] == [] for row in strict["rows"])  # no margin that wide
    bad = live.http.post("/classify", json={**body, "policy_options": {"nonsense": 1}})
    assert bad.status_code == 422 and "nonsense" in bad.json()["detail"]
    by_file = live.http.post("/classify", json={"labels": "tone, noise", "by": "file"}).json()["rows"]
    burst = next(row for row in by_file if row["path"].endswith("burst.wav"))
    windows = [
        row
        for row in live.http.post("/classify", json={"labels": "tone, noise"}).json()["rows"]
        if row["path"].endswith("burst.wav")
    ]
    peak = max(windows, key=lambda row: row["scores"][burst["label"]])
    assert burst["peak_window"] == peak["window_id"] and len(windows) == 2
    assert (burst["peak_start"], burst["peak_end"]) == (peak["start"], peak["end"])


def test_upload_with_every_option_gives_info_warnings_and_an_envelope(live, tmp_path):
    path = tmp_path / "take.wav"
    audio = burst_in_noise(30.0, 17.2, 4.0, seed=5)
    audio[: 48_000 * 11] = 0.0  # the first 11 s silent
    sf.write(path, audio, 48_000, subtype="PCM_16")
    form = {
        "labels": "tone, noise",
        "policy": "margin",
        "policy_options": json.dumps({"min_margin": 0.0}),
        "threshold": "0.0",
        "prompt_template": "a {} sound",
        "start": "1",
        "duration": "25",
        "envelope_points": "200",
    }
    with open(path, "rb") as fh:
        r = live.http.post("/classify-file", data=form, files={"file": ("take.wav", fh, "audio/wav")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["info"] == {
        "duration": 30.0,
        "sample_rate": 48000,
        "channels": 1,
        "codec": "wav/pcm_16",
        "decoder": "soundfile",
    }
    assert (doc["start"], doc["duration"]) == (1.0, 25.0)
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [(1.0, 11.0), (11.0, 21.0), (16.0, 26.0)]
    assert doc["texts"] == [["a tone sound"], ["a noise sound"]]
    assert doc["file"]["label"] == "tone" and doc["file"]["peak_window"] == 2  # (16, 26) holds the whole burst
    assert doc["file"]["extras"]["confidence"] == doc["windows"][doc["file"]["peak_window"]]["extras"]["confidence"]
    assert doc["warnings"] == ["silence: 1 of 3 windows are silent (below -60 dBFS): 0:01.0–0:11.0"]
    env = doc["envelope"]
    assert env["points"] == 200 and env["start"] == 1.0 and env["duration"] == pytest.approx(25.0)
    assert all(lo <= hi for lo, hi in zip(env["min"], env["max"]))
    assert max(env["max"][:80]) == 0.0 and max(env["max"][80:]) > 0.1  # silent until 11 s (80 of 200 points)
    png = base64.b64decode(env["mel_png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and env["mel_bands"] == 64 and env["mel_width"] > 0


def test_upload_of_raw_pcm_uses_the_layout_fields(live, tmp_path):
    audio = (burst_in_noise(4.0, 1.0, 0.5, rate=8000, seed=7) * 32767).astype("<i2")
    with_stereo = np.stack([audio, audio], axis=1).tobytes()
    r = live.http.post(
        "/classify-file",
        data={"labels": "tone, noise", "pcm_sample_rate": "8000", "pcm_channels": "2", "pcm_format": "s16le"},
        files={"file": ("call.pcm", with_stereo)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["info"]["sample_rate"] == 8000 and r.json()["info"]["channels"] == 2
    assert r.json()["info"]["duration"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("policy_options", "{not json", "policy_options must be a JSON object"),
        ("policy_options", "[1, 2]", "policy_options must be a JSON object"),
        ("threshold", "high", "threshold must be a number"),
        ("prompt_template", "no placeholder", "prompt_template must contain {}"),
        ("start", "100", "start 100 s is at or past the end"),
        ("duration", "-1", "duration"),
        ("policy_options", '{"min_margin": "wide"}', "min_margin must be a number"),
    ],
)
def test_bad_upload_options_are_422_naming_the_field(live, tmp_path, field, value, says):
    path = tmp_path / "a.wav"
    sf.write(path, burst_in_noise(3.0, 1.0, 0.5), 48_000)
    form = {"labels": "tone, noise", "policy": "margin", field: value}
    with open(path, "rb") as fh:
        r = live.http.post("/classify-file", data=form, files={"file": ("a.wav", fh)})
    assert r.status_code == 422
    assert says in json.dumps(r.json(), ensure_ascii=False)


def test_file_envelope_is_compact_cached_and_refuses_unknown_files(live):
    w = _window_of(live, "burst.wav", BURST_AT)
    r = live.http.get(f"/files/{w['file_id']}/envelope", params={"points": 100, "mel_width": 50})
    assert r.status_code == 200, r.text
    env = r.json()
    assert env["points"] == 100 and env["duration"] == pytest.approx(20.0) and env["sample_rate"] == 48000
    assert env["mel_width"] == 50 and env["mel_bands"] == 64
    loud = int(np.argmax(env["rms_db"]))
    assert abs(loud * 0.2 - BURST_AT) <= 0.4  # the burst is the loudest bucket (0.2 s each)
    again = live.http.get(f"/files/{w['file_id']}/envelope", params={"points": 100, "mel_width": 50}).json()
    assert again == env
    part = live.http.get(f"/files/{w['file_id']}/envelope", params={"points": 10, "start": 10, "end": 15}).json()
    assert part["start"] == 10.0 and part["duration"] == pytest.approx(5.0)
    assert live.http.get("/files/999999/envelope").status_code == 404
    assert live.http.get(f"/files/{w['file_id']}/envelope", params={"start": 5, "end": 2}).status_code == 422


def test_exports_carry_confidence_and_fired_labels(live, tmp_path):
    import csv

    import pyarrow.parquet as pq

    from search.core.writers import write_rows

    for suffix in (".csv", ".parquet"):
        header, rows = live.sx.iter_classify("tone, noise", policy="margin")
        assert write_rows(tmp_path / f"r{suffix}", header, rows) == 4
    header, rows = live.sx.iter_classify("tone, noise", policy="margin")
    expected = list(rows)
    got = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    assert [float(r["confidence"]) for r in got] == pytest.approx([r.extras["confidence"] for r in expected])
    assert [r["fired"] for r in got] == [";".join(r.fired) for r in expected]
    table = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [t["fired"] for t in table] == [r.fired for r in expected]
    assert [t["confidence"] for t in table] == pytest.approx([r.extras["confidence"] for r in expected])


def test_classify_audio_returns_label_scores_and_the_detailed_result(band, tmp_path):
    from search.api import classify_audio
    from search.core.results import FileClassification

    path = tmp_path / "b.wav"
    sf.write(path, burst_in_noise(12.0, 4.0, 2.0, seed=9), 48_000)
    scores = classify_audio(path, "tone, noise", encoder=band)
    assert set(scores) == {"tone", "noise"} and abs(sum(scores.values()) - 1.0) > 0  # file row: each label's max
    detailed = classify_audio(
        path,
        ["tone", "noise"],
        encoder=band,
        detailed=True,
        start=2.0,
        duration=5.0,
        policy="multilabel",
        policy_options={"center": 0.5},
    )
    assert isinstance(detailed, FileClassification)
    assert [(w.start, w.end) for w in detailed.windows] == [(2.0, 7.0)]
    assert detailed.file.scores == scores or detailed.file.label in ("tone", "noise", None)


@pytest.mark.slow
def test_cli_classify_file_segment_template_and_search_localize(tmp_path, run_cli):
    path = tmp_path / "archive" / "c.wav"
    path.parent.mkdir()
    sf.write(path, burst_in_noise(24.0, 5.0, 1.0, seed=4), 48_000, subtype="PCM_16")
    doc = run_cli(
        "classify-file",
        path,
        "--labels",
        "tone, noise",
        "--start",
        "3",
        "--duration",
        "12",
        "--prompt-template",
        "a {} sound",
        "--policy",
        "margin",
        "--policy-option",
        "min_margin=0",
        "--json",
    ).json
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [(3.0, 13.0), (5.0, 15.0)]
    assert doc["texts"] == [["a tone sound"], ["a noise sound"]] and doc["info"]["sample_rate"] == 48000
    bad = run_cli("classify-file", path, "--labels", "tone", "--prompt-template", "nothing", check=False)
    assert (
        bad.returncode != 0
        and bad.stderr.startswith("error: prompt_template must contain {}")
        and bad.stderr.count("\n") == 1
    )
    run_cli("index", path.parent, "--index", tmp_path / "index")
    found = run_cli("search", "a tone", "--index", tmp_path / "index", "-k", "1", "--localize", "--json").json
    where = found["results"][0]["hits"][0]["localized"]
    hit = found["results"][0]["hits"][0]
    assert hit["start"] <= where["start"] < where["end"] <= hit["end"] and len(where["steps"]) == 37
    table = run_cli("search", "a tone", "--index", tmp_path / "index", "-k", "1", "--localize")
    assert "where" in table.stdout
