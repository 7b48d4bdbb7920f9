"""Jobs inside the server: interval parsing, the CLI handing `index` to a running server, one owner per index."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from api_server import wait_until, write_archive
from conftest import REPO, cli_env


@pytest.mark.parametrize(
    "text, seconds", [("30m", 1800), ("1h", 3600), ("1d", 86400), ("45s", 45), ("1.5h", 5400), (" 2H ", 7200)]
)
def test_parse_interval(text, seconds):
    from search.http.jobs import parse_interval

    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "0m", "-1h", "1w", "1 hour"])
def test_parse_interval_refuses_with_the_accepted_forms(text):
    from search.http.jobs import parse_interval

    with pytest.raises(ValueError, match="e.g. 30m, 1h, 1d"):
        parse_interval(text)


def _start_server(index, env, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if line.startswith("soundsift: serving "):
            return proc, line.split()[2]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


def test_cli_hands_index_to_the_running_server_and_a_second_server_is_refused(tmp_path, tiny_model_dir, run_cli):
    import httpx

    first = write_archive(tmp_path / "first", [("a.wav", "tone", 12.0, 1)])
    second = write_archive(tmp_path / "second", [("b.wav", "noise", 21.0, 2), ("c.flac", "tone", 3.0, 3)])
    index = tmp_path / "index"
    run_cli("index", first, "--index", index)
    env = cli_env(tiny_model_dir)
    env["SOUNDSIFT_API_KEY"] = "handoff-key"
    server, url = _start_server(index, env, "--allow-root", str(second))
    try:
        assert json.loads((index / "owner.json").read_text())["url"] == url
        elsewhere = write_archive(tmp_path / "elsewhere", [("d.wav", "tone", 3.0, 4)])
        refused = run_cli("index", elsewhere, "--index", index, check=False, env={"SOUNDSIFT_API_KEY": "handoff-key"})
        assert refused.returncode != 0 and "not under a root this server may index" in refused.stderr
        assert "--allow-root" in refused.stderr and "Traceback" not in refused.stderr
        handed = run_cli(
            "index", second, "--index", index, "--wait", "--json", env={"SOUNDSIFT_API_KEY": "handoff-key"}
        )
        doc = handed.json
        assert doc["handed_off"] is True and doc["server"] == url
        assert doc["job"]["status"] == "completed" and doc["job"]["report"]["files_indexed"] == 2
        assert doc["job"]["report"]["windows"] == 3 + 1
        assert f"owned by the server at {url}" in handed.stderr

        queued = run_cli("index", second, "--index", index, env={"SOUNDSIFT_API_KEY": "handoff-key"})
        assert "queued on" in queued.stdout and "/jobs/" in queued.stdout

        no_key = run_cli("index", second, "--index", index, check=False, env={"SOUNDSIFT_API_KEY": ""})
        assert no_key.returncode != 0 and "needs its API key: set SOUNDSIFT_API_KEY" in no_key.stderr

        stats = httpx.get(f"{url}/stats", headers={"Authorization": "Bearer handoff-key"}).json()
        assert stats["files"]["indexed"] == 3

        other = subprocess.run(
            [sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", "0"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=120,
        )
        assert other.returncode != 0
        assert other.stderr.startswith("error: index ") and f"pid {server.pid}" in other.stderr
        assert f"its API is at {url}" in other.stderr and "Traceback" not in other.stderr
    finally:
        server.terminate()
        server.wait(60)
    assert not (index / "owner.json").exists()  # released on a clean shutdown


def test_scheduler_reindexes_the_roots_in_the_index(tmp_path, tiny_model_dir, write_sound):
    from api_server import api_settings

    from search.http.jobs import JobManager, ReindexScheduler
    from search.sound_index import SoundIndex

    archive = write_archive(tmp_path / "archive", [("a.wav", "tone", 5.0, 1)])
    settings = api_settings(tmp_path / "index", tiny_model_dir)
    with SoundIndex.open(settings.index, settings=settings, create=True) as sx:
        sx.index([str(archive)], progress=False)
        jobs = JobManager(sx)
        write_sound(archive / "later.wav", "noise", 4.0)
        scheduler = ReindexScheduler(jobs, interval_s=0.2)
        try:
            wait_until(lambda: sx.stats()["files"]["indexed"] >= 2)
        finally:
            scheduler.close()
            jobs.close()
        assert sx.stats()["files"]["indexed"] == 2
        scheduled = [j for j in jobs.list() if j.trigger == "schedule"]
        assert scheduled and scheduled[-1].paths == [str(archive)]
