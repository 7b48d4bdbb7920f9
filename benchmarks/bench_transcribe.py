"""Transcription speed and full-text query latency, each beside its baseline, one JSON document on stdout.

    .venv/bin/python benchmarks/bench_transcribe.py                     # 2 batches of 4 windows; 1M segments
    .venv/bin/python benchmarks/bench_transcribe.py --segments 100000 --batches 1
    .venv/bin/python benchmarks/bench_transcribe.py --quick --json out.json   # seconds: a tiny Whisper (CI)

1. Windows/s on CPU: a Whisper in openai/whisper-tiny's geometry (4 + 4 layers, width 384, 51865 tokens)
   with random weights (indexer/tiny_asr.py), 10 s windows at 48 kHz, through the built-in transcriber
   (soxr 48 -> 16 kHz, the transformers ASR pipeline) exactly as `soundsift transcribe` runs it; beside
   it, the bare `pipeline("automatic-speech-recognition")` on the same 16 kHz audio. Random weights never
   say "end", so every window decodes `--max-new-tokens` tokens (default 32, about what 10 s of speech
   takes); one warm-up batch, then the best and mean over the timed batches.
2. Full-text query latency over `--segments` transcript segments (default 1,000,000; Chinese and English
   words drawn Zipf-like from the translator's vocabulary and a word list) in the FTS5 index soundsift
   builds (indexer/fulltext.py): p50/p95 of parse + top-10 search for words, OR, phrases and prefixes
   (target p50 <= 20 ms); beside it, the same queries as a plain substring scan over the texts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CACHE = REPO / "benchmarks" / ".cache"
SR = 48_000
ENGLISH = (
    "refund complaint manager order delivery late broken angry help please cancel account password "
    "payment card charge twice wrong number call back supervisor thank you waiting hours customer "
    "service terrible problem again today tomorrow money back replace"
).split()
QUERIES = (
    "投诉",
    "退款 OR 投诉",
    "客户",
    '"wrong number"',
    "refun*",
    "supervisor",
    "紧急 求助",
    "charge twice",
    "退款 NOT 投诉",
)


def _rate(run, windows: list[np.ndarray], batch: int, batches: int) -> dict:
    run(windows[:batch])  # warm-up
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
    }


def bench_windows(batch: int, batches: int, max_new_tokens: int, geometry: str = "whisper-tiny") -> dict:
    import torch
    from transformers import pipeline

    from indexer.tiny_asr import build_random_whisper
    from plugins.builtin.transcriber import TransformersTranscriber

    model = build_random_whisper(
        CACHE / f"whisper-{geometry}-random-{max_new_tokens}", geometry, max_new_tokens=max_new_tokens
    )
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(10 * SR)).astype(np.float32) for _ in range(batch * (batches + 1))]
    ours = TransformersTranscriber(str(model), batch_size=batch, max_new_tokens=max_new_tokens, device="cpu")
    soundsift = _rate(lambda ws: ours.transcribe(ws, SR), windows, batch, batches)
    pipe = pipeline("automatic-speech-recognition", model=str(model), device="cpu")
    at16 = [ours.prepare(w, SR) for w in windows]
    bare = _rate(
        lambda ws: pipe(ws, batch_size=batch, generate_kwargs={"max_new_tokens": max_new_tokens}), at16, batch, batches
    )
    return {
        "model": f"{geometry} geometry, random weights",
        "max_new_tokens": max_new_tokens,
        "batch": batch,
        "torch_threads": torch.get_num_threads(),
        "soundsift_transcriber": soundsift,
        "baseline_pipeline_16k": bare,
    }


def _corpus(n: int, seed: int = 0) -> list[str]:
    from plugins.builtin.translate_zh.vocabulary import get_vocabulary

    chinese = sorted(w for w in get_vocabulary().entries if 2 <= len(w) <= 4)[:3000] + [
        "投诉",
        "退款",
        "客户",
        "紧急",
        "求助",
    ]
    words = np.array(chinese + ENGLISH)
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 0.9
    rng.shuffle(weights)
    weights /= weights.sum()
    lengths = rng.integers(4, 16, size=n)
    picks = rng.choice(len(words), size=int(lengths.sum()), p=weights)
    out, i = [], 0
    for length in lengths:
        out.append(" ".join(words[picks[i : i + length]]))
        i += length
    return out


def bench_queries(segments: int, repeats: int) -> dict:
    from indexer.fulltext import FullTextIndex
    from search.core.said import parse_said

    texts = _corpus(segments)
    with tempfile.TemporaryDirectory() as tmp:
        ft = FullTextIndex(Path(tmp))
        t = time.perf_counter()
        ft._add(ft._connect(), [(i, "bench", text) for i, text in enumerate(texts)], 1)
        build_s = time.perf_counter() - t
        size_mb = (Path(tmp) / "transcripts.fts.sqlite").stat().st_size / 1e6
        per_query: dict[str, dict] = {}
        all_times = []
        for q in QUERIES:
            times, hits = [], 0
            for _ in range(repeats):
                t = time.perf_counter()
                hits = len(ft.search(parse_said(q).expression, 10))
                times.append((time.perf_counter() - t) * 1000)
            all_times += times
            per_query[q] = {"p50_ms": round(float(np.median(times)), 3), "hits": hits}
        ft.close()
    scan_times = []
    for q in ("投诉", "supervisor", "wrong number"):  # the baseline: a substring scan finds every match, unranked
        t = time.perf_counter()
        _ = [i for i, text in enumerate(texts) if q in text][:10]
        scan_times.append((time.perf_counter() - t) * 1000)
    return {
        "segments": segments,
        "build_s": round(build_s, 2),
        "fts_file_mb": round(size_mb, 1),
        "fts5_top10_p50_ms": round(float(np.median(all_times)), 3),
        "fts5_top10_p95_ms": round(float(np.percentile(all_times, 95)), 3),
        "target_p50_ms": 20.0,
        "per_query": per_query,
        "baseline_substring_scan_p50_ms": round(float(np.median(scan_times)), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-windows", action="store_true", help="only the full-text part")
    parser.add_argument("--quick", action="store_true", help="a tiny Whisper, 2 windows, 5,000 segments (CI)")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.batches, args.max_new_tokens, args.segments, args.repeats = 2, 1, 8, 5_000, 3
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    print(f"machine: {machine}", flush=True)
    doc: dict = {"machine": machine, "queries": bench_queries(args.segments, args.repeats)}
    q = doc["queries"]
    print(
        f"full text over {q['segments']:,} segments: top-10 p50 {q['fts5_top10_p50_ms']} ms, p95 {q['fts5_top10_p95_ms']} ms "
        f"(target p50 <= 20 ms); substring scan p50 {q['baseline_substring_scan_p50_ms']} ms; built in {q['build_s']} s",
        flush=True,
    )
    if not args.skip_windows:
        doc["transcribe"] = t = bench_windows(
            args.batch, args.batches, args.max_new_tokens, "tiny" if args.quick else "whisper-tiny"
        )
        print(
            f"transcribe ({t['model']}, {t['max_new_tokens']} tokens/window): "
            f"{t['soundsift_transcriber']['mean_windows_per_s']} windows/s; bare pipeline at 16 kHz "
            f"{t['baseline_pipeline_16k']['mean_windows_per_s']} windows/s",
            flush=True,
        )
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    return doc


if __name__ == "__main__":
    main()
