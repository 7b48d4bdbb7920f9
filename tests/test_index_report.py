"""One index report, serialised once: `soundsift index --json`, the runs table and HTTP jobs carry the same document."""

from __future__ import annotations

import json

import numpy as np
import pytest
from api_server import LiveServer, api_settings, build_index, write_archive

from indexer.report import IndexReport

WARNING = "dropped a partial final frame (1 of 2 bytes)"


def odd_archive(root):
    root.mkdir(parents=True)
    samples = (np.sin(np.arange(16_000 * 3) / 7) * 10_000).astype("<i2").tobytes()
    (root / "odd.pcm").write_bytes(samples + b"\x01")  # a partial last s16le frame
    (root / "notes.txt").write_text("not audio\n")
    return root


def test_the_report_document_keeps_every_field_and_rounds_once():
    report = IndexReport(run_id=3, files_indexed=2, windows=10, timings={"total_s": 4.123456789})
    doc = report.document()
    assert list(doc) == [
        "run_id",
        "files_indexed",
        "files_failed",
        "files_unchanged",
        "files_skipped",
        "files_added",
        "files_updated",
        "files_removed",
        "files_renamed",
        "files_reused",
        "windows",
        "windows_removed",
        "runs_interrupted",
        "errors",
        "warnings",
        "skipped",
        "timings",
        "windows_per_s",
    ]
    assert doc["timings"] == {"total_s": 4.1235} and doc["windows_per_s"] == round(10 / 4.123456789, 3)
    assert IndexReport.from_document(json.loads(json.dumps(doc)), 3).document() == doc


@pytest.mark.slow  # a CLI run and a server, each loading torch
def test_http_jobs_the_cli_and_the_runs_table_report_warnings_alike(tmp_path, tiny_model_dir, run_cli):
    import duckdb

    from search.http.app import create_app

    odd = odd_archive(tmp_path / "odd")
    cli = run_cli("index", odd, "--index", tmp_path / "cli-index", "--json").json
    assert cli["warnings"] == [{"path": str(odd / "odd.pcm"), "warning": WARNING}]
    assert cli["skipped"] == [
        {
            "path": str(odd / "notes.txt"),
            "reason": "not a known audio format (extension .txt: no "
            "loaded decoder declares it and its first bytes are no known container)",
        }
    ]
    with duckdb.connect(str(tmp_path / "cli-index" / "soundsift.duckdb"), read_only=True) as con:
        (stored,) = con.execute("SELECT summary FROM runs").fetchone()
    assert json.loads(stored) == cli  # the runs table keeps the very document --json printed

    settings = api_settings(tmp_path / "index", tiny_model_dir, allow_roots=[str(odd)])
    build_index(settings, [write_archive(tmp_path / "archive", [("a.wav", "tone", 3.0, 1)])])
    with LiveServer(create_app(settings)) as server, server.client() as http:
        job = http.post("/jobs/index", json={"paths": [str(odd)]}).json()
        done = server.app.state.jobs.wait(job["id"], timeout_s=120)
        assert done.status == "completed"
        got = http.get(f"/jobs/{job['id']}").json()["report"]
        assert got["warnings"] == [{"path": str(odd / "odd.pcm"), "warning": WARNING}]
        assert got["errors"] == [] and got["files_indexed"] == 1 and got["files_skipped"] == 1
        assert set(got) == set(cli)
        history = http.get(f"/jobs/run-{got['run_id']}").json()
        assert history["report"]["warnings"] == got["warnings"] and history["report"]["skipped"] == got["skipped"]
