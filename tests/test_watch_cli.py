"""Standing queries through the real CLI and server: deliveries counted by a real receiver on 127.0.0.1 across
kill -9 of the indexer and of the server, `index --follow` on a file written slowly, report, clips, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf

from search.demo_audio import synthesize, write_audio
from tests.conftest import REPO, cli_env
from tests.webhook_receiver import Receiver, verifies

RATE = 16_000


def _write(path: Path, kind: str, seconds: float, seed: int) -> Path:
    return write_audio(path, synthesize(kind, seconds, RATE, seed), RATE)


class Proc:
    """A CLI (or server) process in its own group, its stderr read line by line in a thread."""

    def __init__(self, args, env: dict):
        self.p = subprocess.Popen(
            [sys.executable, "-m", "search.cli", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        threading.Thread(target=self._read, args=(self.p.stderr, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stdout, self.out), daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line)

    def wait_line(self, text: str, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines) + list(self.out):
                if text in line:
                    return line
            if self.p.poll() is not None and not any(text in x for x in self.lines + self.out):
                time.sleep(0.2)
                if not any(text in x for x in self.lines + self.out):
                    raise AssertionError(f"exited {self.p.returncode} before {text!r}:\n{''.join(self.lines)}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout_s} s:\n{''.join(self.lines)}")

    def kill9(self) -> None:
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(30)


@pytest.fixture(scope="module")
def env(tiny_model_dir):
    e = cli_env(tiny_model_dir)
    e.update({"SOUNDSIFT_HOP_S": "5", "SOUNDSIFT_COMMIT_EVERY_FILES": "1", "SOUNDSIFT_DELIVERY_BACKOFF_S": "0.2"})
    return e


def _cli(env, *args, check=True, extra=None):
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, **(extra or {})},
        cwd=REPO,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"soundsift {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _windows(index: Path, names: list[str]) -> set[int]:
    import duckdb

    con = duckdb.connect(str(index / "soundsift.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT w.id, f.path FROM windows w JOIN files f ON f.id = w.file_id").fetchall()
    finally:
        con.close()
    return {int(i) for i, p in rows if Path(p).name in names}


def _one_line(stderr: str) -> str:
    """The one line a mistake prints (the tiny model's note aside)."""
    lines = [x for x in stderr.splitlines() if not x.startswith("note: using the tiny")]
    assert len(lines) == 1, stderr
    return lines[0]


def _exactly_once(receiver: Receiver, expected: set[int]) -> None:
    docs = receiver.unique()
    ids = [d["window_id"] for d in docs.values()]
    assert sorted(ids) == sorted(expected), (sorted(ids), sorted(expected))  # each window once, none missing


def _watch_every_window(env, index, url: str, *extra: str) -> None:
    """A watch named ``all`` that every window matches (any score), delivered to the webhook at ``url``."""
    _cli(
        env, "watch", "add", "all", "--query", "a tone", "--min-score", "-1", "--webhook", url, *extra, "--index", index
    )


@pytest.mark.slow
def test_exactly_once_across_kill9_of_the_indexer(tmp_path, env):
    arch, index = tmp_path / "arch", tmp_path / "idx"
    _write(arch / "seed.wav", "tone", 6, 0)
    _cli(env, "index", arch, "--index", index)
    with Receiver() as receiver:
        _watch_every_window(env, index, receiver.url, "--secret", "k")
        _cli(
            env,
            "watch",
            "add",
            "none",
            "--query",
            "a tone",
            "--min-score",
            "1",
            "--webhook",
            receiver.url,
            "--index",
            index,
        )
        names = [f"n{i}.wav" for i in range(4)]
        for i, name in enumerate(names):
            _write(arch / name, "noise" if i % 2 else "bell", 11, i + 1)
        # killed inside the second commit's transaction: its windows and their alerts vanish together
        run = Proc(["index", arch, "--index", index], {**env, "SOUNDSIFT_TEST_PAUSE_AT": "commit:2"})
        run.wait_line("soundsift-paused-at commit")
        run.kill9()
        # killed after a webhook was sent, before it was marked: sent again next time, same delivery id
        run = Proc(["index", arch, "--index", index], {**env, "SOUNDSIFT_TEST_PAUSE_AT": "deliver:1"})
        run.wait_line("soundsift-paused-at deliver")
        run.kill9()
        _cli(env, "index", arch, "--index", index)  # delivers what is left before it exits
        expected = _windows(index, names)
        assert receiver.wait_for(len(expected), 30)
        _exactly_once(receiver, expected)
        assert len(receiver.posts) > len(receiver.unique())  # the one re-sent after the kill
        assert all(verifies("k", h, b) for h, b in receiver.posts)
        status = json.loads(_cli(env, "watch", "status", "--index", index, "--json").stdout)["deliveries"]
        assert [(s["watch"], s["pending"], s["failing"], s["delivered"]) for s in status] == [
            ("all", 0, 0, len(expected))
        ]


@pytest.mark.slow
def test_exactly_once_across_kill9_of_the_server(tmp_path, env):
    import httpx

    arch, index = tmp_path / "arch", tmp_path / "idx"
    _write(arch / "seed.wav", "tone", 6, 0)
    _cli(env, "index", arch, "--index", index)
    with Receiver() as receiver:
        _watch_every_window(env, index, receiver.url)
        names = [f"s{i}.wav" for i in range(3)]
        for i, name in enumerate(names):
            _write(arch / name, "chirp", 11, i + 7)
        server = Proc(["serve", "--index", index, "--port", "0"], {**env, "SOUNDSIFT_TEST_PAUSE_AT": "deliver:2"})
        url = server.wait_line("soundsift: serving").split()[2]
        httpx.post(f"{url}/jobs/index", json={"paths": [str(arch)]}, timeout=30).raise_for_status()
        server.wait_line("soundsift-paused-at deliver", 180)
        server.kill9()
        server = Proc(["serve", "--index", index, "--port", "0"], env)
        try:
            url = server.wait_line("soundsift: serving").split()[2]
            jobs = httpx.get(f"{url}/jobs", timeout=30).json()
            assert jobs  # the run the kill cut short is in the history
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                page = httpx.get(f"{url}/alerts", params={"watch": "all", "limit": 1000}, timeout=30).json()["alerts"]
                if page and len(receiver.unique()) >= len(page):
                    break
                time.sleep(0.2)
            expected = {a["window_id"] for a in page}
        finally:
            server.p.send_signal(signal.SIGINT)
            server.p.wait(60)
        assert expected  # the job committed windows before the kill, and their alerts
        _exactly_once(receiver, expected)
        assert len(receiver.posts) > len(receiver.unique())


@pytest.mark.slow
def test_follow_takes_a_slowly_written_file_once_complete(tmp_path, env):
    arch, index = tmp_path / "arch", tmp_path / "idx"
    _write(arch / "seed.wav", "tone", 6, 0)
    audio = synthesize("bell", 14, RATE, 3)
    full = tmp_path / "whole.wav"
    sf.write(str(full), audio, RATE, subtype="PCM_16")
    data = full.read_bytes()
    run = Proc(["index", arch, "--index", index, "--follow"], {**env, "SOUNDSIFT_FOLLOW_SETTLE_S": "1.5"})
    run.wait_line("following")
    target = arch / "landing.wav"
    with open(target, "wb") as fh:  # four chunks, a second apart: never still for the settle time until done
        for i in range(4):
            fh.write(data[i * len(data) // 4 : (i + 1) * len(data) // 4])
            fh.flush()
            time.sleep(0.9)
    done_at = time.monotonic()
    run.wait_line("followed: indexed 1 files", 60)
    took = time.monotonic() - done_at
    run.p.send_signal(signal.SIGINT)
    assert run.p.wait(60) == 0
    followed = [x for x in run.out if x.startswith("followed:")]
    assert len(followed) == 1 and took >= 1.5  # one run, after it settled
    import duckdb

    con = duckdb.connect(str(index / "soundsift.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT duration, status FROM files WHERE path LIKE '%landing.wav'").fetchall()
    finally:
        con.close()
    assert len(rows) == 1 and rows[0][1] == "indexed" and abs(rows[0][0] - 14.0) < 0.01  # the whole file


@pytest.mark.slow
def test_cli_watch_report_clips_and_bad_input(tmp_path, env):
    arch, index = tmp_path / "arch", tmp_path / "idx"
    _write(arch / "seed.wav", "tone", 6, 0)
    _cli(env, "index", arch, "--index", index)
    log = tmp_path / "alerts.ndjson"
    # mistakes caught before any model loads, and after: one line each
    bad = [
        (["--query", "x", "--min-score", "0.1", "--webhook", "not a url"], "http:// or https:// URL"),
        (["--query", "x", "--min-score", "0.1", "--tag", "=v"], "cannot read the tag filter"),
        (["--labels", "tone, noise", "--label", "glass", "--threshold", "0.5"], "not in --labels"),
        (["--probe", "nosuch:fault", "--threshold", "0.5"], "no probe named 'nosuch'"),
    ]
    for args, words in bad:
        p = _cli(env, "watch", "add", "w", *args, "--index", index, check=False)
        assert p.returncode != 0 and _one_line(p.stderr).startswith("error: ") and words in p.stderr
    _cli(env, "watch", "add", "tones", "--query", "a tone", "--min-score", "-1", "--ndjson", log, "--index", index)
    listed = json.loads(_cli(env, "watch", "list", "--index", index, "--json").stdout)["watches"]
    assert [(w["name"], w["kind"], w["alerts"]) for w in listed] == [("tones", "query", 0)]
    empty = _cli(env, "report", "--out", tmp_path / "r.html", "--index", index, check=False)
    assert empty.returncode != 0 and "no alerts" in _one_line(empty.stderr)
    _write(arch / "new.wav", "bell", 16, 4)
    _cli(env, "index", arch, "--index", index)
    new = _windows(index, ["new.wav"])
    assert {json.loads(x)["window_id"] for x in log.read_text().splitlines()} == new  # delivered before exit
    tested = json.loads(_cli(env, "watch", "test", "tones", "--index", index, "--json").stdout)
    assert tested["matches"] == len(_windows(index, ["seed.wav", "new.wav"])) and tested["fired"] == 0
    _cli(env, "report", "--out", tmp_path / "r.html", "--top", "2", "--embed-audio", "--index", index)
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:audio/wav;base64,") == 2 and page.count("<svg") == 2 and "tones" in page
    doc = json.loads(_cli(env, "report", "--json", "--index", index).stdout)
    assert [w["alerts"] for w in doc["watches"]] == [len(new)] and len(doc["watches"][0]["top"]) == min(5, len(new))
    clips = _cli(
        env,
        "clips",
        "--watch",
        "tones",
        "--out",
        tmp_path / "clips",
        "--context",
        "1",
        "--format",
        "flac",
        "--index",
        index,
        "--json",
    )
    rows = json.loads(clips.stdout)["clips"]
    assert len(rows) == len(new)
    for row in rows:
        info = sf.info(str(tmp_path / "clips" / row["file"]))
        assert info.samplerate == RATE and info.format == "FLAC"  # the original rate
        assert abs(info.duration - (row["end"] - row["start"])) < 0.01
        assert row["start"] == max(0.0, row["match_start"] - 1)
    csv_lines = (tmp_path / "clips" / "clips.csv").read_text().splitlines()
    assert csv_lines[0].startswith("file,source,start,end,score,label") and len(csv_lines) == len(new) + 1
    _cli(env, "watch", "remove", "tones", "--index", index)
    assert json.loads(_cli(env, "watch", "list", "--index", index, "--json").stdout)["watches"] == []
