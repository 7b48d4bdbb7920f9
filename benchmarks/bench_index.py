"""Indexing speed: the same files through `soundsift index` and through the transformers pipeline, side by side.

    .venv/bin/python benchmarks/bench_index.py            # 20 files (200 windows, wav + mp3), full-size CLAP
    .venv/bin/python benchmarks/bench_index.py --quick    # tiny model, 2 short files: checks the benchmark works

Both sides decode and resample (soundfile / PyAV + soxr, the same libraries) and embed with the same random
full-size `laion/clap-htsat-fused` geometry; the pipeline is called window by window with the labels, as
its users do. Also measured in this run: the machine's fp32 matmul peak (torch.mm, all threads) and the
audio tower's FLOPs and time per window at the indexer's batch size, i.e. its share of that peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
LABELS = ["a dog barking", "glass breaking", "a bell ringing", "abnormal bearing noise", "engine idling"]
KINDS = ["bearing", "bell", "bark", "glass", "engine", "noise", "chirp", "tone"]


def write_archive(root: Path, files: int, seconds: float, rate: int = 44_100) -> list[Path]:
    """``files`` files of ``seconds`` each at 44.1 kHz (so both sides resample), alternating wav and mp3."""
    from search.demo_audio import synthesize, write_audio

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        audio = synthesize(KINDS[i % len(KINDS)], seconds, rate, seed=i)
        paths.append(write_audio(root / f"clip{i:03d}.{'wav' if i % 2 == 0 else 'mp3'}", audio, rate))
    return paths


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate of torch.mm with the process's threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


def tower_rate(encoder, batch: int, seconds: float) -> tuple[float, float]:
    """(GFLOP per window, seconds per window) of the audio tower alone at ``batch`` windows per forward.

    The best forward of those run in ``seconds``, like the matmul peak: both are what the cores deliver
    when nothing else runs on them (other processes on a shared machine only ever slow a run down)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.from_numpy(
        np.random.default_rng(0).standard_normal((batch, encoder.window_samples)).astype(np.float32) * 0.1
    )
    feats = encoder.features(x)
    longer = torch.ones((batch, 1), dtype=torch.bool)
    model = encoder.model.audio_model
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(input_features=feats[:1], is_longer=longer[:1])
        model(input_features=feats, is_longer=longer)
        best, start = float("inf"), time.perf_counter()
        while best == float("inf") or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            model(input_features=feats, is_longer=longer)
            best = min(best, (time.perf_counter() - t) / batch)
        return counter.get_total_flops() / 1e9, best


def cpu_s() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def pipeline_side(model_dir: Path, paths: list[Path]) -> tuple[int, float, float, float]:
    """(windows, seconds, CPU seconds, load seconds): decode + resample + pipeline(window, labels) per 10 s window."""
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from indexer.decode import TARGET_RATE, DecodeLimits, mono_48k_blocks, open_audio
    from indexer.windows import WindowCutter
    from plugins.manager import build_plugin_manager

    hf_logging.set_verbosity_error()
    t = time.perf_counter()
    clf = pipeline("zero-shot-audio-classification", model=str(model_dir), device="cpu")
    load_s = time.perf_counter() - t
    decoders = build_plugin_manager().decoders
    limits = DecodeLimits()
    windows, t, cpu0 = 0, time.perf_counter(), cpu_s()
    for path in paths:
        cutter = WindowCutter(10 * TARGET_RATE, 10 * TARGET_RATE)
        opened = open_audio(path, decoders, {}, limits)
        pieces = [w for block in mono_48k_blocks(opened, limits) for w in cutter.feed(block)] + list(cutter.finish())
        for span, audio in pieces:
            clf(audio[: span.length], candidate_labels=LABELS)
            windows += 1
    return windows, time.perf_counter() - t, cpu_s() - cpu0, load_s


def soundsift_side(model_dir: Path, archive: Path, index_dir: Path) -> tuple[dict, float]:
    """(the run's --json report, wall seconds of the whole command, model load included)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.cli",
            "index",
            str(archive),
            "--index",
            str(index_dir),
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"soundsift index failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), wall


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 short files (checks the benchmark works)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=100.0, help="length of each file")
    parser.add_argument("--model", type=Path, help="a CLAP directory (default: the full-size random one, built once)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    from indexer.model import load_clap
    from indexer.runner import auto_batch_size

    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model_dir, files, seconds = build_tiny_clap(work / "tiny-clap"), 2, 12.0
    else:
        from full_size_clap import build_full_size_clap

        model_dir, files, seconds = (
            args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size"),
            args.files,
            args.seconds,
        )
    paths = write_archive(work / "archive", files, seconds)
    peak = matmul_peak_gflops(1024 if args.quick else 2048, 2 if args.quick else 5)
    before_load = os.getloadavg()[0]
    report, wall = soundsift_side(model_dir, work / "archive", work / "index")
    load0 = os.getloadavg()[0]
    pipe_windows, pipe_s, pipe_cpu_s, pipe_load_s = pipeline_side(model_dir, paths)
    encoder = load_clap(str(model_dir), device="cpu")
    batch = auto_batch_size(encoder)
    gflop, tower_s = tower_rate(encoder, batch, 1.0 if args.quick else 30.0)
    peak = max(peak, matmul_peak_gflops(1024 if args.quick else 2048, 2 if args.quick else 5))
    run_s = report["timings"]["total_s"]
    run_cpu_s = report["timings"].get("cpu_s", float("nan"))
    ours = report["windows"] / run_s
    theirs = pipe_windows / pipe_s
    result = {
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "files": files,
        "windows": report["windows"],
        "pipeline_windows": pipe_windows,
        "labels": len(LABELS),
        "soundsift_windows_per_s": round(ours, 3),
        "soundsift_command_wall_s": round(wall, 2),
        "soundsift_windows_per_s_with_startup": round(report["windows"] / wall, 3),
        "soundsift_run_s": run_s,
        "soundsift_timings": report["timings"],
        "pipeline_windows_per_s": round(theirs, 3),
        "pipeline_s": round(pipe_s, 2),
        "pipeline_load_s": round(pipe_load_s, 2),
        "ratio": round(ours / theirs, 2),
        "ratio_with_startup": round((report["windows"] / wall) / theirs, 2),
        "soundsift_cpu_s": round(run_cpu_s, 1),
        "pipeline_cpu_s": round(pipe_cpu_s, 1),
        "ratio_cpu": round((report["windows"] / run_cpu_s) / (pipe_windows / pipe_cpu_s), 2),
        "load_average_before_after": [round(before_load, 2), round(load0, 2), round(os.getloadavg()[0], 2)],
        "matmul_peak_gflops": round(peak, 1),
        "tower_gflop_per_window": round(gflop, 3),
        "tower_batch": batch,
        "tower_s_per_window": round(tower_s, 4),
        "tower_gflops": round(gflop / tower_s, 1),
        "tower_share_of_peak": round(gflop / tower_s / peak, 3),
    }
    print(f"machine: {result['machine']} ({result['threads']} torch threads)")
    print(f"files: {files} ({report['windows']} windows, wav + mp3 at 44.1 kHz), {len(LABELS)} labels")
    print(f"soundsift index:   {ours:8.3f} windows/s  (run {run_s:.1f} s; whole command {wall:.1f} s incl. model load)")
    print(f"transformers pipe: {theirs:8.3f} windows/s  ({pipe_s:.1f} s; model load {pipe_load_s:.1f} s not counted)")
    print(f"ratio:             {result['ratio']:8.2f}x   ({result['ratio_with_startup']:.2f}x counting our model load)")
    print(
        f"per CPU second:    {result['ratio_cpu']:8.2f}x   (soundsift {run_cpu_s:.0f} CPU s incl. decode workers, "
        f"pipeline {pipe_cpu_s:.0f} CPU s; 1-min load average before/between/after: {result['load_average_before_after']})"
    )
    print(
        f"matmul peak {peak:.1f} GFLOP/s; tower {gflop:.2f} GFLOP/window, {tower_s:.3f} s/window at batch {batch} "
        f"= {gflop / tower_s:.1f} GFLOP/s = {100 * result['tower_share_of_peak']:.0f} % of peak"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def machine() -> str:
    """CPU model and core count (the README table names the machine its figures came from)."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "SSE"
    except OSError:
        isa = "?"
    return f"{name}, {os.cpu_count()} cores, {isa}"


if __name__ == "__main__":
    main()
