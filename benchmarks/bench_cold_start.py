"""Cold start: what a fresh `soundsift` process costs per command, against the code before the light CLI.

    .venv/bin/python benchmarks/bench_cold_start.py            # full-size CLAP (random weights), one run each
    .venv/bin/python benchmarks/bench_cold_start.py --quick    # tiny model (checks the benchmark works)
    .venv/bin/python benchmarks/bench_cold_start.py --baseline-rev b872a86   # the code to compare with (default)

Every figure is one fresh process, launch to exit, on a 32-window index (4 files of 80 s):
- `stats --json`: wall time and peak RSS;
- `search` cold, no server, a text never embedded before: this code and the baseline commit (checked out
  into a temporary git worktree and run against the same index on the same machine), and the ratio;
- `search` again with the same text: remembered in the index, so no model is loaded (checked: transformers
  never imported; timed as the fastest of three processes);
- `soundsift --help` (the fastest of three);
- `search` through a running `soundsift serve` that owns the index, process start included;
- cold `index` + `classify` of the 32 windows (5 labels), both as fresh commands, against the transformers
  `zero-shot-audio-classification` pipeline doing the same 32 windows one by one in a fresh process (its
  interpreter, imports and model load included, as a user waits for them; and again in the benchmark's own
  process, where torch and transformers are imported already)
  (and the baseline commit's `index` + `classify` for reference); and `classify` again with the same labels,
  remembered in the index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
LABELS = ["a dog barking", "glass breaking", "a bell ringing", "abnormal bearing noise", "engine idling"]


def timed(cmd: list[str], env: dict, cwd: Path = REPO) -> tuple[float, subprocess.CompletedProcess]:
    """(wall seconds, the completed process); exits on failure."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t, proc


# A small launcher runs the command and reports its children's peak RSS: Linux carries a process's peak RSS across
# fork and exec, so measured straight from this (torch-loaded) process every child would look as large as it.
LAUNCH = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "p = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL); wall = time.perf_counter() - t; "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_maxrss, wall, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(p.returncode)"
)

CPU: dict[str, float] = {}  # CPU seconds (user + system) of each measured command: steadier than wall on a busy machine


def peak_rss_mb(cmd: list[str], env: dict, cwd: Path = REPO, name: str | None = None) -> tuple[float, float, str]:
    """(wall seconds from launch to exit, peak RSS MB, stdout) of one process; its CPU seconds go to CPU[name]."""
    proc = subprocess.run([sys.executable, "-c", LAUNCH, *cmd], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    rss_kb, wall, cpu = proc.stderr.strip().splitlines()[-1].split()
    if name:
        CPU[name] = round(float(cpu), 2)
    return float(wall), int(rss_kb) / 1024, proc.stdout


def baseline_checkout(rev: str, where: Path) -> Path:
    """The baseline commit in a temporary worktree (removed at the end)."""
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=REPO, check=True, capture_output=True)
    return where


def start_server(cli: list[str], index: str, model: Path, env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*cli, "serve", "--index", index, "--model", str(model), "--device", "cpu", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    import urllib.request

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("soundsift serve exited")
        try:
            url = json.loads((Path(index) / "owner.json").read_text()).get("url")
            if url:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    return proc, url
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("soundsift serve did not start")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model (checks the benchmark works)")
    parser.add_argument("--model", type=Path, help="a CLAP directory (default: the full-size random one, built once)")
    parser.add_argument(
        "--baseline-rev",
        default=None,
        help="the commit to compare with (default b872a86, the code before the light CLI; '' to skip; "
        "--quick skips it unless given)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine, pipeline_side, write_archive

    if args.baseline_rev is None:
        args.baseline_rev = "" if args.quick else "b872a86"

    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model_dir, files, seconds = build_tiny_clap(work / "tiny-clap"), 2, 20.0
    else:
        from full_size_clap import build_full_size_clap

        model_dir, files, seconds = args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size"), 4, 80.0
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), SOUNDSIFT_DECODE_WORKERS="0")
    env["SOUNDSIFT_ONNX_CACHE"] = str(work / "onnx")  # this run's own text-tower export, written below
    for key in ("SOUNDSIFT_SERVER", "SOUNDSIFT_API_KEY", "SOUNDSIFT_MODEL", "SOUNDSIFT_INDEX", "SOUNDSIFT_TEXT_ONNX"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "search.cli"]
    paths = write_archive(work / "archive", files, seconds)
    index = str(work / "index")
    result: dict = {"machine": machine(), "load_average_start": round(os.getloadavg()[0], 2)}
    repeats = 1 if args.quick else 3  # the fastest of three for the sub-second figures; once when checking

    # The whole CLAP loaded by transformers in a fresh process (imports included): what a cold text costs without
    # the ONNX text tower, and the yardstick of the cold search below.
    full_load_s, _, _ = peak_rss_mb(
        [sys.executable, "-c", f"from transformers import ClapModel; ClapModel.from_pretrained({str(model_dir)!r})"],
        env,
        name="full_clap_load",
    )
    # The model's ONNX text tower, once per model and machine (index and serve also write it when absent).
    export_s, _, _ = peak_rss_mb(
        [*cli, "doctor", "--export", "--model", str(model_dir), "--device", "cpu"], env, name="text_export"
    )
    result.update(full_clap_load_s=round(full_load_s, 2), text_export_s=round(export_s, 2))

    # Cold index + classify (fresh commands; the labels never embedded before) vs the pipeline, one by one.
    index_s, _, built = peak_rss_mb(
        [
            *cli,
            "index",
            str(work / "archive"),
            "--index",
            index,
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            "--json",
        ],
        env,
        name="index",
    )
    windows = json.loads(built)["windows"]
    classify_s, _, _ = peak_rss_mb(
        [*cli, "classify", "--labels", ", ".join(LABELS), "--index", index, "--device", "cpu", "--json"],
        env,
        name="classify",
    )
    # The same labels again: remembered in the index, so neither tower loads (a QA team's second run of a label set).
    classify_again_s, _, _ = peak_rss_mb(
        [*cli, "classify", "--labels", ", ".join(LABELS), "--index", index, "--device", "cpu", "--json"],
        env,
        name="classify_remembered",
    )
    # The pipeline as a user runs it: a fresh process (interpreter, imports, model load, the 32 windows one by one).
    cold_pipe = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from bench_index import pipeline_side; "
        f"print(json.dumps(pipeline_side(__import__('pathlib').Path({str(model_dir)!r}), "
        f"[__import__('pathlib').Path(p) for p in {[str(p) for p in paths]!r}])))"
    )
    pipe_s, _, pipe_out = peak_rss_mb([sys.executable, "-c", cold_pipe], env, name="pipeline")
    pipe_windows, pipe_run_s, _, pipe_load_s = json.loads(pipe_out.strip().splitlines()[-1])
    # and in this process, where torch and transformers are imported already: the pipeline without its start
    # (not when checking the benchmark works: the fresh process already ran the same code)
    warm_pipe_s = None
    if not args.quick:
        t = time.perf_counter()
        pipeline_side(model_dir, paths)
        warm_pipe_s = time.perf_counter() - t
    result.update(
        windows=windows,
        index_s=round(index_s, 2),
        classify_s=round(classify_s, 2),
        index_classify_s=round(index_s + classify_s, 2),
        pipeline_windows=pipe_windows,
        pipeline_s=round(pipe_s, 2),
        pipeline_load_s=round(pipe_load_s, 2),
        index_classify_vs_pipeline=round(pipe_s / (index_s + classify_s), 2),
        pipeline_in_process_s=None if warm_pipe_s is None else round(warm_pipe_s, 2),
        index_classify_vs_pipeline_in_process=None
        if warm_pipe_s is None
        else round(warm_pipe_s / (index_s + classify_s), 2),
        classify_remembered_s=round(classify_again_s, 2),
        index_classify_remembered_vs_pipeline=round(pipe_s / (index_s + classify_again_s), 2),
    )

    # `soundsift --help`: the fastest of three fresh processes (what a user waits for before anything is loaded).
    help_s = min(timed([*cli, "--help"], env)[0] for _ in range(repeats))
    result.update(help_s=round(help_s, 3))

    # stats: wall and peak RSS of the process.
    stats_s, stats_rss, _ = peak_rss_mb([*cli, "stats", "--index", index, "--json"], env, name="stats")
    result.update(stats_s=round(stats_s, 2), stats_rss_mb=round(stats_rss, 1))

    # search: cold (a text never embedded), then the same text again (remembered: no model).
    search = [*cli, "search", "--index", index, "--device", "cpu", "-k", "10", "--json"]
    cold_s, cold_rss, proc = peak_rss_mb([*search, "a dog barking near a road"], env, name="search_cold")
    assert json.loads(proc)["results"][0]["hits"], "no hit"
    again = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "search.cli",
            "search",
            "a dog barking near a road",
            "--index",
            index,
            "-k",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    if again.returncode != 0:
        raise SystemExit(again.stderr[-2000:])
    # the remembered search's time, without -X importtime's own cost: the fastest of three fresh processes
    cached_s = min(timed([*search, "a dog barking near a road"], env)[0] for _ in range(repeats))
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in again.stderr.splitlines()
        if line.startswith("import time:")
    }
    imports_s, _ = timed([sys.executable, "-c", "import torch, transformers, duckdb, faiss"], env)
    # The same cold search with the transformers text tower instead of the ONNX one (side by side, same index).
    hf_cold_s, hf_cold_rss, _ = peak_rss_mb(
        [*search, "a car horn on a wet street"], dict(env, SOUNDSIFT_TEXT_ONNX="0"), name="search_cold_transformers"
    )
    result.update(
        search_cold_transformers_s=round(hf_cold_s, 2),
        search_cold_transformers_rss_mb=round(hf_cold_rss, 1),
        search_cold_share_of_full_load=round(cold_s / full_load_s, 3),
        search_cold_onnx_vs_transformers=round(hf_cold_s / cold_s, 2),
    )
    result.update(
        search_to_first_result_s=round(cold_s, 2),
        imports_s=round(imports_s, 2),
        search_cold_s=round(cold_s, 2),
        search_cold_rss_mb=round(cold_rss, 1),
        search_cached_s=round(cached_s, 2),
        search_cached_loaded_transformers="transformers" in imported,
        search_cached_loaded_torch="torch" in imported,
    )

    # The baseline: the same commands from the baseline commit, on the same index and machine.
    if args.baseline_rev:
        old = baseline_checkout(args.baseline_rev, work / "baseline")
        try:
            old_env = dict(env, PYTHONPATH=str(old))
            old_cli = [sys.executable, "-m", "search.cli"]
            old_stats_s, old_stats_rss, _ = peak_rss_mb(
                [*old_cli, "stats", "--index", index, "--json"], old_env, cwd=old, name="baseline_stats"
            )
            old_search_s, old_search_rss, _ = peak_rss_mb(
                [
                    *old_cli,
                    "search",
                    "a cat meowing on a roof",
                    "--index",
                    index,
                    "--device",
                    "cpu",
                    "-k",
                    "10",
                    "--json",
                ],
                old_env,
                cwd=old,
                name="baseline_search_cold",
            )
            old_index = str(work / "index-baseline")
            old_index_s, _, _ = peak_rss_mb(
                [
                    *old_cli,
                    "index",
                    str(work / "archive"),
                    "--index",
                    old_index,
                    "--model",
                    str(model_dir),
                    "--device",
                    "cpu",
                    "--json",
                ],
                old_env,
                cwd=old,
                name="baseline_index",
            )
            old_classify_s, _, _ = peak_rss_mb(
                [
                    *old_cli,
                    "classify",
                    "--labels",
                    ", ".join(LABELS),
                    "--index",
                    old_index,
                    "--device",
                    "cpu",
                    "--json",
                ],
                old_env,
                cwd=old,
                name="baseline_classify",
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
        result.update(
            baseline_rev=args.baseline_rev,
            baseline_stats_s=round(old_stats_s, 2),
            baseline_stats_rss_mb=round(old_stats_rss, 1),
            baseline_search_cold_s=round(old_search_s, 2),
            baseline_search_cold_rss_mb=round(old_search_rss, 1),
            search_cold_share_of_baseline=round(cold_s / old_search_s, 3),
            baseline_index_classify_s=round(old_index_s + old_classify_s, 2),
            baseline_index_classify_vs_pipeline=round(pipe_s / (old_index_s + old_classify_s), 2),
        )

    # search through a running server that owns the index (process start included).
    server, url = start_server(cli, index, model_dir, env)
    try:
        subprocess.run([*search, "warm-up query"], capture_output=True, env=env, cwd=REPO)  # the server's first text
        served_s, served_rss, out = peak_rss_mb([*search, "a dog barking near a road"], env, name="search_via_server")
        assert json.loads(out)["results"][0]["hits"], "no hit through the server"
    finally:
        server.terminate()
        server.wait(60)
    result.update(
        search_via_server_s=round(served_s, 2),
        search_via_server_rss_mb=round(served_rss, 1),
        load_average_end=round(os.getloadavg()[0], 2),
        cpu_s=dict(CPU),
    )
    shutil.rmtree(work, ignore_errors=True)

    print(
        f"machine: {result['machine']}; 1-min load average {result['load_average_start']} -> {result['load_average_end']}"
    )
    print(
        f"stats --json:             {result['stats_s']:.2f} s, {result['stats_rss_mb']:.0f} MB peak RSS"
        + (
            f"   (baseline {result['baseline_stats_s']:.2f} s, {result['baseline_stats_rss_mb']:.0f} MB)"
            if args.baseline_rev
            else ""
        )
    )
    print(
        f"search, cold, no server:  {result['search_cold_s']:.2f} s, {result['search_cold_rss_mb']:.0f} MB"
        + (
            f"   (baseline {result['baseline_search_cold_s']:.2f} s, {result['baseline_search_cold_rss_mb']:.0f} MB: "
            f"{100 * result['search_cold_share_of_baseline']:.0f} % of it)"
            if args.baseline_rev
            else ""
        )
    )
    print(
        f"search, cold, new text, ONNX text tower: {result['search_cold_s']:.2f} s = "
        f"{100 * result['search_cold_share_of_full_load']:.0f} % of a full CLAP load in transformers "
        f"({result['full_clap_load_s']:.2f} s); transformers text tower: {result['search_cold_transformers_s']:.2f} s "
        f"({result['search_cold_onnx_vs_transformers']:.2f}x); export once: {result['text_export_s']:.2f} s"
    )
    print(
        f"search, remembered text:  {result['search_cached_s']:.2f} s (imports transformers: "
        f"{result['search_cached_loaded_transformers']}, torch: {result['search_cached_loaded_torch']}; under -X importtime)"
    )
    print(
        f"search via the server:    {result['search_via_server_s']:.2f} s incl. process start, {result['search_via_server_rss_mb']:.0f} MB"
    )
    print(
        f"cold index + classify of {windows} windows: {result['index_classify_s']:.2f} s ({result['index_s']:.2f} + "
        f"{result['classify_s']:.2f}); transformers pipeline one by one, a fresh process: {result['pipeline_s']:.2f} s "
        f"(model load {result['pipeline_load_s']:.2f} s): {result['index_classify_vs_pipeline']:.2f}x"
        + (
            f"; the pipeline in a process with torch and transformers imported: {result['pipeline_in_process_s']:.2f} s "
            f"({result['index_classify_vs_pipeline_in_process']:.2f}x)"
            if warm_pipe_s is not None
            else ""
        )
        + (
            f"   (baseline {result['baseline_index_classify_s']:.2f} s: {result['baseline_index_classify_vs_pipeline']:.2f}x)"
            if args.baseline_rev
            else ""
        )
    )
    print(
        f"the same with the labels remembered: {result['index_s'] + result['classify_remembered_s']:.2f} s "
        f"({result['index_s']:.2f} + {result['classify_remembered_s']:.2f}): "
        f"{result['index_classify_remembered_vs_pipeline']:.2f}x the pipeline"
    )
    print(f"soundsift --help:         {result['help_s']:.3f} s (fastest of three)")
    print(f"CPU seconds (user + system) per command: {json.dumps(CPU)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
