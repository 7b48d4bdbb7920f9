"""Scale: 1, 3 and 10 million windows through the real store, FAISS and window-matrix code (synthetic vectors, no audio).

    .venv/bin/python benchmarks/bench_scale.py                      # 1M and 3M (10M only with --sizes 10000000)
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000,3000000,10000000
    .venv/bin/python benchmarks/bench_scale.py --quick              # 20,000 windows (checks the benchmark works)

For each size, in a fresh index directory:
- commit rate: windows committed per second through ``IndexStore.commit`` + ``VectorIndex.add`` +
  ``VectorIndex.grow`` (the runner's path), 100 files x 360 windows per commit; the baseline beside it is the
  first million's rate;
- FAISS build and nprobe tuning: the owner grows its index as it commits (flat -> IVF past 200,000 windows,
  more lists from DuckDB every 4x: when and how long is reported); the first owner open after the commits
  then only rebuilds when the index is outgrown anyway (indexer/faiss_factory.py); a fresh process;
- open: a fresh process opening the index (DuckDB, FAISS file, window matrix) after a clean close, and again
  after ``kill -9`` of an owner in the middle of its commits (WAL replay and the FAISS catch-up);
- search: top-10 one query at a time through ``VectorIndex.search``, p50/p99 and recall@10 against exact
  search over the same vectors;
- classify: N x 10 labels through the real path (``label_matrix`` vectors, ``WindowMatrix.chunks``,
  ``score_chunks`` with softmax, top 100), and the CLI cold (a fresh ``soundsift classify`` process, 10 labels
  never embedded: the ONNX text tower embeds them) where the model export exists;
- disk (the index directory) and RAM (peak RSS of the serving process) per million windows.
Each size's figures sit beside the 1M figures of the same run (ratios), with the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

FILES_PER_COMMIT = 100
LABELS = [f"label number {i}" for i in range(10)]


def identity(model: Path | None):
    """The model identity the synthetic index records: the given checkpoint's (its ONNX export then serves the
    CLI classify), else a made-up one (the CLI figure is skipped)."""
    from indexer.model import ModelIdentity

    if model is not None:
        from indexer.model import load_clap_text

        return load_clap_text(str(model), device="cpu").identity
    return ModelIdentity("synthetic", "bench", "ab" * 32, 512, {"window_s": 10.0, "hop_s": 10.0}, 100.0)


def build(index_dir: Path, n: int, ident, seed: int = 0) -> dict:
    """Commit ``n`` synthetic windows the way the runner does; the commit rate and the builder's peak RSS."""
    from synthetic_vectors import WINDOWS_PER_FILE, clustered_unit_vectors

    from indexer.store import CommitPlan, FileRecord, IndexStore, WindowBatch
    from indexer.vectors import VectorIndex

    index_dir.mkdir(parents=True, exist_ok=True)
    store = IndexStore.open(index_dir, ident, create=True)
    vectors = VectorIndex.open(store)
    run_id = 1
    store.start_run(run_id, time.time(), "bench_scale")
    per_commit = FILES_PER_COMMIT * WINDOWS_PER_FILE
    t0 = time.perf_counter()
    commit_s = 0.0
    grew: list[dict] = []
    for at, x in clustered_unit_vectors(n, seed=seed, chunk=per_commit):
        ids = np.arange(at + 1, at + len(x) + 1, dtype=np.int64)
        file_ids = (ids - 1) // WINDOWS_PER_FILE + 1
        files = [
            FileRecord(int(f), f"/archive/{int(f):08d}.wav", "/archive", 1, 0.0, None, "indexed", duration=3600.0)
            for f in np.unique(file_ids)
        ]
        starts = ((ids - 1) % WINDOWS_PER_FILE) * 10.0
        batch = WindowBatch(ids, file_ids, starts, starts + 10.0, ["{}"] * len(ids), x)
        t = time.perf_counter()
        with vectors.lock:
            seq, removed = store.commit(CommitPlan(files=files, windows=batch), run_id)
            vectors.add(ids, x, seq)
            grown = vectors.grow(store)  # as the runner does: flat -> IVF, and more lists every 4x
        commit_s += time.perf_counter() - t
        if grown is not None:
            grew.append({"at_windows": int(at + len(x)), **grown, "seconds": round(grown["seconds"], 1)})
    total_s = time.perf_counter() - t0
    vectors.save()
    store.record_run(run_id, time.time(), time.time(), "ok", "bench_scale", {})
    store.close()
    return {
        "commit_windows_per_s": round(n / commit_s),  # FAISS growth included, as a run waits for it
        "faiss_grown_in_run": grew,
        "build_total_s": round(total_s, 1),
        "builder_peak_rss_mb": round(vm_hwm_mb()),
    }


def vm_hwm_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork and exec)."""
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1]) / 1024


BUILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from bench_scale import build
from indexer.model import ModelIdentity
from pathlib import Path
print(json.dumps(build(Path(sys.argv[2]), int(sys.argv[3]), ModelIdentity(**json.loads(sys.argv[4])))))
"""


OPEN = r"""
import json, sys, time
t = time.perf_counter()
from pathlib import Path
from indexer.store import IndexStore
from indexer.vectors import VectorIndex
from indexer.matrix import WindowMatrix
imports = time.perf_counter() - t
t = time.perf_counter()
store = IndexStore.open(Path(sys.argv[1]), None, create=False, read_only=sys.argv[2] == "ro")
db_s = time.perf_counter() - t
t = time.perf_counter()
vectors = VectorIndex.open(store)
faiss_s = time.perf_counter() - t
t = time.perf_counter()
wm = WindowMatrix.current(store, vectors.lock)
matrix_s = time.perf_counter() - t
store.close()
print(json.dumps({"db_s": db_s, "faiss_s": faiss_s, "matrix_s": matrix_s, "recovery": vectors.recovery,
                  "windows": int(vectors.ntotal), "imports_s": imports,
                  "peak_rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024}))
"""

SERVE = r"""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[3])
from synthetic_vectors import unit_vectors
from indexer import faiss_factory
from indexer.store import IndexStore
from indexer.vectors import VectorIndex
from indexer.matrix import WindowMatrix
from search.core.classify import ClassifyOptions, LabelMatrix, chunk_rows, score_chunks
from plugins.contract import LabelTexts
from plugins.manager import default_plugins
store = IndexStore.open(Path(sys.argv[1]), None, create=False, read_only=True)
vectors = VectorIndex.open(store)
wm = WindowMatrix.current(store, vectors.lock)
n = int(vectors.ntotal)
rng = np.random.default_rng(7)
sample = np.ascontiguousarray(wm.vectors[np.sort(rng.choice(n, size=min(n, 20000), replace=False))], np.float32)
queries = faiss_factory.tuning_queries(sample, int(sys.argv[2]), seed=11)
rows = ((np.asarray(c.ids, np.int64), np.asarray(c.vectors, np.float32)) for c in wm.chunks(65536))
truth = faiss_factory.exact_top_k(queries, rows, 10)
lat, found = [], []
for q in queries:
    t = time.perf_counter()
    _, got = vectors.search(q[None, :], 10)
    lat.append(time.perf_counter() - t)
    found.append(got[0])
recall = faiss_factory.recall_at_k(np.stack(found), truth)
labels = unit_vectors(10, wm.vectors.shape[1])
matrix = LabelMatrix([LabelTexts(f"l{i}", (f"l{i}",), ()) for i in range(10)], labels,
                     np.zeros((0, labels.shape[1]), np.float32), np.zeros(0, np.int64), 100.0)
policy = default_plugins().policies["softmax"]
t = time.perf_counter()
paths = type("Paths", (dict,), {"__missing__": lambda self, k: f"/archive/{k:08d}.wav"})()
rows_out = list(score_chunks(wm.chunks(chunk_rows(10, 65536)), paths, matrix, policy, None,
                             ClassifyOptions(by="window", top=100)))
classify_s = time.perf_counter() - t
store.close()
print(json.dumps({"p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)),
                  "recall_at_10": recall, "queries": len(queries), "classify_s": classify_s,
                  "classify_rows": len(rows_out), "index": faiss_factory.describe(vectors._index),
                  "peak_rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024}))
"""

KILLED = r"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from synthetic_vectors import WINDOWS_PER_FILE, clustered_unit_vectors
from indexer.store import CommitPlan, FileRecord, IndexStore, WindowBatch
from indexer.vectors import VectorIndex
store = IndexStore.open(Path(sys.argv[1]), None, create=False)
vectors = VectorIndex.open(store)
first = int(store.max_ids()[1]) + 1
per = 100 * WINDOWS_PER_FILE
for k, (at, x) in enumerate(clustered_unit_vectors(100 * per, seed=5, chunk=per)):
    ids = np.arange(first + at, first + at + len(x), dtype=np.int64)
    fids = (ids - 1) // WINDOWS_PER_FILE + 1
    files = [FileRecord(int(f), f"/archive/more-{int(f):08d}.wav", "/archive", 1, 0.0, None, "indexed", duration=3600.0)
             for f in np.unique(fids)]
    starts = ((ids - 1) % WINDOWS_PER_FILE) * 10.0
    with vectors.lock:
        seq, _ = store.commit(CommitPlan(files=files, windows=WindowBatch(ids, fids, starts, starts + 10, ["{}"] * len(ids), x)), 1)
        vectors.add(ids, x, seq)
        vectors.grow(store)
    print("committed", k, flush=True)
"""


def fresh(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kill_mid_commit(index_dir: Path, commits_first: int = 2) -> int:
    """Start an owner committing more windows, kill -9 it after ``commits_first`` commits (mid-way through the next)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(index_dir), str(HERE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("committed"):
            seen += 1
            if seen >= commits_first:
                time.sleep(0.3)  # inside the next commit's DuckDB insert
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seen


def write_export(model: Path) -> float:
    """`soundsift doctor --export` for ``model`` (the ONNX text tower the CLI classify reads); wall seconds."""
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "search.cli", "doctor", "--export", "--model", str(model), "--device", "cpu"],
        check=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - t


def cli_classify(index_dir: Path, model: Path) -> float | None:
    """A fresh `soundsift classify` of every window against 10 new labels (top 100 rows printed); wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    words = ", ".join(f"a machine sound number {time.time_ns() % 10**9} {i}" for i in range(10))
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "classify", "--labels", words, "--index", str(index_dir)]
        + ["--model", str(model), "--device", "cpu", "--top", "100", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"note: CLI classify failed: {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return wall


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def one_size(work: Path, n: int, ident, model: Path | None, queries: int) -> dict:
    index_dir = work / f"index-{n}"
    load0 = os.getloadavg()[0]
    built = fresh(BUILD, str(HERE), str(index_dir), str(n), json.dumps(dataclasses.asdict(ident)))
    first = fresh(OPEN, str(index_dir), "rw")  # the owner's first open: flat outgrown -> IVF built and tuned
    clean = fresh(OPEN, str(index_dir), "rw")
    disk = du_mb(index_dir)
    served = fresh(SERVE, str(index_dir), str(queries), str(HERE))
    cli_s = cli_classify(index_dir, model) if model is not None else None
    kill_mid_commit(index_dir)
    recovered = fresh(OPEN, str(index_dir), "rw")
    return {
        "windows": n,
        "load_average": round(load0, 2),
        **built,
        "faiss_build_and_tune_s": round(first["faiss_s"], 1),
        "faiss_first_open_recovery": first["recovery"],
        "open_s": round(clean["db_s"] + clean["faiss_s"] + clean["matrix_s"], 2),
        "open_parts_s": {k: round(clean[k], 2) for k in ("db_s", "faiss_s", "matrix_s")},
        "open_after_kill9_s": round(recovered["db_s"] + recovered["faiss_s"] + recovered["matrix_s"], 2),
        "after_kill9_recovery": recovered["recovery"],
        "after_kill9_windows": recovered["windows"],
        "search_p50_ms": round(served["p50_ms"], 3),
        "search_p99_ms": round(served["p99_ms"], 3),
        "recall_at_10": round(served["recall_at_10"], 4),
        "faiss_index": served["index"],
        "classify_10_labels_s": round(served["classify_s"], 2),
        "classify_cli_cold_s": None if cli_s is None else round(cli_s, 2),
        "disk_mb_per_million": round(disk * 1e6 / n),
        "serving_peak_rss_mb": round(served["peak_rss_mb"]),
        "serving_rss_mb_per_million": round(served["peak_rss_mb"] * 1e6 / n),
        "open_peak_rss_mb": round(first["peak_rss_mb"]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 windows (checks the benchmark works)")
    parser.add_argument("--sizes", default="1000000,3000000", help="comma-separated window counts")
    parser.add_argument("--model", type=Path, help="a CLAP directory whose identity the index records (CLI classify)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--work", type=Path, help="where the indexes go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the indexes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine

    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.work))
    os.environ.setdefault("SOUNDSIFT_ONNX_CACHE", str(HERE / ".cache" / "onnx"))
    ident = identity(args.model)
    result: dict = {"machine": machine(), "runs": []}
    if args.model is not None:
        result["text_export_s"] = round(write_export(args.model), 1)
    try:
        for n in sizes:
            run = one_size(work, n, ident, args.model, 50 if args.quick else args.queries)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
            if not args.keep:
                shutil.rmtree(work / f"index-{n}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    base = result["runs"][0]
    print(f"machine: {result['machine']}")
    for r in result["runs"]:
        x = r["windows"] / base["windows"]
        print(
            f"{r['windows']:>11,} windows (load {r['load_average']}): commit {r['commit_windows_per_s']:,}/s "
            f"({r['commit_windows_per_s'] / base['commit_windows_per_s']:.2f}x the first size's rate); "
            f"FAISS grown in the run {[(g['at_windows'], g.get('nlist'), g['seconds']) for g in r['faiss_grown_in_run']]}, "
            f"at the first open {r['faiss_build_and_tune_s']} s; "
            f"open {r['open_s']} s, after kill -9 {r['open_after_kill9_s']} s; search p50 {r['search_p50_ms']} ms "
            f"p99 {r['search_p99_ms']} ms recall@10 {r['recall_at_10']}; classify x10 {r['classify_10_labels_s']} s "
            f"({r['classify_10_labels_s'] / max(base['classify_10_labels_s'], 1e-3) / x:.2f}x linear), CLI cold "
            f"{r['classify_cli_cold_s']} s; disk {r['disk_mb_per_million']} MB/M, serving RSS {r['serving_rss_mb_per_million']} MB/M"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
