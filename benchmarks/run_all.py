"""Every benchmark in one go, then the README table of the figures (`make bench`; `--quick` checks they all work).

.venv/bin/python benchmarks/run_all.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["bench_index", "bench_classify", "bench_search", "bench_memory", "bench_cold_start", "bench_eval"]


def table(results: dict[str, dict]) -> str:
    """The markdown table of the latest figures, with the machine they came from."""
    rows = ["| benchmark | figure | target (2-core CPU) |", "|---|---|---|"]
    if r := results.get("bench_index"):
        rows.append(
            f"| index, {r['windows']} windows (wav + mp3), {r['labels']} labels | soundsift {r['soundsift_windows_per_s']:.2f} "
            f"windows/s vs pipeline {r['pipeline_windows_per_s']:.2f} = **{r['ratio']:.2f}x** | >= 2.5x |"
        )
        rows.append(
            f"| audio tower, batch {r['tower_batch']} | {r['tower_gflop_per_window']:.1f} GFLOP/window, {r['tower_s_per_window']:.3f} s/window "
            f"= {100 * r['tower_share_of_peak']:.0f} % of the measured {r['matmul_peak_gflops']:.0f} GFLOP/s matmul peak | >= 75 % |"
        )
    if r := results.get("bench_classify"):
        for run in r["runs"]:
            if run["policy"] == "softmax" and run["by"] == "window":
                target = "<= 1 s" if run["labels"] == 10 else "<= 10 s"
                rows.append(
                    f"| classify {r['windows']:,} windows x {run['labels']} labels (top 100) | {run['seconds']:.2f} s | {target} |"
                )
    if r := results.get("bench_search"):
        rows.append(
            f"| search {r['windows']:,} windows, top-10 ({r['index']['type']}, nprobe {r['index'].get('nprobe', '-')}) | "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, recall@10 {r['recall_at_10']:.3f} | p50 <= 20 ms at recall >= 0.95 |"
        )
        rows.append(
            f"| serving memory per million windows | {r['serving_anon_mb_per_million']:.0f} MB private + "
            f"{r['serving_mapped_mb_per_million']:.0f} MB mapped matrix | <= 1.2 GB |"
        )
    if r := results.get("bench_memory"):
        first, last = r["runs"][0], r["runs"][-1]
        rows.append(
            f"| peak RSS indexing a {last['seconds'] / 60:.0f}-minute file | {last['peak_rss_mb']:.0f} MB "
            f"({first['peak_rss_mb']:.0f} MB for {first['seconds'] / 60:.0f} minutes) | <= 1.5 GB, flat |"
        )
    if r := results.get("bench_cold_start"):
        rows.append(f"| cold start, `soundsift search` to first result | {r['search_to_first_result_s']:.1f} s | - |")
        rows.append(
            f"| `soundsift stats` (wall, peak RSS) | {r['stats_s']:.2f} s, {r['stats_rss_mb']:.0f} MB | <= 1.0 s, <= 150 MB |"
        )
        if "search_cold_share_of_baseline" in r:
            rows.append(
                f"| `soundsift search` cold, share of the code before the light CLI | "
                f"{100 * r['search_cold_share_of_baseline']:.0f} % | <= 45 % |"
            )
        rows.append(
            f"| `soundsift search` through a running server, process start included | {r['search_via_server_s']:.2f} s | <= 0.6 s |"
        )
        rows.append(
            f"| cold `index` + `classify` of {r['windows']} windows vs the transformers pipeline | "
            f"{r['index_classify_vs_pipeline']:.2f}x | >= 2x |"
        )
    if r := results.get("bench_eval"):
        rows.append(
            f"| eval: {r['clips']:,} clips x {r['labels']} labels x {r['variants']} variants scored after embedding | "
            f"{r['scoring_s']:.2f} s (as `classify --by file` rows {r['baseline_rows_s']:.2f} s) | < 1 s |"
        )
        if r.get("render_ms") is not None:
            rows.append(
                f"| eval: the {r['clips']:,}-clip HTML report drawn in chromium | {r['render_ms']:.0f} ms | < 2 s |"
            )
    machine = next((r["machine"] for r in results.values() if "machine" in r), "unknown")
    return "\n".join(rows) + f"\n\nMachine: {machine}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / ".cache" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in BENCHMARKS:
        path = args.out / f"{name}.json"
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(path), *(["--quick"] if args.quick else [])]
        print(f"$ {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
        results[name] = json.loads(path.read_text())
    print()
    print(table(results))


if __name__ == "__main__":
    main()
