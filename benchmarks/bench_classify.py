"""Classification at scale: 1,000,000 stored windows x 10 labels and x 1,000 labels, scored from the window matrix.

    .venv/bin/python benchmarks/bench_classify.py           # 1,000,000 windows
    .venv/bin/python benchmarks/bench_classify.py --quick   # 5,000 windows, 10 and 100 labels (checks the benchmark works)

What is timed is the archive path of `soundsift classify` after the label texts are embedded (they are
cached): float16 chunks of the memory-mapped matrix -> device -> logits (one matrix product per chunk)
-> the scoring policy -> the best 100 windows, or one row per file. Also timed: the archive policy's
per-label statistics, computed once, then served from the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run(n: int, label_counts: list[int], chunk_limit: int, logit_scale: float = 33.0) -> dict:
    import torch
    from synthetic_vectors import WINDOWS_PER_FILE, unit_vectors, write_matrix

    from plugins.contract import LabelTexts
    from plugins.manager import default_plugins
    from search.core.classify import ClassifyOptions, LabelMatrix, archive_stats, chunk_rows, score_chunks

    work = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    t = time.perf_counter()
    wm = write_matrix(work, n)
    write_s = time.perf_counter() - t
    policies = default_plugins().policies
    paths = {fid: f"/archive/file{fid:06d}.wav" for fid in range(1, n // WINDOWS_PER_FILE + 2)}
    out = {"windows": n, "matrix_dtype": str(wm.vectors.dtype), "matrix_write_s": round(write_s, 2), "runs": []}
    for labels_n in label_counts:
        chunk = chunk_rows(labels_n, chunk_limit)  # as SoundIndex.iter_classify chooses
        labels = [LabelTexts(label=f"label {i}", texts=[f"This is a sound of label {i}."]) for i in range(labels_n)]
        matrix = LabelMatrix(
            labels=labels,
            positive=torch.from_numpy(unit_vectors(labels_n)),
            negative=torch.zeros((0, 512)),
            negative_owner=np.zeros(0, np.int64),
            logit_scale=logit_scale,
        )
        list(
            score_chunks(
                wm.chunks(chunk, np.arange(min(n, chunk))),
                paths,
                matrix,
                policies["softmax"],
                None,
                ClassifyOptions(top=10),
            )
        )  # warm up (page cache, allocator)
        for policy, by in (("softmax", "window"), ("softmax", "file")):
            t = time.perf_counter()
            rows = list(
                score_chunks(
                    wm.chunks(chunk),
                    paths,
                    matrix,
                    policies[policy],
                    None,
                    ClassifyOptions(by=by, top=100 if by == "window" else None),
                )
            )
            out["runs"].append(
                {
                    "labels": labels_n,
                    "policy": policy,
                    "by": by,
                    "rows": len(rows),
                    "chunk": chunk,
                    "seconds": round(time.perf_counter() - t, 3),
                }
            )
        t = time.perf_counter()
        stats = wm.cached(("bench", labels_n), lambda: archive_stats(matrix, wm.chunks(chunk)))
        first = time.perf_counter() - t
        t = time.perf_counter()
        assert wm.cached(("bench", labels_n), lambda: None) is stats
        rows = list(score_chunks(wm.chunks(chunk), paths, matrix, policies["archive"], stats, ClassifyOptions(top=100)))
        out["runs"].append(
            {
                "labels": labels_n,
                "policy": "archive",
                "by": "window",
                "rows": len(rows),
                "stats_s": round(first, 3),
                "seconds": round(time.perf_counter() - t, 3),
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="5,000 windows, 10 and 100 labels (checks the benchmark works)"
    )
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine

    n = 5_000 if args.quick else args.windows
    result = {"machine": machine(), **run(n, [10, 100] if args.quick else [10, 1000], args.chunk)}
    print(f"machine: {result['machine']}; {n:,} windows ({result['matrix_dtype']} matrix)")
    for r in result["runs"]:
        extra = f" (archive statistics {r['stats_s']:.2f} s once, then cached)" if "stats_s" in r else ""
        chunk = f", chunks of {r['chunk']:,}" if "chunk" in r else ""
        print(
            f"{r['labels']:5d} labels  {r['policy']:8s} by {r['by']:6s}: {r['seconds']:7.3f} s  ({r['rows']} rows{chunk}){extra}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
