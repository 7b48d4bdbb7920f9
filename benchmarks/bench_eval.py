"""Evaluation after embedding: 2,000 clips x 50 labels x 4 variants scored, and the 2,000-clip report drawn in a browser.

    .venv/bin/python benchmarks/bench_eval.py           # 2,000 clips, 50 labels, 4 variants
    .venv/bin/python benchmarks/bench_eval.py --quick   # 200 clips, 10 labels, 2 variants (checks the benchmark works)

Clip vectors are synthetic unit vectors near their class's direction (so the metrics are not trivial), one or
two windows per clip. Timed, side by side in one run:
- scoring: every variant's clip scores as `soundsift eval` computes them (logits, the policy, the file
  aggregation over each clip's windows), against the baseline of the same scores built as `classify --by file`
  rows (one row object per clip, the path before the vectorised aggregation);
- the whole evaluation: scoring plus every metric, threshold, curve and the retrieval view (`evaluate`);
- rendering: the self-contained HTML report of the 2,000-clip sample opened in headless chromium, from
  navigation start to the end of drawing (skipped when chromium is absent).
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
sys.path.insert(0, str(HERE.parent))
CHROMIUM = "/usr/bin/chromium"
POLICIES = ["softmax", "margin", "multilabel", "softmax"]


def synthetic(clips: int, labels: int, dim: int = 512, seed: int = 0):
    """(EmbeddedSample, variants): clips near their class's direction; variants = policies x text perturbations."""
    import torch

    from plugins.contract import LabelTexts
    from plugins.manager import default_plugins
    from search.core.eval_clips import EmbeddedSample
    from search.core.evaluate import Variant
    from search.core.samples import SampleClip
    from search.core.scorers import LabelSetScorer

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((labels, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    truth = rng.integers(0, labels, clips)
    windows = rng.integers(1, 3, clips)  # one or two windows per clip
    owner = np.repeat(np.arange(clips), windows)
    vectors = centers[truth[owner]] * 0.12 + rng.standard_normal((len(owner), dim)).astype(np.float32) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = [f"class {j:02d}" for j in range(labels)]
    sample = EmbeddedSample(
        clips=[
            SampleClip(Path(f"/sample/{names[t]}/clip{i:05d}.wav"), 0.0, None, (names[t],)) for i, t in enumerate(truth)
        ],
        vectors=vectors.astype(np.float32),
        clip_of_window=owner.astype(np.int64),
    )
    policies = default_plugins().policies
    variants = []
    for v in range(4):
        text = centers + (0.05 * v) * rng.standard_normal(centers.shape).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        scorer = LabelSetScorer(
            labels=[LabelTexts(n, (f"This is a sound of {n}.",), ()) for n in names],
            positive=torch.from_numpy(text),
            negative=torch.zeros((0, dim)),
            negative_owner=np.zeros(0, np.int64),
            logit_scale=33.0,
        )
        policy = POLICIES[v % len(POLICIES)]
        variants.append(
            Variant(f"variant {v} ({policy})", scorer, policies[policy], policy, {}, "This is a sound of {}.")
        )
    return sample, variants


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def time_scoring(sample, variants, repeat: int = 3) -> dict:
    from search.core.classify import ClassifyOptions, in_memory_chunks, score_chunks
    from search.core.evaluate import clip_scores, evaluate

    def ours():
        for v in variants:
            clip_scores(sample, v)

    def baseline():  # the same file rows, built as `classify --by file` builds them
        for v in variants:
            chunk = in_memory_chunks(sample.vectors, [(0.0, 10.0)] * len(sample.vectors))[0]
            chunk.file_ids = sample.clip_of_window
            rows = list(score_chunks(iter([chunk]), _Paths(), v.scorer, v.policy, None, ClassifyOptions(by="file")))
            assert len(rows) == len(sample.clips)

    ours()  # warm: torch's first matmul, sklearn imports
    scoring_s = _best_of(ours, repeat)
    baseline_s = _best_of(baseline, 1)
    evaluate(sample, variants[:1])  # warm: scikit-learn's first calls import and compile
    t = time.perf_counter()
    report = evaluate(sample, variants, source="synthetic", layout="synthetic")
    evaluate_s = time.perf_counter() - t
    return {
        "scoring_s": round(scoring_s, 4),
        "baseline_rows_s": round(baseline_s, 4),
        "evaluate_s": round(evaluate_s, 3),
    }, report


class _Paths(dict):
    def __missing__(self, key):
        return f"/sample/clip{key}.wav"


def time_render(report, work: Path) -> dict:
    """Open the HTML report in headless chromium: milliseconds from navigation start to the end of drawing."""
    from search.core.eval_report import write_html

    page_path = write_html(report, work / "report.html")
    if not Path(CHROMIUM).exists():
        return {"render_ms": None, "render_note": f"{CHROMIUM} is absent"}
    from playwright.sync_api import sync_playwright

    from tests.api_server import CHROMIUM_ARGS

    best, cells = float("inf"), 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(3):
                page = browser.new_page()
                page.goto(page_path.as_uri())
                page.wait_for_selector("#report[data-rendered='1']")
                best = min(best, page.evaluate("performance.now()"))
                cells = page.evaluate("document.querySelectorAll('svg rect, td').length")
                page.close()
        finally:
            browser.close()
    return {"render_ms": round(best, 1), "drawn_elements": cells, "html_bytes": page_path.stat().st_size}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 clips, 10 labels, 2 variants")
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine

    clips, labels, count = (200, 10, 2) if args.quick else (args.clips, args.labels, 4)
    sample, variants = synthetic(clips, labels)
    variants = variants[:count]
    timing, report = time_scoring(sample, variants)
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    result = {
        "machine": machine(),
        "clips": clips,
        "windows": int(len(sample.vectors)),
        "labels": labels,
        "variants": count,
        **timing,
        "accuracy": round(report.accuracy, 4),
        "misclassified": len(report.misclassified),
        **time_render(report, work),
    }
    print(f"machine: {result['machine']}")
    print(
        f"{clips:,} clips ({result['windows']:,} windows) x {labels} labels x {count} variants: scoring "
        f"{result['scoring_s']:.3f} s (as classify --by file rows: {result['baseline_rows_s']:.3f} s); "
        f"whole evaluation with metrics {result['evaluate_s']:.2f} s; accuracy {result['accuracy']:.3f}"
    )
    if result.get("render_ms") is not None:
        print(
            f"report in chromium: drawn {result['render_ms']:.0f} ms after navigation start "
            f"({result['drawn_elements']:,} cells and rects, {result['html_bytes'] / 1e6:.2f} MB page)"
        )
    else:
        print(f"report rendering not measured: {result.get('render_note')}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
