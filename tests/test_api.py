"""The HTTP API on a real uvicorn server: results equal the Python API's, limits, auth, uploads, audio, safety."""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
import soundfile as sf
from api_server import LiveServer, api_settings, build_index, write_archive

KEY = "s3cret-key-0123"


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    from search.http.app import create_app

    root = tmp_path_factory.mktemp("api")
    archive = write_archive(root / "archive")
    outside = root / "outside.wav"
    write_archive(root / "x", [("outside.wav", "tone", 3.0, 9)])
    (root / "x" / "outside.wav").rename(outside)
    settings = api_settings(
        root / "index", tiny_model_dir, api_key=KEY, max_upload_mb=1.0, allow_roots=[str(root / "extra")]
    )
    build_index(settings, [archive])
    with LiveServer(create_app(settings)) as server:
        server.archive, server.outside = archive, outside
        with server.client(headers={"X-API-Key": KEY}) as client:
            server.http = client
            yield server


def test_health_is_open_and_everything_else_needs_the_key(live):
    with live.client() as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
        for method, path in [
            ("get", "/stats"),
            ("get", "/files"),
            ("post", "/search"),
            ("get", "/jobs"),
            ("get", "/windows/1/audio"),
            ("get", "/openapi.json"),
            ("get", "/docs"),
        ]:
            response = getattr(anonymous, method)(path)
            assert response.status_code == 401, path
            assert "API key" in response.json()["detail"]
        assert anonymous.get("/stats", headers={"X-API-Key": KEY + "x"}).status_code == 401
        assert anonymous.get("/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert anonymous.get("/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert anonymous.get("/stats", headers={"X-API-Key": KEY}).status_code == 200
        page = anonymous.get("/")  # the page shell has no data; its scripts send the key
        assert page.status_code == 200 and "soundsift" in page.text
        assert anonymous.get("/static/app.js").status_code == 200


def test_cors_is_off_unless_configured(live):
    response = live.http.options(
        "/search", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_stats(live):
    stats = live.http.get("/stats").json()
    assert stats["files"]["indexed"] == 4
    assert stats["windows"] == 3 + 2 + 1 + 2  # 25 s: [0,10][10,20][15,25]; 12 s: [0,10][2,12]; 6 s: one; 14 s: two
    assert "softmax" in stats["policies"]


def test_search_equals_the_python_api(live):
    body = {"queries": ["a pure tone", "white noise"], "k": 5}
    got = live.http.post("/search", json=body).json()
    expected = live.app.state.sound_index.search(body["queries"], k=5).model_dump(mode="json")
    assert got == expected
    assert [r["query"] for r in got["results"]] == ["a pure tone", "white noise"]
    assert got["results"][0]["texts"] == ["This is a sound of a pure tone."]
    assert len(got["results"][0]["hits"]) == 5
    only = live.http.post("/search", json={**body, "filters": {"path_glob": "*/line2/*"}}).json()
    assert {h["path"].split("/")[-2] for h in only["results"][0]["hits"]} == {"line2"}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"queries": []}, "at least 1"),
        ({"queries": ["q"] * 33}, "at most 32"),
        ({"queries": ["x" * 1001]}, "at most 1000"),
        ({"queries": ["tone"], "k": 0}, "greater than or equal to 1"),
        ({"queries": ["tone"], "k": 1001}, "less than or equal to 1000"),
        ({"queries": ["   "]}, "empty query"),
        ({"queries": ["tone"], "filters": {"tags": {"bad name'": True}}}, "tag names"),
    ],
)
def test_search_limits_are_422_with_a_message(live, body, message):
    response = live.http.post("/search", json=body)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_classify_pages_and_ndjson_cover_every_row_once(live):
    full = live.app.state.sound_index.classify("tone, noise").model_dump(mode="json")
    rows, cursor, pages = [], None, 0
    while True:
        page = live.http.post("/classify", json={"labels": "tone, noise", "limit": 3, "cursor": cursor}).json()
        rows += page["rows"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and rows == full["rows"]
    assert page["texts"] == [["This is a sound of tone."], ["This is a sound of noise."]]

    with live.http.stream(
        "POST", "/classify", json={"labels": ["tone", "noise"], "limit": 1}, headers={"Accept": "application/x-ndjson"}
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [line for line in response.iter_lines() if line]
    import json

    header, streamed = json.loads(lines[0])["header"], [json.loads(line) for line in lines[1:]]
    assert header["labels"] == ["tone", "noise"] and streamed == full["rows"]

    by_file = live.http.post("/classify", json={"labels": "tone, noise", "by": "file", "limit": 2}).json()
    rest = live.http.post(
        "/classify", json={"labels": "tone, noise", "by": "file", "cursor": by_file["next_cursor"]}
    ).json()
    assert [r["path"] for r in by_file["rows"] + rest["rows"]] == [
        r.path for r in live.app.state.sound_index.classify("tone, noise", by="file").rows
    ]

    top = live.http.post("/classify", json={"labels": "tone, noise", "top": 4, "limit": 3}).json()
    top_rest = live.http.post(
        "/classify", json={"labels": "tone, noise", "top": 4, "limit": 3, "cursor": top["next_cursor"]}
    ).json()
    assert len(top["rows"]) == 3 and len(top_rest["rows"]) == 1 and top_rest["next_cursor"] is None


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"labels": "tone", "policy": "nope"}, 422, "no scoring policy named 'nope'"),
        ({"labels": ",".join(f"l{i}" for i in range(65))}, 422, "at most 64 labels"),
        ({"labels": "tone", "cursor": "not-a-cursor"}, 422, "cursor"),
        ({"labels": " , "}, 422, "empty label list"),
    ],
)
def test_classify_bad_input(live, body, status, message):
    response = live.http.post("/classify", json=body)
    assert response.status_code == status and message in str(response.json()["detail"])


def test_classify_file_upload_is_classified_and_deleted(live, write_sound, tmp_path):
    path = write_sound(tmp_path / "clip.wav", "tone", 8.0)
    upload_dir = live.app.state.upload_dir
    with open(path, "rb") as fh:
        response = live.http.post(
            "/classify-file", files={"file": ("clip 测试.wav", fh, "audio/wav")}, data={"labels": "tone, noise"}
        )
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["path"] == "clip 测试.wav" and len(doc["windows"]) == 1 and doc["file"]["label"] in ("tone", "noise")
    assert list(upload_dir.iterdir()) == []

    bad = live.http.post(
        "/classify-file", files={"file": ("x.wav", b"RIFF" + b"\0" * 4000, "audio/wav")}, data={"labels": "tone"}
    )
    assert bad.status_code == 422 and "cannot decode" in bad.json()["detail"] and "x.wav" in bad.json()["detail"]
    assert list(upload_dir.iterdir()) == []


def test_upload_limit_is_413_for_declared_and_chunked_bodies(live):
    big = b"\0" * (1024 * 1024 + 10)
    declared = live.http.post("/classify-file", files={"file": ("big.wav", big, "audio/wav")}, data={"labels": "tone"})
    assert declared.status_code == 413 and "limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the server counts while it streams
        boundary = b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n'
        yield boundary
        for _ in range(40):
            yield b"\0" * 65536

    chunked = live.http.post(
        "/classify-file", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert chunked.status_code == 413
    assert list(live.app.state.upload_dir.iterdir()) == []
    too_big_json = live.http.post(
        "/search", content=b"[" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert too_big_json.status_code == 413


def test_files_and_file_view(live):
    files = live.http.get("/files").json()
    assert files["total"] == 4
    names = [f["path"].split("/")[-1] for f in files["files"]]
    assert "轴承异响.wav" in names
    tone = next(f for f in files["files"] if f["path"].endswith("tone-a.wav"))
    assert tone["window_count"] == 3 and tone["duration"] == pytest.approx(25.0)

    detail = live.http.get(f"/files/{tone['id']}", params={"query": "a pure tone"}).json()
    assert [(w["start"], w["end"]) for w in detail["windows"]] == [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]
    assert detail["query_texts"] == ["This is a sound of a pure tone."]
    assert all(-1.0 <= w["score"] <= 1.0 for w in detail["windows"])
    assert {"rms_db", "peak", "silence", "clipping"} <= set(detail["windows"][0]["tags"])
    hits = live.app.state.sound_index.search(["a pure tone"], k=100).results[0].hits
    by_id = {h.window_id: h.score for h in hits}
    for w in detail["windows"]:
        assert w["score"] == pytest.approx(by_id[w["id"]], abs=1e-5)

    labelled = live.http.get(f"/files/{tone['id']}", params={"labels": "tone, noise"}).json()
    assert labelled["windows"] and all(
        sum(w["scores"].values()) == pytest.approx(1.0, abs=1e-5) for w in labelled["windows"]
    )
    assert live.http.get("/files/999999").status_code == 404


def test_window_audio_is_the_window_cut_from_the_archive(live):
    tone = next(f for f in live.http.get("/files").json()["files"] if f["path"].endswith("tone-a.wav"))
    windows = live.http.get(f"/files/{tone['id']}").json()["windows"]
    second = windows[1]
    wav = live.http.get(f"/windows/{second['id']}/audio")
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    source, source_rate = sf.read(tone["path"], dtype="float32")
    assert rate == source_rate and len(audio) == 10 * rate
    np.testing.assert_allclose(audio, source[10 * rate : 20 * rate], atol=1e-4)

    with_margin = live.http.get(f"/windows/{second['id']}/audio", params={"margin": 2, "format": "ogg"})
    assert with_margin.headers["content-type"] == "audio/ogg"
    ogg, ogg_rate = sf.read(io.BytesIO(with_margin.content))
    assert len(ogg) / ogg_rate == pytest.approx(14.0, abs=0.05)
    assert float(with_margin.headers["x-clip-start"]) == pytest.approx(8.0)
    last = live.http.get(f"/windows/{windows[2]['id']}/audio", params={"margin": 30})  # clamped to the file
    assert float(last.headers["x-clip-end"]) == pytest.approx(25.0, abs=1e-3)
    assert live.http.get(f"/windows/{second['id']}/audio", params={"margin": 31}).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/windows/../../etc/passwd/audio",
        "/windows/..%2F..%2Fetc%2Fpasswd/audio",
        "/windows/%2Fetc%2Fpasswd/audio",
        "/windows/%252e%252e%252fetc/audio",
        "/windows/-1/audio",
        "/windows/1e3/audio",
        "/windows/999999/audio",
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2Fetc%2Fpasswd",
        "/static/..%2F..%2Fapp.py",
        "/static/../app.py",
    ],
)
def test_traversal_and_unknown_ids_are_404(live, path):
    response = live.http.send(live.http.build_request("GET", httpx.URL(live.url + path)))
    assert response.status_code == 404, response.text


def test_a_file_swapped_for_a_symlink_out_of_the_archive_is_not_served(live, tmp_path):
    files = live.http.get("/files").json()["files"]
    target = next(f for f in files if f["path"].endswith("noise-b.flac"))
    window = live.http.get(f"/files/{target['id']}").json()["windows"][0]["id"]
    assert live.http.get(f"/windows/{window}/audio").status_code == 200
    saved = tmp_path / "saved.flac"
    os.rename(target["path"], saved)
    try:
        os.symlink(live.outside, target["path"])
        response = live.http.get(f"/windows/{window}/audio")
        assert response.status_code == 404 and "no longer in the archive" in response.json()["detail"]
    finally:
        os.unlink(target["path"])
        os.rename(saved, target["path"])
    assert live.http.get(f"/windows/{window}/audio").status_code == 200


def test_index_job_with_progress_and_history(live, write_sound):
    extra = live.archive.parent / "extra"
    write_sound(extra / "new.wav", "noise", 21.0)
    write_sound(extra / "new2.wav", "tone", 4.0)
    bad = live.http.post("/jobs/index", json={"paths": [str(extra / "missing")]})
    assert bad.status_code == 404 and "no such file" in bad.json()["detail"]
    job = live.http.post("/jobs/index", json={"paths": [str(extra)]})
    assert job.status_code == 202 and job.json()["status"] in ("queued", "running")
    done = live.app.state.jobs.wait(job.json()["id"], timeout_s=120)
    assert done.status == "completed"
    got = live.http.get(f"/jobs/{done.id}").json()
    assert got["progress"]["files_done"] == 2 and got["progress"]["files_total"] == 2
    assert got["progress"]["windows"] == 4 and got["progress"]["eta_s"] == 0
    assert got["report"]["files_indexed"] == 2 and got["report"]["windows"] == 4
    listed = live.http.get("/jobs").json()
    assert listed[0]["id"] == done.id
    assert any(j["trigger"] == "history" and j["id"] == "run-1" for j in listed)
    assert live.http.get("/jobs/run-1").json()["report"]["files_indexed"] == 4
    assert live.http.get("/jobs/nope").status_code == 404
    assert live.http.get("/stats").json()["files"]["indexed"] == 6
