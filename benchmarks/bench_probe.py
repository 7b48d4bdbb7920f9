"""Probes at scale: train on 1,000 examples (target < 1 s), score 1,000,000 stored windows (target < 1 s).

    .venv/bin/python benchmarks/bench_probe.py           # 1,000 examples, 1,000,000 windows
    .venv/bin/python benchmarks/bench_probe.py --quick   # 200 examples, 20,000 windows (checks the benchmark works)

Vectors are synthetic clustered unit vectors in a memory-mapped float16 window matrix, written exactly as
indexer/matrix.py writes an index's (benchmarks/synthetic_vectors.py). Side by side in one run:
- training: `search.core.probes.fit` (class-balanced logistic regression plus the cross-validated figures
  `soundsift train` reports) against a bare scikit-learn LogisticRegression fit on the same vectors;
- scoring: the probe's logits over every window (one matrix product per chunk of the memory map), the
  `classify --probe` path (logits -> softmax policy -> the best 100 rows), and `search --probe` (the best 10
  windows of one class), against a label set of as many labels through the same classification path.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in seconds (the first run also warms caches and imports)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def training(examples: int, classes: int, dim: int = 512) -> dict:
    from sklearn.linear_model import LogisticRegression
    from synthetic_vectors import clustered_unit_vectors
    from threadpoolctl import threadpool_limits

    from search.core.probes import fit

    _, x = next(clustered_unit_vectors(examples, dim, clusters=classes * 3, seed=3))
    # each class is three clusters of the synthetic archive (labels follow the cluster a vector was drawn near)
    centres = next(clustered_unit_vectors(classes * 3, dim, clusters=classes * 3, noise=0.0, seed=3))[1]
    labels_idx = (x @ centres.T).argmax(axis=1) % classes
    names = [f"class{i}" for i in range(classes)]
    labels = [names[i] for i in labels_idx]
    out = {"examples": examples, "classes": classes}
    out["probe_fit_with_cv_s"] = best_of(lambda: fit(x, labels, names))

    def bare():
        return LogisticRegression(class_weight="balanced", max_iter=2000).fit(x, labels_idx)

    out["sklearn_fit_s"] = best_of(bare)
    with threadpool_limits(1):
        out["sklearn_fit_1thread_s"] = best_of(bare)
    _, _, metrics = fit(x, labels, names)
    out["cv_accuracy"] = metrics.get("cv_accuracy")
    return out


def scoring(n: int, classes: int, chunk: int) -> dict:
    import torch
    from synthetic_vectors import WINDOWS_PER_FILE, unit_vectors, write_matrix

    from indexer.teach_store import ProbeRecord
    from plugins.contract import LabelTexts
    from plugins.manager import default_plugins
    from search.core.classify import ClassifyOptions, LabelMatrix, score_chunks
    from search.core.probes import probe_top
    from search.core.scorers import ProbeScorer

    work = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    t = time.perf_counter()
    wm = write_matrix(work, n)
    write_s = time.perf_counter() - t
    weights = unit_vectors(classes, seed=7) * 20.0
    record = ProbeRecord(
        "bench",
        1,
        tuple(f"class{i}" for i in range(classes)),
        weights,
        np.zeros(classes, np.float32),
        "synthetic",
        "f" * 64,
        "",
        {},
        "",
    )
    scorer = ProbeScorer(record)
    softmax = default_plugins().policies["softmax"]
    paths = {fid: f"/archive/file{fid:06d}.wav" for fid in range(1, n // WINDOWS_PER_FILE + 2)}
    labels = LabelMatrix(
        labels=[LabelTexts(f"label{i}", (f"label{i}",)) for i in range(classes)],
        positive=torch.from_numpy(unit_vectors(classes, seed=7)),
        negative=torch.zeros((0, 512)),
        negative_owner=np.zeros(0, np.int64),
        logit_scale=33.0,
    )

    def logits_only():
        for c in wm.chunks(chunk):
            scorer.logits(c.vectors)

    def classify_top(matrix):
        return lambda: list(score_chunks(wm.chunks(chunk), paths, matrix, softmax, None, ClassifyOptions(top=100)))

    return {
        "windows": n,
        "matrix_dtype": str(wm.vectors.dtype),
        "matrix_write_s": round(write_s, 2),
        "probe_logits_s": best_of(logits_only),
        "probe_classify_top100_s": best_of(classify_top(scorer)),
        "probe_search_top10_s": best_of(lambda: probe_top(scorer, "class0", wm, 10, None, chunk)),
        "labels_classify_top100_s": best_of(classify_top(labels)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benchmark runs")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    examples, n = (200, 20_000) if args.quick else (args.examples, args.windows)
    import torch

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "train": training(examples, args.classes),
        "score": scoring(n, args.classes, args.chunk),
    }
    tr, sc = result["train"], result["score"]
    print(f"machine: {result['machine']}")
    print(f"train on {tr['examples']:,} examples, {tr['classes']} classes (target < 1 s):")
    print(f"  probe fit + 5-fold CV  {tr['probe_fit_with_cv_s']:.3f} s   (cv accuracy {tr['cv_accuracy']})")
    print(f"  bare sklearn fit       {tr['sklearn_fit_s']:.3f} s   (baseline; default threads)")
    print(f"  bare sklearn fit       {tr['sklearn_fit_1thread_s']:.3f} s   (baseline; one thread, as the probe fits)")
    print(f"score {sc['windows']:,} windows ({sc['matrix_dtype']} memory map; target < 1 s):")
    print(f"  probe logits           {sc['probe_logits_s']:.3f} s")
    print(f"  classify --probe top   {sc['probe_classify_top100_s']:.3f} s")
    print(f"  search --probe top 10  {sc['probe_search_top10_s']:.3f} s")
    print(
        f"  classify --labels top  {sc['labels_classify_top100_s']:.3f} s   (baseline: a label set of {args.classes})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
