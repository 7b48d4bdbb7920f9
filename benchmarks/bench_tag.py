"""Tagging speed: a full-size AST classifier next to CLAP's full-size audio tower, on the same 10 s windows, CPU.

    .venv/bin/python benchmarks/bench_tag.py                 # 2 batches of 4 windows each side
    .venv/bin/python benchmarks/bench_tag.py --batches 1 --batch 2

The AST has `ASTConfig` defaults (12 layers, hidden 768, 1024 frames = 10.24 s, 128 mels; the 527
AudioSet labels) with random weights, as fast as real ones; it runs through the built-in classifier
tagger (soxr 48 -> 16 kHz, ASTFeatureExtractor, model, softmax, top 5), exactly as `soundsift tag`
does. CLAP is the full-size fused `laion/clap-htsat-fused` geometry (benchmarks/full_size_clap.py)
through the indexer's encoder (log-mel features + audio tower). Each side: one warm-up batch, then
the best and the mean windows/s over the timed batches; one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CACHE = REPO / "benchmarks" / ".cache"
SR = 48_000


def build_full_size_ast(target: Path, seed: int = 0) -> Path:
    """ASTConfig defaults with 527 labels and random weights (fixed seed), with its feature extractor."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    if (target / "config.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    labels = {i: f"class {i}" for i in range(527)}
    config = ASTConfig(id2label=labels, label2id={v: k for k, v in labels.items()})
    ASTForAudioClassification(config).eval().save_pretrained(target)
    ASTFeatureExtractor().save_pretrained(target)
    return target


def rate(run, windows: np.ndarray, batch: int, batches: int) -> dict:
    """Warm up on one batch, then time ``batches`` batches: best and mean windows/s."""
    run(windows[:batch])
    times = []
    for b in range(batches):
        chunk = windows[b * batch : (b + 1) * batch]
        t = time.perf_counter()
        run(chunk)
        times.append((time.perf_counter() - t) / len(chunk))
    return {
        "windows": batch * batches,
        "best_windows_per_s": round(1 / min(times), 3),
        "mean_windows_per_s": round(1 / float(np.mean(times)), 3),
        "s_per_window": [round(x, 3) for x in times],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="windows per forward pass (the CPU default of both)")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per side")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from benchmarks.full_size_clap import build_full_size_clap
    from indexer.model import load_clap
    from plugins.builtin.tag_classifier import TransformersClassifier

    hf_logging.set_verbosity_error()
    rng = np.random.default_rng(0)
    n = args.batch * args.batches
    t = np.arange(10 * SR) / SR
    windows = np.stack(
        [
            (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
            for i in range(n)
        ]
    )
    ast = TransformersClassifier(
        str(build_full_size_ast(CACHE / "ast-full-size")), top_k=5, device="cpu", batch_size=args.batch
    )
    clap = load_clap(str(build_full_size_clap(CACHE / "clap-full-size")), device="cpu")
    load0 = os.getloadavg()[0]
    tag = rate(lambda w: ast.classify(w, SR), windows, args.batch, args.batches)
    embed = rate(
        lambda w: clap.embed_waveforms(torch.from_numpy(np.ascontiguousarray(w))), windows, args.batch, args.batches
    )
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "ast_full_size": tag,
                "clap_audio_tower_full_size": embed,
                "ast_over_clap": round(tag["best_windows_per_s"] / embed["best_windows_per_s"], 3),
                "load_average_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
