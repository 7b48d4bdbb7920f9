"""Load: search and classify from 8 concurrent clients before, during and after a re-index job; zero errors."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from api_server import write_archive
from conftest import REPO, cli_env

CLIENTS = 8
DURING_AT_LEAST = 2000
QUERIES = ["a pure tone", "white noise", "glass breaking", "dog barking", "machine hum", "a bearing squeal"]
ARTIFACTS = REPO / "test-artifacts"


def _one_request(client: httpx.Client, rng: random.Random) -> tuple[bool, float, str]:
    t = time.perf_counter()
    if rng.random() < 0.6:
        body = {"queries": rng.sample(QUERIES, rng.randint(1, 2)), "k": rng.choice([5, 10, 20])}
        response = client.post("/search", json=body)
        ok = response.status_code == 200 and len(response.json()["results"]) == len(body["queries"])
    else:
        body = {"labels": rng.sample(QUERIES, 3), "by": rng.choice(["window", "file"]), "limit": 50}
        response = client.post("/classify", json=body)
        ok = response.status_code == 200 and response.json()["labels"] == body["labels"]
    return ok, time.perf_counter() - t, "" if ok else f"{response.status_code} {response.text[:200]}"


def _hammer(url: str, keep_going, seed: int) -> list[tuple[bool, float, str]]:
    rng = random.Random(seed)
    results = []
    with httpx.Client(base_url=url, timeout=120) as client:
        while keep_going(len(results)):
            try:
                results.append(_one_request(client, rng))
            except httpx.HTTPError as exc:
                results.append((False, 0.0, repr(exc)))
    return results


def _phase(url: str, keep_going) -> list[tuple[bool, float, str]]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        parts = list(pool.map(lambda seed: _hammer(url, keep_going, seed), range(CLIENTS)))
    return [r for part in parts for r in part]


def _summary(results) -> dict:
    latencies = np.array([dt for ok, dt, _ in results if ok]) * 1000
    return {"requests": len(results), "errors": sum(not ok for ok, _, _ in results),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1), "p99_ms": round(float(np.percentile(latencies, 99)), 1)}


@pytest.mark.slow
def test_queries_keep_being_answered_during_a_reindex_job(tmp_path, tiny_model_dir, run_cli):
    archive = write_archive(tmp_path / "archive", [(f"base/{i}.wav", "tone" if i % 2 else "noise", 12.0, i) for i in range(6)])
    index = tmp_path / "index"
    run_cli("index", archive, "--index", index)
    env = cli_env(tiny_model_dir)
    env["SOUNDSIFT_COMMIT_EVERY_FILES"] = "2"  # many commits while the clients read
    server = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", "0"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        url = next(line.split()[2] for line in server.stderr if line.startswith("soundsift: serving "))
        threading.Thread(target=server.stderr.read, daemon=True).start()  # keep the pipe drained
        _phase(url, lambda n: n < 3)  # warm-up (first text embeddings, first DuckDB reads), not measured
        before = _phase(url, lambda n: n < 40)

        batches, job_ids, done = [0], [], threading.Event()

        def submit_batch() -> None:
            batch = batches[0] = batches[0] + 1
            root = write_archive(tmp_path / f"new{batch}", [(f"{i}.wav", "noise" if i % 2 else "tone", 21.0, 100 * batch + i)
                                                             for i in range(12)])
            job_ids.append(httpx.post(f"{url}/jobs/index", json={"paths": [str(root)]}).json()["id"])

        during_count = [0]
        failed_jobs: list[dict] = []

        def watch_jobs() -> None:
            # A job always runs while the "during" clients work: when one ends early, the next is submitted.
            while True:
                job = httpx.get(f"{url}/jobs/{job_ids[-1]}").json()
                if job["status"] not in ("queued", "running"):
                    if job["status"] != "completed":  # stop the clients; the test fails below, not by timing out
                        failed_jobs.append(job)
                        done.set()
                        return
                    if during_count[0] >= DURING_AT_LEAST:
                        done.set()
                        return
                    submit_batch()
                time.sleep(0.05)

        submit_batch()
        watcher = threading.Thread(target=watch_jobs, daemon=True)
        watcher.start()

        def keep_going(n: int) -> bool:
            if done.is_set():
                return False
            during_count[0] += 1
            return True

        during = _phase(url, keep_going)
        watcher.join(120)
        assert not watcher.is_alive() and failed_jobs == []
        after = _phase(url, lambda n: n < 40)
        stats = httpx.get(f"{url}/stats").json()
    finally:
        server.terminate()
        server.wait(60)

    report = {"before": _summary(before), "during": _summary(during), "after": _summary(after),
              "jobs": len(job_ids), "clients": CLIENTS}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(report, indent=2))
    print("\nload:", json.dumps(report))
    errors = [msg for ok, _, msg in before + during + after if not ok]
    assert errors == []
    assert len(during) >= DURING_AT_LEAST
    assert stats["files"]["indexed"] == 6 + 12 * len(job_ids)
