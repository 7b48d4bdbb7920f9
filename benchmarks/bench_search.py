"""Search at scale: 1,000,000 windows, top-10 latency (p50, p99) and recall@10 against exact search.

    .venv/bin/python benchmarks/bench_search.py            # 1,000,000 windows
    .venv/bin/python benchmarks/bench_search.py --quick    # 10,000 windows, IVF forced (checks the benchmark works)

The index is the one `soundsift` builds for that many vectors (indexer/faiss_factory.py: IVF with 8-bit
codes, nprobe tuned at build time), searched through VectorIndex one query at a time, as the API does.
Queries are unseen: other stored vectors pushed about 60 degrees away (text vectors sit far from audio
ones in CLAP's space). Exact top-10 comes from a brute-force pass over the same float32 vectors.
Also reported: the build time, the index's memory, and serving memory per million windows (a fresh
process reading the index file and scoring the float16 window matrix once: anonymous and mapped RSS).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SERVE_PROBE = r"""
import json, sys, time
from pathlib import Path
def rss():
    f = dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines() if ":" in l)
    return {k: int(f[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile", "VmRSS")}
import faiss, numpy as np, torch
from indexer.matrix import WindowMatrix
from indexer.vectors import VectorIndex
before = rss()
t = time.perf_counter()
index = VectorIndex(Path(sys.argv[1]), faiss.read_index(sys.argv[2]), 1)
load_s = time.perf_counter() - t
index.search(np.ones((1, index._index.d), np.float32) / index._index.d ** 0.5, 10)
after_index = rss()
wm = WindowMatrix.load(Path(sys.argv[1]), 1)
labels = torch.randn(10, wm.vectors.shape[1])
for c in wm.chunks(65536):
    torch.from_numpy(np.ascontiguousarray(c.vectors)).float() @ labels.T
after_matrix = rss()
print(json.dumps({"before": before, "after_index": after_index, "after_matrix": after_matrix, "index_load_s": load_s}))
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10,000 windows with IVF forced (checks the benchmark works)"
    )
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    import faiss
    from bench_index import machine
    from synthetic_vectors import clustered_unit_vectors, write_matrix

    from indexer import faiss_factory
    from indexer.vectors import VectorIndex

    n = 10_000 if args.quick else args.windows
    flat_max = 1_000 if args.quick else None
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    vectors = np.concatenate([x for _, x in clustered_unit_vectors(n)])  # float32, the same stream as the matrix
    ids = np.arange(1, n + 1, dtype=np.int64)
    chunks = lambda: ((ids[i : i + 65_536], vectors[i : i + 65_536]) for i in range(0, n, 65_536))  # noqa: F821 (called before the del below)
    t = time.perf_counter()
    index, info = faiss_factory.build_index(vectors.shape[1], n, chunks, flat_max=flat_max)
    build_s = time.perf_counter() - t
    vi = VectorIndex(work, index, 1)
    rng = np.random.default_rng(7)
    queries = faiss_factory.tuning_queries(
        vectors[rng.choice(n, size=min(n, 20_000), replace=False)], 100 if args.quick else args.queries, seed=11
    )
    truth = faiss_factory.exact_top_k(queries, chunks(), 10)
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, got = vi.search(q[None, :], 10)
        latencies.append(time.perf_counter() - t)
        found.append(got[0])
    recall = faiss_factory.recall_at_k(np.stack(found), truth)
    path = work / "vectors-1.faiss"
    faiss.write_index(index, str(path))
    del vectors
    write_matrix(work, n)
    probe = json.loads(
        subprocess.run(
            [sys.executable, "-c", SERVE_PROBE, str(work), str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    per_million = 1e6 / n
    anon = probe["after_matrix"]["RssAnon"] - probe["before"]["RssAnon"]
    mapped = probe["after_matrix"]["RssFile"] - probe["before"]["RssFile"]
    result = {
        "machine": machine(),
        "windows": n,
        "index": faiss_factory.describe(index),
        "build": info,
        "build_s": round(build_s, 1),
        "queries": len(queries),
        "p50_ms": round(1e3 * float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(1e3 * float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(recall, 4),
        "index_file_mb": round(path.stat().st_size / 2**20, 1),
        "serving_anon_mb_per_million": round(anon * per_million, 1),
        "serving_mapped_mb_per_million": round(mapped * per_million, 1),
        "index_load_s": round(probe["index_load_s"], 2),
    }
    print(f"machine: {result['machine']}; {n:,} windows, {result['index']}, built in {build_s:.1f} s ({info})")
    print(
        f"top-10, one query at a time ({len(queries)} queries): p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"recall@10 vs exact {recall:.3f}"
    )
    print(
        f"serving memory per million windows: {result['serving_anon_mb_per_million']:.0f} MB private (FAISS) + "
        f"{result['serving_mapped_mb_per_million']:.0f} MB mapped window matrix (page cache, shared, evictable); "
        f"index file {result['index_file_mb']:.0f} MB, loads in {result['index_load_s']:.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
