"""Standing queries: what 100 watches add to a commit of 10,000 new windows, and alert latency under --follow.

.venv/bin/python benchmarks/bench_watch.py [--quick] [--out results.json]

1. Evaluation: a real DuckDB store commits 10,000 synthetic 512-d windows (28 files) with no watches, then the
   same with 100 watches (60 queries, 30 five-label softmax sets, 10 three-class probes; about 1 % of windows
   match each query), side by side in one run; also the numpy evaluation alone.
2. Latency: `soundsift index ARCH --follow` with the tiny CLAP and a webhook watch; a 10 s WAV lands (written
   beside, renamed in) and the clock runs until a local receiver has the POST. The settle time (follow_settle_s)
   is part of it by design; the figure is shown with it and with one plain `soundsift index` run of the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.synthetic_vectors import clustered_unit_vectors, unit_vectors  # noqa: E402


def _store(tmp: Path, name: str, dim: int):
    from indexer.model import ModelIdentity
    from indexer.store import IndexStore

    identity = ModelIdentity("bench", "0", "f" * 64, dim, {"window_s": 10.0}, 100.0)
    (tmp / name).mkdir(parents=True)
    return IndexStore.open(tmp / name, identity, create=True)


def _watches(dim: int, vectors: np.ndarray):
    from indexer.watch_eval import CompiledWatch, evaluate, label_scores
    from indexer.watch_store import WatchRecord

    out = []
    queries = unit_vectors(60, dim, seed=3)
    for i, q in enumerate(queries):  # min score at each query's 99th percentile over the batch: ~1 % match
        cut = float(np.quantile(vectors @ q, 0.99))
        out.append(WatchRecord(0, f"q{i}", "query", {}, CompiledWatch("query", q[None, :].copy(), threshold=cut)))
    for i in range(30):
        m = unit_vectors(5, dim, seed=100 + i)
        labels = [[f"l{j}", [f"l{j}"], []] for j in range(5)]
        rule = CompiledWatch("labels", m, threshold=0.0, logit_scale=100.0, policy="softmax", labels=labels)
        rule.threshold = float(np.quantile(label_scores(rule, vectors)[:, 0], 0.99))  # ~1 % match
        out.append(WatchRecord(0, f"l{i}", "labels", {}, rule))
    rng = np.random.default_rng(7)
    for i in range(10):
        W = 10 * rng.standard_normal((3, dim)).astype(np.float32)
        rule = CompiledWatch("probe", W, bias=np.zeros(3, np.float32))
        rule.threshold = float(np.quantile(evaluate(rule, vectors)[1], 0.99))
        out.append(WatchRecord(0, f"p{i}", "probe", {}, rule))
    return out


def _plan(ids_from: int, vectors: np.ndarray, per_file: int = 360):
    from indexer.store import CommitPlan, FileRecord, WindowBatch

    n = len(vectors)
    file_ids = np.arange(n) // per_file + 1
    files = [
        FileRecord(id=int(f), path=f"/archive/{f}.wav", root="/archive", size=1, mtime=0.0, hash=None, status="indexed")
        for f in np.unique(file_ids)
    ]
    starts = (np.arange(n) % per_file) * 10.0
    batch = WindowBatch(
        ids=np.arange(ids_from, ids_from + n, dtype=np.int64),
        file_ids=file_ids.astype(np.int64),
        starts=starts,
        ends=starts + 10.0,
        tags=["{}"] * n,
        vectors=vectors,
    )
    return CommitPlan(files=files, windows=batch)


def evaluation(n: int = 10_000, dim: int = 512, repeats: int = 3) -> dict:
    from indexer.watch_eval import evaluate, evaluate_all
    from indexer.watch_store import WatchStore
    from plugins.manager import default_plugins

    vectors = next(clustered_unit_vectors(n, dim, seed=11))[1]
    records = _watches(dim, vectors)
    policies = default_plugins().policies
    t = time.perf_counter()
    for _ in range(repeats):
        evaluate_all([w.rule for w in records], vectors, policies)
    numpy_s = (time.perf_counter() - t) / repeats
    t = time.perf_counter()
    for _ in range(repeats):
        for w in records:
            evaluate(w.rule, vectors, policies)
    one_by_one_s = (time.perf_counter() - t) / repeats
    tmp = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        plain, watched = [], []
        for r in range(repeats):
            for name, times, with_watches in (("plain", plain, False), ("watched", watched, True)):
                store = _store(tmp, f"{name}{r}", dim)
                if with_watches:
                    ws = WatchStore(store)
                    for w in records:
                        ws.add(w)
                t = time.perf_counter()
                store.commit(_plan(1, vectors), run_id=1)
                times.append(time.perf_counter() - t)
                if with_watches:
                    alerts = sum(ws.alert_counts().values())
                store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "windows": n,
        "watches": len(records),
        "alerts": alerts,
        "commit_s_without_watches": statistics.median(plain),
        "commit_s_with_watches": statistics.median(watched),
        "watch_cost_s": statistics.median(watched) - statistics.median(plain),
        "numpy_evaluation_s": numpy_s,
        "numpy_one_watch_at_a_time_s": one_by_one_s,
    }


def latency(files: int = 3, settle_s: float = 2.0) -> dict:
    from indexer.tiny_clap import build_tiny_clap
    from search.demo_audio import synthesize, write_audio
    from tests.webhook_receiver import Receiver

    tmp = Path(tempfile.mkdtemp(prefix="bench-follow-"))
    try:
        model = build_tiny_clap(tmp / "tiny")
        env = {
            **os.environ,
            "SOUNDSIFT_MODEL": str(model),
            "SOUNDSIFT_DEVICE": "cpu",
            "SOUNDSIFT_DECODE_WORKERS": "1",
            "SOUNDSIFT_FOLLOW_SETTLE_S": str(settle_s),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
        arch, index = tmp / "arch", tmp / "idx"
        write_audio(arch / "seed.wav", synthesize("tone", 10, 48_000, 0), 48_000)
        cli = [sys.executable, "-m", "search.cli"]
        subprocess.run([*cli, "index", arch, "--index", index], env=env, check=True, capture_output=True)
        write_audio(tmp / "plain" / "one.wav", synthesize("bell", 10, 48_000, 9), 48_000)
        t = time.perf_counter()
        subprocess.run(
            [*cli, "index", tmp / "plain", "--index", tmp / "idx2"], env=env, check=True, capture_output=True
        )
        plain_s = time.perf_counter() - t
        with Receiver() as receiver:
            subprocess.run(
                [
                    *cli,
                    "watch",
                    "add",
                    "all",
                    "--query",
                    "sound",
                    "--min-score",
                    "-1",
                    "--webhook",
                    receiver.url,
                    "--index",
                    index,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            follow = subprocess.Popen(
                [*cli, "index", arch, "--index", index, "--follow"], env=env, stderr=subprocess.PIPE, text=True
            )
            assert follow.stderr is not None
            for line in follow.stderr:
                if line.startswith("following"):
                    break
            lat = []
            for i in range(files):
                before = len(receiver.unique())
                staged = tmp / f"stage{i}.wav"
                write_audio(staged, synthesize("noise", 10, 48_000, i + 1), 48_000)
                t = time.perf_counter()
                os.replace(staged, arch / f"landed{i}.wav")
                while len(receiver.unique()) <= before:
                    time.sleep(0.01)
                lat.append(time.perf_counter() - t)
            follow.send_signal(2)
            follow.wait(60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "files": files,
        "settle_s": settle_s,
        "latency_s": lat,
        "latency_median_s": statistics.median(lat),
        "plain_index_run_s": plain_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {"evaluation": evaluation(2_000 if args.quick else 10_000, repeats=1 if args.quick else 3)}
    result["latency"] = latency(1 if args.quick else 3)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
