"""Cold start: wall time from launching `soundsift search` to its first result, on an existing index.

    .venv/bin/python benchmarks/bench_cold_start.py            # full-size CLAP, an index of a few files
    .venv/bin/python benchmarks/bench_cold_start.py --quick    # tiny model (checks the benchmark works)

Each run is a fresh process: Python and library imports, loading the model (the text tower answers the
query), opening DuckDB and the FAISS file, one query, the JSON result. Also timed for reference: the
bare interpreter importing the libraries (`python -c "import torch, transformers, duckdb, faiss"`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t, proc


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, one run")
    parser.add_argument("--model", type=Path, help="a CLAP directory (default: the full-size random one, built once)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine, write_archive

    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model_dir, runs = build_tiny_clap(work / "tiny-clap"), 1
    else:
        from full_size_clap import build_full_size_clap

        model_dir, runs = args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size"), args.runs
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    cli = [sys.executable, "-m", "search.cli"]
    write_archive(work / "archive", 3, 20.0)
    index = str(work / "index")
    timed([*cli, "index", str(work / "archive"), "--index", index, "--model", str(model_dir), "--device", "cpu", "--json"], env)
    search = [*cli, "search", "a dog barking", "--index", index, "--device", "cpu", "-k", "10", "--json"]
    times = []
    for _ in range(runs):
        seconds, proc = timed(search, env)
        assert json.loads(proc.stdout)["results"][0]["hits"], "no hit"
        times.append(seconds)
    imports, _ = timed([sys.executable, "-c", "import torch, transformers, duckdb, faiss"], env)
    result = {"machine": machine(), "runs": runs, "search_to_first_result_s": round(statistics.median(times), 2),
              "all_s": [round(t, 2) for t in times], "imports_s": round(imports, 2)}
    print(f"machine: {result['machine']}")
    print(f"`soundsift search` to first result: {result['search_to_first_result_s']:.2f} s median of {runs} "
          f"({', '.join(f'{t:.2f}' for t in times)}); bare imports of torch, transformers, duckdb, faiss: {imports:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
