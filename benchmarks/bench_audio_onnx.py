"""The CLAP audio tower on this CPU: torch fp32 against ONNX Runtime and OpenVINO, same windows, same run.

    .venv/bin/python benchmarks/bench_audio_onnx.py            # full-size CLAP geometry (random weights)
    .venv/bin/python benchmarks/bench_audio_onnx.py --quick    # tiny model (checks the benchmark works)

Both sides get the same log-mel features (indexer/features.py, torch, float64 STFT: ONNX Runtime has no
float64 STFT kernel on the CPU); the tower (HTSAT fusion branch with ``is_longer=True``, projection, L2
normalisation) runs in torch and, exported once with ``torch.onnx.export``, in an ONNX Runtime session with
all graph optimisations and in OpenVINO (the same ONNX file compiled for the CPU at fp32, as
indexer/audio_openvino.py does; skipped where OpenVINO is not installed). Reported: seconds per window for
each (best batch forward, like the matmul peak), the largest difference between their unit vectors and
torch's, the features' own cost, and each tower's share of the machine's fp32 matmul peak (torch.mm, all
threads) measured in the same run. The verdict names the runtime that qualifies as the CPU default: the
fastest, faster than torch, with every vector within 1e-4 of torch's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def best_of(fn, seconds: float) -> float:
    """The fastest of repeated calls of ``fn`` within about ``seconds`` (at least two)."""
    fn()
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < 2 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model (checks the benchmark works)")
    parser.add_argument("--model", type=Path, help="a CLAP directory (default: the full-size random one)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="time spent on each side's repeats")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import onnxruntime as ort
    import torch
    from bench_index import machine, matmul_peak_gflops
    from torch.utils.flop_counter import FlopCounterMode

    from indexer.audio_onnx import audio_tower_module
    from indexer.audio_openvino import openvino_installed
    from indexer.model import load_clap

    work = Path(tempfile.mkdtemp(prefix="bench-audio-onnx-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model_dir, seconds, batch = build_tiny_clap(work / "tiny"), 1.0, 2
    else:
        from full_size_clap import build_full_size_clap

        model_dir = args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size")
        seconds, batch = args.seconds, args.batch
    load0 = os.getloadavg()[0]
    encoder = load_clap(str(model_dir), device="cpu")
    rng = np.random.default_rng(0)
    waves = torch.from_numpy((0.1 * rng.standard_normal((batch, encoder.window_samples))).astype(np.float32))
    with torch.inference_mode():
        feats = encoder.features(waves)
    longer = torch.ones((batch, 1), dtype=torch.bool)

    tower = audio_tower_module(encoder.model)  # the module the indexer's audio export traces
    path = work / "audio_tower.onnx"
    t = time.perf_counter()
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tower,
            (feats, longer),
            str(path),
            input_names=["input_features", "is_longer"],
            output_names=["vector"],
            dynamic_axes={"input_features": {0: "batch"}, "is_longer": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    export_s = time.perf_counter() - t
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input_features": feats.numpy(), "is_longer": longer.numpy()}

    with torch.inference_mode():
        reference = encoder.embed_waveforms(waves)  # the indexer's own call: features + tower + projection
        with FlopCounterMode(display=False) as counter:
            tower(feats[:1], longer[:1])
        gflop = counter.get_total_flops() / 1e9
        torch_s = best_of(lambda: tower(feats, longer), seconds) / batch
        features_s = best_of(lambda: encoder.features(waves), max(1.0, seconds / 4)) / batch
    onnx_vectors = session.run(None, feed)[0]
    onnx_s = best_of(lambda: session.run(None, feed), seconds) / batch
    diff = float(np.max(np.abs(onnx_vectors - reference)))
    ov_s = ov_diff = None
    if openvino_installed():
        import openvino as ov

        from indexer.audio_openvino import CONFIG

        compiled = ov.Core().compile_model(str(path), "CPU", CONFIG)
        request = compiled.create_infer_request()
        ov_vectors = np.array(request.infer(feed)[compiled.output(0)])
        ov_s = best_of(lambda: request.infer(feed), seconds) / batch
        ov_diff = float(np.max(np.abs(ov_vectors - reference)))
    peak = matmul_peak_gflops(1024 if args.quick else 2048, 2 if args.quick else 5)
    candidates = {"onnxruntime": (onnx_s, diff), "openvino": (ov_s, ov_diff)}
    ok = {
        name: s for name, (s, d) in candidates.items() if s is not None and d is not None and s < torch_s and d <= 1e-4
    }
    default = min(ok, key=ok.__getitem__) if ok else "torch"
    result = {
        "machine": machine(),
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "torch_threads": torch.get_num_threads(),
        "batch": batch,
        "export_s": round(export_s, 1),
        "features_s_per_window": round(features_s, 4),
        "torch_tower_s_per_window": round(torch_s, 4),
        "onnx_tower_s_per_window": round(onnx_s, 4),
        "onnx_speedup": round(torch_s / onnx_s, 3),
        "max_abs_diff": diff,
        "tower_gflop_per_window": round(gflop, 3),
        "matmul_peak_gflops": round(peak, 1),
        "torch_share_of_peak": round(gflop / torch_s / peak, 3),
        "onnx_share_of_peak": round(gflop / onnx_s / peak, 3),
        "openvino_tower_s_per_window": None if ov_s is None else round(ov_s, 4),
        "openvino_speedup": None if ov_s is None else round(torch_s / ov_s, 3),
        "openvino_max_abs_diff": ov_diff,
        "openvino_share_of_peak": None if ov_s is None else round(gflop / ov_s / peak, 3),
        "onnx_qualifies_as_cpu_default": default == "onnxruntime",
        "cpu_default": default,
    }
    print(f"machine: {result['machine']}; load average {result['load_average']}; batch {batch}")
    openvino = (
        "not installed" if ov_s is None else f"{ov_s:.4f} s ({torch_s / ov_s:.2f}x torch, max |diff| {ov_diff:.2e})"
    )
    print(
        f"audio tower per window: torch fp32 {torch_s:.4f} s, ONNX Runtime {onnx_s:.4f} s "
        f"({result['onnx_speedup']:.2f}x torch, max |diff| {diff:.2e}), OpenVINO {openvino}; features {features_s:.4f} s"
    )
    shares = (
        f"torch {100 * result['torch_share_of_peak']:.0f} %, ONNX Runtime {100 * result['onnx_share_of_peak']:.0f} %"
    )
    if ov_s is not None:
        shares += f", OpenVINO {100 * result['openvino_share_of_peak']:.0f} %"
    print(f"tower {gflop:.2f} GFLOP/window; matmul peak {peak:.1f} GFLOP/s: {shares} of it; CPU default: {default}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
