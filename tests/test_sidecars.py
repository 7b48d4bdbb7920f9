"""Sidecars and special files: a FIFO, a link to /dev/zero or a huge sidecar fails its one file with a reason,
a FIFO named like audio is skipped with a reason, and the run (CLI or server job) finishes promptly."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from api_server import LiveServer, api_settings, build_index, write_archive

from indexer.formats import ScanFormats
from indexer.scan import content_hash, scan_paths
from plugins.manager import build_plugin_manager
from plugins.safe_files import FileTooLarge, NotRegularFile, open_regular, read_limited

pytestmark = pytest.mark.timeout(180)  # a regression here is a hang: fail it instead of stalling the suite

FIFO = "not a regular file: a FIFO (named pipe)"


def pcm(path, seconds: float = 2.0, rate: int = 16_000):
    t = np.arange(int(seconds * rate)) / rate
    path.write_bytes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return path


def hostile_archive(root, write_sound):
    """good.wav and good.pcm (with a good sidecar), and each hostile case next to them."""
    root.mkdir(parents=True, exist_ok=True)
    write_sound(root / "good.wav", "tone", 3.0)
    pcm(root / "good.pcm")
    (root / "good.pcm.toml").write_text("sample_rate = 16000\n")
    pcm(root / "fifo.pcm")
    os.mkfifo(root / "fifo.pcm.toml")
    pcm(root / "zero.pcm")
    os.symlink("/dev/zero", root / "zero.pcm.json")
    pcm(root / "huge.pcm")
    (root / "huge.pcm.toml").write_bytes(b"# " + b"x" * (10 * 1024 * 1024) + b"\nsample_rate = 16000\n")
    os.mkfifo(root / "pipe.wav")
    write_sound(root / "tagged.wav", "noise", 3.0)
    os.mkfifo(root / "tagged.wav.toml")  # sidecars of any file are hashed: never opened when special
    return root


def test_safe_reads_refuse_special_and_huge_files_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/zero", tmp_path / "zero")
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "ok").write_bytes(b"sample_rate = 8000\n")
    t0 = time.monotonic()
    with pytest.raises(NotRegularFile, match="a FIFO"):
        read_limited(tmp_path / "fifo")
    with pytest.raises(NotRegularFile, match="a character device"):
        read_limited(tmp_path / "zero")
    with pytest.raises(NotRegularFile, match="a directory"):
        open_regular(tmp_path)
    with pytest.raises(FileTooLarge, match="larger than 64 KiB"):
        read_limited(tmp_path / "big")
    assert read_limited(tmp_path / "ok") == b"sample_rate = 8000\n"
    assert time.monotonic() - t0 < 2


def test_scan_skips_special_files_and_hashing_never_opens_them(tmp_path, write_sound):
    root = hostile_archive(tmp_path / "a", write_sound)
    os.symlink("/dev/zero", root / "zero.wav")
    formats = ScanFormats.of(build_plugin_manager().decoders)
    scan = scan_paths([root], formats=formats)
    assert sorted(os.path.basename(f.path) for f in scan.files) == [
        "fifo.pcm",
        "good.pcm",
        "good.wav",
        "huge.pcm",
        "tagged.wav",
        "zero.pcm",
    ]
    reasons = {os.path.basename(p): why for p, why in scan.skipped}
    assert reasons["pipe.wav"] == FIFO
    assert reasons["zero.wav"] == "symlink out of the indexed roots"
    t0 = time.monotonic()
    hashes = {os.path.basename(f.path): content_hash(f.path, f.sidecars) for f in scan.files}
    assert time.monotonic() - t0 < 5
    assert len(set(hashes.values())) == len(hashes)
    # a FIFO given directly is skipped too, not opened
    assert scan_paths([root / "pipe.wav"], formats=formats).skipped == [(str(root / "pipe.wav"), FIFO)]


@pytest.mark.slow  # two CLI runs
def test_index_run_records_each_hostile_sidecar_and_finishes(tmp_path, write_sound, run_cli):
    root = hostile_archive(tmp_path / "archive", write_sound)
    t0 = time.monotonic()
    report = run_cli("index", root, "--index", tmp_path / "index", "--json", timeout=150).json
    elapsed = time.monotonic() - t0
    errors = {os.path.basename(e["path"]): e["error"] for e in report["errors"]}
    assert set(errors) == {"fifo.pcm", "zero.pcm", "huge.pcm"}
    assert errors["fifo.pcm"] == f"sidecar fifo.pcm.toml refused: {FIFO}"
    assert errors["zero.pcm"] == "sidecar zero.pcm.json refused: not a regular file: a character device"
    assert errors["huge.pcm"].startswith("sidecar huge.pcm.toml refused: larger than 64 KiB")
    assert report["files_indexed"] == 3  # good.wav, good.pcm, tagged.wav
    skipped = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
    assert skipped["pipe.wav"] == skipped["fifo.pcm.toml"] == FIFO  # listed, never opened
    assert skipped["good.pcm.toml"] == "sidecar of good.pcm"
    assert elapsed < 120, elapsed
    assert run_cli("check", "--index", tmp_path / "index", "--json").json["ok"] is True

    # the sidecar fixed: the file counts as changed and indexes
    (root / "fifo.pcm.toml").unlink()
    (root / "fifo.pcm.toml").write_text("sample_rate = 16000\n")
    again = run_cli("index", root, "--index", tmp_path / "index", "--json", timeout=150).json
    assert again["files_indexed"] == 1 and again["errors"] == []  # the others failed before and did not change


def test_server_job_with_a_fifo_sidecar_completes_and_later_jobs_run(tmp_path, tiny_model_dir, write_sound):
    from search.http.app import create_app

    archive = write_archive(tmp_path / "archive", [("a/tone.wav", "tone", 3.0, 1)])
    settings = api_settings(tmp_path / "index", tiny_model_dir)
    build_index(settings, [archive])
    pcm(archive / "a" / "fifo.pcm")
    os.mkfifo(archive / "a" / "fifo.pcm.toml")
    os.mkfifo(archive / "a" / "pipe.wav")
    with LiveServer(create_app(settings)) as server, server.client() as http:
        jobs = server.app.state.jobs
        first = http.post("/jobs/index", json={"paths": [str(archive)]})
        assert first.status_code == 202, first.text
        done = jobs.wait(first.json()["id"], timeout_s=90)
        assert done.status == "completed"
        report = http.get(f"/jobs/{done.id}").json()["report"]
        assert [e["error"] for e in report["errors"]] == [f"sidecar fifo.pcm.toml refused: {FIFO}"]
        write_sound(archive / "a" / "later.wav", "noise", 2.0)
        second = http.post("/jobs/index", json={"paths": [str(archive)]})
        assert jobs.wait(second.json()["id"], timeout_s=90).status == "completed"
        names = {f["path"].rsplit("/", 1)[-1]: f["status"] for f in http.get("/files").json()["files"]}
        assert names.get("later.wav") == "indexed"
