"""Jobs that survive: de-duplicated and capped queue, kill -9 mid-job, restart (interrupted, queue resumed); stable file ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from api_server import write_archive
from conftest import REPO, cli_env


def _serve(index, env, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("soundsift: serving "):
            url = line.split()[2]
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
            return proc, url, lines
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {''.join(lines)}")


def _wait_for(predicate, timeout_s=120.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_queue_dedup_cap_kill_and_resume(tmp_path, tiny_model_dir, run_cli):
    base = write_archive(tmp_path / "roots" / "base", [("a.wav", "tone", 5.0, 1)])
    big = write_archive(tmp_path / "roots" / "big", [(f"{i}.wav", "noise", 12.0, 10 + i) for i in range(4)])
    later = [write_archive(tmp_path / "roots" / f"later{n}", [("x.wav", "tone", 4.0, 30 + n)]) for n in range(3)]
    index = tmp_path / "index"
    run_cli("index", base, "--index", index)
    env = cli_env(tiny_model_dir)
    env.update(SOUNDSIFT_COMMIT_EVERY_FILES="1", SOUNDSIFT_MAX_QUEUED_JOBS="2", SOUNDSIFT_TEST_PAUSE_AT="commit:2")
    server, url, lines = _serve(index, env, "--allow-root", str(tmp_path / "roots"))
    try:
        running = httpx.post(f"{url}/jobs/index", json={"paths": [str(big)]}).json()
        _wait_for(lambda: any(line.startswith("soundsift-paused-at commit") for line in lines), what="the pause")
        assert httpx.get(f"{url}/jobs/{running['id']}").json()["status"] == "running"
        first = httpx.post(f"{url}/jobs/index", json={"paths": [str(later[0])]})
        again = httpx.post(f"{url}/jobs/index", json={"paths": [str(later[0])]})
        assert first.status_code == again.status_code == 202 and again.json()["id"] == first.json()["id"]
        second = httpx.post(f"{url}/jobs/index", json={"paths": [str(later[1]), str(later[1])], "retry_failed": False})
        assert second.status_code == 202 and second.json()["paths"] == [str(later[1])]
        full = httpx.post(f"{url}/jobs/index", json={"paths": [str(later[2])]})
        assert full.status_code == 429 and "the job queue is full (2 jobs waiting)" in full.json()["detail"]
        listed = httpx.get(f"{url}/jobs").json()
        ids = [j["id"] for j in listed]
        assert len(ids) == len(set(ids))
        assert ids[:3] == [second.json()["id"], first.json()["id"], running["id"]]
        live_run = next(j for j in listed if j["id"] == running["id"])["run_id"]
        assert f"run-{live_run}" not in ids  # the live job is listed once, as itself
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(30)

    env.pop("SOUNDSIFT_TEST_PAUSE_AT")
    server, url, lines = _serve(index, env, "--allow-root", str(tmp_path / "roots"))
    try:
        killed = httpx.get(f"{url}/jobs/{running['id']}").json()
        assert killed["status"] == "interrupted" and "submit it again" in killed["status_note"]
        for job in (first.json(), second.json()):
            done = _wait_for(
                lambda job_id=job["id"]: (lambda j: j if j["status"] not in ("queued", "running") else None)(
                    httpx.get(f"{url}/jobs/{job_id}").json()
                ),
                what=f"job {job['id']}",
            )
            assert done["status"] == "completed" and done["report"]["files_indexed"] == 1
        listed = httpx.get(f"{url}/jobs", params={"limit": 100}).json()
        ids = [j["id"] for j in listed]
        assert len(ids) == len(set(ids))
        assert f"run-{killed['run_id']}" not in ids
        assert all(j["status"] != "running" for j in listed)
        # The interrupted job is submitted again and finishes what the kill left.
        retry = httpx.post(f"{url}/jobs/index", json={"paths": [str(big)]}).json()
        done = _wait_for(
            lambda: (lambda j: j if j["status"] not in ("queued", "running") else None)(
                httpx.get(f"{url}/jobs/{retry['id']}").json()
            ),
            what="the resubmitted job",
        )
        assert done["status"] == "completed"
        assert httpx.get(f"{url}/stats").json()["files"]["indexed"] == 1 + 4 + 2
    finally:
        server.terminate()
        server.wait(60)
    check = run_cli("check", "--index", index, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_failed_file_keeps_its_id_when_retried_and_when_fixed(tmp_path, open_index, write_sound):
    archive = tmp_path / "archive"
    write_sound(archive / "good.wav", "tone", 3.0)
    (archive / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    sx = open_index()
    sx.index([str(archive)], progress=False)
    ids = dict(sx.store.cursor().execute("SELECT path, id FROM files").fetchall())
    report = sx.index([str(archive)], retry_failed=True, progress=False)
    assert report.files_failed == 1
    assert dict(sx.store.cursor().execute("SELECT path, id FROM files").fetchall()) == ids
    time.sleep(0.01)
    write_sound(archive / "bad.wav", "noise", 4.0)  # fixed: decoded again, same file, same id
    report = sx.index([str(archive)], progress=False)
    assert report.files_indexed == 1 and report.files_failed == 0
    rows = dict(sx.store.cursor().execute("SELECT path, id FROM files WHERE status = 'indexed'").fetchall())
    assert rows == ids
