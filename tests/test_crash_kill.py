"""Crash safety with real processes: kill -9 at every phase of a run, a full disk (a real tmpfs), two indexers.

Each indexing run is a real process forked from a "zygote" that imported torch and loaded the tiny CLAP
once (running this file as a script starts one), so a cycle costs the run, not 5 s of imports. Kills
are aimed with SOUNDSIFT_TEST_PAUSE_AT=<phase>:<n> (see indexer/crashpoints.py) or land after a random
delay; each kill takes the whole process group (the run and its decode worker), like a power cut.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PHASES = ("decode", "embed", "commit", "faiss_write")
# Each phase is killed at its first and at its second occurrence in a run (the two places a pause can land that
# differ: before and after a batch of that phase has completed); more kills at the same places prove nothing more.
KILLS_PER_PHASE = 2
RANDOM_KILLS = 4


# -- the zygote (runs in its own process) -----------------------------------------------------------
def _zygote(model_dir: str) -> None:
    """Load once, then for each JSON command on stdin fork a child that indexes and reports on stdout."""
    import torch

    torch.set_num_threads(1)  # no intra-op thread pool to inherit across fork()
    from indexer import crashpoints
    from indexer.model import load_clap

    encoder = load_clap(model_dir, device="cpu")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            code = 0
            try:
                os.environ.pop(crashpoints.ENV, None)
                os.environ[crashpoints.ENV] = cmd.get("pause") or "trace"  # trace: announce phases, never pause
                crashpoints.reset()
                from indexer.settings import load_settings
                from search.sound_index import SoundIndex

                settings = load_settings(
                    index=cmd["index"],
                    model=model_dir,
                    device="cpu",
                    decode_workers=1,
                    batch_size=2,
                    commit_every_files=1,
                )
                t0 = time.monotonic()
                with SoundIndex.open(settings.index, settings=settings, create=True, encoder=encoder) as sx:
                    opened_s = time.monotonic() - t0
                    report = sx.index([cmd["archive"]], progress=False)
                from indexer.runner import report_summary

                sys.stderr.write("soundsift-done " + json.dumps({**report_summary(report), "open_s": opened_s}) + "\n")
            except BaseException as exc:  # noqa: BLE001 - reported to the test, which decides
                sys.stderr.write(f"soundsift-error {type(exc).__name__}: {exc}\n".replace("\n", " ") + "\n")
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"child": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": pid, "status": status}), flush=True)


class Zygote:
    """The test side: start children, read their phase lines, kill them."""

    def __init__(self, model_dir: Path):
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "zygote", str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._expect(lambda line: line.startswith('{"ready"'), timeout=120)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def _expect(self, pred, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line == "<eof>":
                raise AssertionError("the zygote died")
            if pred(line):
                return line

    def run(
        self,
        index: Path,
        archive: Path,
        pause: str | None = None,
        kill_after_s: float | None = None,
        timeout: float = 60,
    ) -> dict:
        """One child run. Returns {"killed": bool, "phase": last phase announced, "done": summary, "error": text}."""
        self.proc.stdin.write(json.dumps({"index": str(index), "archive": str(archive), "pause": pause}) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self._expect(lambda line: line.startswith('{"child"'), 30))["child"]
        out = {"killed": False, "phase": "open", "done": None, "error": None, "log": []}
        started = time.monotonic()
        while True:
            wait = timeout if kill_after_s is None else max(0.0, started + kill_after_s - time.monotonic())
            try:
                line = self.lines.get(timeout=wait) if wait > 0 else None
            except queue.Empty:
                line = None
            if line is None:  # the random moment arrived (or the run hung past timeout)
                os.killpg(pid, signal.SIGKILL)
                out["killed"] = True
                self._expect(lambda line: line.startswith('{"exit"'), 30)
                return out
            out["log"].append(line)
            if line.startswith("soundsift-phase "):
                out["phase"] = line.split()[1]
            elif line.startswith("soundsift-paused-at "):
                os.killpg(pid, signal.SIGKILL)
                out["killed"] = True
                self._expect(lambda line: line.startswith('{"exit"'), 30)
                return out
            elif line.startswith("soundsift-done "):
                out["done"] = json.loads(line[len("soundsift-done ") :])
            elif line.startswith("soundsift-error "):
                out["error"] = line[len("soundsift-error ") :]
            elif line.startswith('{"exit"'):
                return out

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tiny_model_dir):
    z = Zygote(tiny_model_dir)
    yield z
    z.close()


# -- the checks after each kill --------------------------------------------------------------------
def recover_and_audit(index_dir: Path) -> tuple[dict, float, dict]:
    """Open as the next process would (DuckDB replay + FAISS catch-up), then audit: (audit, open seconds, state)."""
    from indexer.audit import audit
    from indexer.store import IndexStore
    from indexer.vectors import VectorIndex

    t0 = time.monotonic()
    store = IndexStore.open(index_dir, None, create=False)
    vectors = VectorIndex.open(store)
    recovery_s = time.monotonic() - t0
    try:
        report = audit(store)
        assert np.array_equal(vectors.ids(), store.window_ids())  # what the reopened process serves
        assert vectors.ntotal == store.window_count()
        indexed = store.cursor().execute("SELECT count(*) FROM files WHERE status = 'indexed'").fetchone()[0]
        return report, recovery_s, {"indexed": int(indexed), "windows": store.window_count()}
    finally:
        store.close()


def index_contents(index_dir: Path) -> dict:
    """path -> (status, [(start, end, vector)]) — everything a result is made of, ids aside."""
    from indexer.store import IndexStore

    store = IndexStore.open(index_dir, None, create=False)
    try:
        files = dict(store.cursor().execute("SELECT path, status FROM files").fetchall())
        out = {p: (s, []) for p, s in files.items()}
        for chunk in store.iter_vectors(4096):
            paths = dict(store.cursor().execute("SELECT id, path FROM files").fetchall())
            for fid, start, end, vec in zip(chunk.file_ids, chunk.starts, chunk.ends, chunk.vectors):
                out[paths[int(fid)]][1].append((round(float(start), 6), round(float(end), 6), vec.copy()))
        for _, windows in out.values():
            windows.sort(key=lambda w: (w[0], w[1]))
        return out
    finally:
        store.close()


def make_archive(root: Path, write_sound, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(count):
        write_sound(
            root / f"d{i % 3}" / f"s{i:02d}.wav",
            ("noise", "chirp", "bearing", "bell")[i % 4],
            rng.choice([2.0, 6.0, 12.0]),
            16_000,
            seed=i,
        )


def grow_archive(root: Path, write_sound, step: int) -> None:
    """Give the next runs work: three new files, one rewritten, one deleted (so kills hit updates and removals too)."""
    for j in range(3):
        write_sound(root / "new" / f"n{step:02d}_{j}.wav", "noise", 2.0 + 4 * j, 16_000, seed=100 + step * 3 + j)
    olds = sorted(p for p in root.rglob("s*.wav"))
    if len(olds) > 2:
        olds[0].unlink()
        write_sound(olds[1], "noise", 6.0, 16_000, seed=500 + step)


def unchanged_on_disk(index_dir: Path) -> int:
    """Indexed files whose size and mtime still match the disk: what a resumed run must not embed again."""
    from indexer.store import IndexStore

    store = IndexStore.open(index_dir, None, create=False)
    try:
        rows = store.cursor().execute("SELECT path, size, mtime FROM files WHERE status = 'indexed'").fetchall()
    finally:
        store.close()
    return sum(
        1
        for path, size, mtime in rows
        if os.path.exists(path) and (os.stat(path).st_size, os.stat(path).st_mtime) == (size, mtime)
    )


@pytest.mark.slow  # 12 kill -9s of a running indexer, each followed by an audit
def test_kill_loop_every_phase(tmp_path, write_sound, zygote):
    archive = tmp_path / "archive"
    make_archive(archive, write_sound, 12)
    index = tmp_path / "index"
    rng = random.Random(1234)
    plan = [("pause", p) for p in PHASES for _ in range(KILLS_PER_PHASE)] + [("random", None)] * RANDOM_KILLS
    rng.shuffle(plan)
    figures: dict[str, list] = {}
    recoveries, attempts, completed = [], 0, 0
    t_loop = time.monotonic()
    while plan and attempts < 60:
        kind, phase = plan[0]
        attempts += 1
        if kind == "pause":
            done_here = len(figures.get(phase, []))
            nth = 1 if phase == "faiss_write" else 1 + done_here % 2  # first, then second occurrence
            result = zygote.run(index, archive, pause=f"{phase}:{nth}")
        else:
            result = zygote.run(index, archive, kill_after_s=rng.uniform(0.1, 1.0))
        assert result["error"] is None, result["error"]
        if os.environ.get("SOUNDSIFT_TEST_DEBUG"):
            print(
                kind,
                phase,
                result["killed"],
                result["phase"],
                [l for l in result["log"] if "phase" in l or "error" in l][-6:],
            )
        if not result["killed"]:  # the run finished before the aimed moment: give the next one work
            completed += 1
            grow_archive(archive, write_sound, completed)
        else:
            plan.pop(0)
            label = phase if kind == "pause" else f"random@{result['phase']}"
            figures.setdefault(label, []).append(True)
        if not (index / "soundsift.duckdb").exists():
            continue  # killed before the database existed: nothing to audit
        report, recovery_s, state = recover_and_audit(index)
        assert report["ok"], (kind, phase, report["problems"])
        assert report["faiss_vectors"] == report["windows"]
        recoveries.append(recovery_s)
    loop_s = time.monotonic() - t_loop
    expected_unchanged = unchanged_on_disk(index)
    final = zygote.run(index, archive)
    assert final["done"] is not None, final
    # Resumed, not redone: every file committed (and unchanged since) before the last kill was left alone.
    assert final["done"]["files_unchanged"] == expected_unchanged

    reference = tmp_path / "reference"
    clean = zygote.run(reference, archive)
    assert clean["done"] is not None, clean
    got, want = index_contents(index), index_contents(reference)
    assert sorted(got) == sorted(want)
    for path, (status, windows) in want.items():
        assert got[path][0] == status
        assert [(s, e) for s, e, _ in got[path][1]] == [(s, e) for s, e, _ in windows], path
        for (_, _, a), (_, _, b) in zip(got[path][1], windows):
            assert np.abs(a - b).max() <= 1e-6, path
    report, _, _ = recover_and_audit(index)
    assert report["ok"]

    kills = sum(len(v) for v in figures.values())
    assert kills == len(PHASES) * KILLS_PER_PHASE + RANDOM_KILLS, (attempts, figures)
    summary = {k: len(v) for k, v in sorted(figures.items())}
    print(
        f"\nkill loop: {kills}/{kills} kills survived (audit ok after each) in {attempts} runs ({completed} ran to the end), "
        f"{loop_s:.1f} s; by phase {summary}; recovery (open + FAISS catch-up) max {max(recoveries) * 1000:.0f} ms, "
        f"median {np.median(recoveries) * 1000:.0f} ms; final result equals an uninterrupted run ({len(want)} files)"
    )


# -- a full disk -------------------------------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the disk-full test needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow  # fills a real tmpfs with an indexing run
def test_disk_full_fails_cleanly_and_keeps_serving(tmp_path, write_sound, zygote, small_disk):
    archive = tmp_path / "archive"
    make_archive(archive, write_sound, 3)
    index = small_disk / "index"
    first = zygote.run(index, archive)
    assert first["done"]["files_added"] == 3, first
    before, _, state = recover_and_audit(index)
    assert before["ok"] and state["indexed"] == 3

    make_archive(archive, write_sound, 20)  # 17 more files (the first 3 are rewritten identically)
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - 64 * 1024))  # leave less than one DuckDB block
    full = zygote.run(index, archive)
    assert full["done"] is None and full["error"] is not None, full
    assert full["error"].startswith("DiskFull: the disk holding"), full["error"]
    assert "keeps serving" in full["error"] or "stays current" in full["error"]
    assert not [p for p in index.iterdir() if p.name.startswith(".vectors-")]  # no half-written FAISS file left
    print(f"\ndisk full (4 MiB tmpfs): {full['error'][:160]}")

    filler.unlink()
    after, _, state = recover_and_audit(index)
    assert after["ok"], after["problems"]
    assert state["indexed"] >= 3  # the previous index (and any batch committed before the disk filled) serves
    resumed = zygote.run(index, archive)
    assert resumed["done"] is not None, resumed
    final, _, state = recover_and_audit(index)
    assert final["ok"] and state["indexed"] == 20


# -- two owners ---------------------------------------------------------------------------------------
def test_second_indexer_is_told_who_owns_the_index(tmp_path, write_sound, run_cli, tiny_model_dir):
    from tests.conftest import cli_env

    archive = tmp_path / "archive"
    make_archive(archive, write_sound, 2)
    index = tmp_path / "index"
    env = {**cli_env(tiny_model_dir), "SOUNDSIFT_TEST_PAUSE_AT": "embed"}
    first = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "index", str(archive), "--index", str(index)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        for line in first.stderr:
            if line.startswith("soundsift-paused-at"):
                break
        second = run_cli("index", archive, "--index", index, "--json", check=False)
        assert second.returncode == 2
        assert second.stderr.startswith(f"error: index {index} is in use by pid {first.pid} (")
        assert f"cli/__main__.py index {archive} --index {index})" in second.stderr  # the owner's command line
        check = run_cli("check", "--index", index, check=False)
        assert check.returncode == 2 and f"pid {first.pid}" in check.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    result = run_cli("index", archive, "--index", index, "--json").json  # the dead owner's lock died with it
    assert result["files_added"] == 2


if __name__ == "__main__" and sys.argv[1:2] == ["zygote"]:
    _zygote(sys.argv[2])
