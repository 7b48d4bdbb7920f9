"""The API's contract on a real server: upload caps, the one error model, repeated form fields, allowed job roots."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import soundfile as sf
from api_server import LiveServer, api_settings, build_index, write_archive

KEY = "contract-key-0123"


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    from search.http.app import create_app

    root = tmp_path_factory.mktemp("contract")
    archive = write_archive(root / "archive", [("a.wav", "tone", 12.0, 1), ("b.flac", "noise", 4.0, 2)])
    (root / "allowed").mkdir()
    (root / "secret").mkdir()
    (root / "secret" / "s.wav").write_bytes((archive / "a.wav").read_bytes())
    settings = api_settings(
        root / "index",
        tiny_model_dir,
        max_upload_mb=8.0,
        max_upload_duration_s=60.0,
        allow_roots=[str(root / "allowed")],
    )
    build_index(settings, [archive])
    with LiveServer(create_app(settings)) as server:
        server.root, server.archive = root, archive
        with server.client() as client:
            server.http = client
            yield server


def _flac_of_silence(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with sf.SoundFile(out, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as fh:
        block = np.zeros(rate * 600, dtype=np.int16)
        left = int(seconds * rate)
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)
    return out.getvalue()


def _wav(seconds: float, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(out, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return out.getvalue()


def test_two_hours_of_flac_silence_is_refused_at_once_with_413(live):
    data = _flac_of_silence(2 * 3600)
    assert len(data) < 1_000_000
    t = time.monotonic()
    response = live.http.post(
        "/classify-file", data={"labels": "hum"}, files={"file": ("silence.flac", data, "audio/flac")}
    )
    elapsed = time.monotonic() - t
    assert response.status_code == 413, response.text
    assert "7200 s of audio, over the limit of 60 s per upload" in response.json()["detail"]
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert os.listdir(live.app.state.upload_dir) == []


def test_audio_past_the_cap_without_a_header_duration_is_stopped_while_decoding(live, tmp_path):
    # A headerless PCM file: its duration is known only by decoding it; the cap stops the decode.
    raw = np.zeros(16000 * 120, dtype=np.int16).tobytes()  # 120 s at the pcm plugin's 16 kHz
    response = live.http.post(
        "/classify-file", data={"labels": "hum"}, files={"file": ("long.pcm", raw, "application/octet-stream")}
    )
    assert response.status_code == 413, response.text
    assert "over the limit of 60 s per upload" in response.json()["detail"]


def test_repeated_labels_fields_are_joined(live):
    response = live.http.post(
        "/classify-file", data={"labels": ["a dog", "a cat, rain"]}, files={"file": ("t.wav", _wav(3.0), "audio/wav")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["a dog", "a cat", "rain"]
    twice = live.http.post(
        "/classify-file",
        data={"labels": "a dog", "policy": ["softmax", "sigmoid"]},
        files={"file": ("t.wav", _wav(3.0), "audio/wav")},
    )
    assert twice.status_code == 422 and twice.json()["detail"] == "give `policy` once"


def test_the_upload_form_schema_says_what_the_server_reads(live):
    doc = live.http.get("/openapi.json").json()
    form = doc["paths"]["/classify-file"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = doc["components"]["schemas"][form["schema"]["$ref"].rpartition("/")[2]]["properties"]
    assert fields["file"]["minLength"] == 1  # an empty upload is no audio
    # optional numbers are left out, never sent as the text "null"
    assert fields["pcm_channels"]["type"] == "integer" and "anyOf" not in fields["pcm_channels"]
    assert fields["start"]["type"] == "number" and "anyOf" not in fields["start"]
    # JSON parts: described as what they hold
    assert form["encoding"] == {
        "policy_options": {"contentType": "application/json"},
        "threshold": {"contentType": "application/json"},
    }
    assert fields["policy_options"]["type"] == "object"
    assert [b["type"] for b in fields["threshold"]["anyOf"]] == ["number", "object", "array"]
    model = doc["components"]["schemas"]["TagJobRequest"]["properties"]["model"]
    assert model["pattern"] == "^[^\\x00]+$"
    labels = doc["components"]["schemas"]["ClassifyRequest"]["properties"]["labels"]["anyOf"]
    assert [b.get("minItems") for b in labels if b["type"] == "array"] == [1]


def test_the_server_refuses_what_the_schema_refuses_and_ignores_extra_fields(live):
    nul = live.http.post("/jobs/tag", json={"model": "a\x00b"})
    assert nul.status_code == 422 and "a model name cannot contain NUL" in nul.json()["detail"]
    empty = live.http.post("/classify-file", data={"labels": "a dog"}, files={"file": ("t.wav", b"", "audio/wav")})
    assert empty.status_code == 422 and empty.json()["detail"] == "the upload is empty"
    extra = live.http.post(
        "/classify-file",
        data={"labels": "a dog", "note": ["x", "y"], "threshold": "[0.5]"},
        files={"file": ("t.wav", _wav(3.0), "audio/wav")},
    )
    assert extra.status_code == 200, extra.text  # a field the route does not read is ignored, repeated or not


def test_every_error_has_the_one_error_model(live):
    invalid = live.http.post("/search", json={"queries": [], "k": 0})
    assert invalid.status_code == 422
    body = invalid.json()
    assert isinstance(body["detail"], str) and "queries" in body["detail"] and "k:" in body["detail"]
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "queries"), ("body", "k")}
    domain = live.http.post("/classify", json={"labels": "a,b", "policy": "nope"})
    assert domain.status_code == 422 and isinstance(domain.json()["detail"], str)
    missing = live.http.get("/files/999999")
    assert missing.status_code == 404 and set(missing.json()) == {"detail"}


def test_openapi_without_a_key_advertises_no_security_and_documents_errors(live):
    doc = live.http.get("/openapi.json").json()
    assert "securitySchemes" not in doc["components"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert all("security" not in op for op in ops.values())
    assert all("401" not in op["responses"] for op in ops.values())
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for key, codes in {
        ("GET", "/files/{file_id}"): ["404", "422"],
        ("GET", "/windows/{window_id}/audio"): ["404", "422"],
        ("GET", "/jobs/{job_id}"): ["404", "422"],
        ("POST", "/classify-file"): ["413", "422"],
        ("POST", "/jobs/index"): ["403", "413", "422", "429"],
        ("POST", "/search"): ["413", "422"],
    }.items():
        for code in codes:
            assert ops[key]["responses"][code]["content"]["application/json"]["schema"] == error_ref, (key, code)


def test_openapi_with_a_key_advertises_it_and_401(tmp_path, tiny_model_dir):
    from search.http.app import create_app

    settings = api_settings(tmp_path / "index", tiny_model_dir, api_key=KEY)
    with LiveServer(create_app(settings)) as server, server.client(headers={"X-API-Key": KEY}) as client:
        doc = client.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    search = doc["paths"]["/search"]["post"]
    assert search["security"] and "401" in search["responses"]
    health = doc["paths"]["/health"]["get"]
    assert "security" not in health and "401" not in health["responses"]


def test_jobs_are_confined_to_the_allowed_roots(live):
    root = live.root
    outside = [
        str(root / "secret"),
        str(root / "secret" / "s.wav"),
        str(root / "no-such-dir"),
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
        "/nonexistent/x.wav",
        "../secret",
        "../../../../etc",
    ]
    answers = []
    for path in outside:
        response = live.http.post("/jobs/index", json={"paths": [path]})
        answers.append((response.status_code, response.json()["detail"].replace(repr(path), "PATH")))
    assert len(set(answers)) == 1 and answers[0][0] == 403, answers
    assert "--allow-root" in answers[0][1]
    os.mkfifo(root / "allowed" / "pipe.wav")
    fifo = live.http.post("/jobs/index", json={"paths": [str(root / "allowed" / "pipe.wav")]})
    assert fifo.status_code == 422 and fifo.json()["detail"].startswith("not a regular file or a directory")
    # Relative paths are relative to the allowed roots (the index's root included), not the server's directory.
    relative = live.http.post("/jobs/index", json={"paths": ["a.wav"]})
    assert relative.status_code == 202, relative.text
    assert relative.json()["paths"] == [str(live.archive / "a.wav")]
    assert live.app.state.jobs.wait(relative.json()["id"], 120).status == "completed"


def test_hard_links_are_left_out_of_server_jobs(live):
    allowed = live.root / "allowed" / "links"
    allowed.mkdir()
    os.link(live.root / "secret" / "s.wav", allowed / "linked.wav")
    (allowed / "own.wav").write_bytes(_wav(2.0))
    job = live.http.post("/jobs/index", json={"paths": [str(allowed)]}).json()
    live.app.state.jobs.wait(job["id"], 120)
    done = live.http.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "completed" and done["report"]["files_indexed"] == 1
    assert done["report"]["files_skipped"] == 1
    assert [s["path"] for s in done["report"]["skipped"]] == [str(allowed / "linked.wav")]
    assert "hard link (2 links)" in done["report"]["skipped"][0]["reason"]
    paths = [f["path"] for f in live.http.get("/files", params={"limit": 1000}).json()["files"]]
    assert str(allowed / "own.wav") in paths and str(allowed / "linked.wav") not in paths
