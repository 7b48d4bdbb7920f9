"""Where a cold `soundsift index` spends its start: each phase in a fresh interpreter, wall and CPU seconds.

    .venv/bin/python benchmarks/profile_index_start.py            # full-size CLAP geometry (random weights)
    .venv/bin/python benchmarks/profile_index_start.py --quick    # tiny model

Phases, in the order `index` meets them: the CLI's own imports; settings; plugin discovery (entry points
and built-ins); `import torch`; `import transformers` (after torch); the CLAP load (weights memory-mapped);
the decode pool's spawn (one worker process starting and answering its first file); `import ray` (never
imported when `--ray` is not given: measured to show what is saved). CPU seconds are the steadier figure
on a shared machine; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

PHASE = r"""
import json, resource, sys, time
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime + c.ru_utime + c.ru_stime
before = sys.argv[2]
if before:
    exec(before)
t, c = time.perf_counter(), cpu()
exec(sys.argv[1])
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": cpu() - c}))
"""


def phases(model: str, audio: str) -> list[tuple[str, str, str]]:
    """(name, code timed, code run first untimed)."""
    pool = (
        "from indexer.decode import DecodeLimits\n"
        "from indexer.decode_workers import DecodeJob, DecodePool\n"
        "from indexer.settings import load_settings\n"
        "s = load_settings()\n"
        "job = DecodeJob(480000, 480000, DecodeLimits(s.min_sample_rate, s.max_sample_rate, s.max_channels, "
        "s.max_duration_s), s.plugin_view())\n"
    )
    return [
        ("CLI imports (search.cli)", "import search.cli", ""),
        ("settings", "from indexer.settings import load_settings; load_settings()", "import search.cli"),
        ("plugin discovery", "from plugins.manager import default_plugins; default_plugins()", "import search.cli"),
        ("import torch", "import torch", "import search.cli"),
        ("import transformers (after torch)", "import transformers, transformers.models.clap", "import torch"),
        (
            "CLAP load (both towers)",
            f"load_clap({model!r}, device='cpu')",
            "from indexer.model import load_clap; import transformers.models.clap",
        ),
        (
            "decode pool spawn + first file",
            f"events = DecodePool(job, workers=1, timeout_s=60).run([{audio!r}]); next(iter(events))",
            pool,
        ),
        ("import ray (only with --ray)", "import ray", "import search.cli"),
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from bench_index import machine, write_archive

    work = Path(tempfile.mkdtemp(prefix="profile-start-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model = build_tiny_clap(work / "tiny")
    else:
        from full_size_clap import build_full_size_clap

        model = args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size")
    audio = write_archive(work / "archive", 1, 12.0)[0]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result: dict = {"machine": machine(), "load_average": round(os.getloadavg()[0], 2), "phases": []}
    for name, code, before in phases(str(model), str(audio)):
        proc = subprocess.run(
            [sys.executable, "-c", PHASE, code, before], capture_output=True, text=True, env=env, cwd=REPO
        )
        if proc.returncode != 0:
            result["phases"].append({"phase": name, "error": proc.stderr.strip().splitlines()[-1][:200]})
            continue
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        result["phases"].append({"phase": name, **{k: round(v, 2) for k, v in figures.items()}})
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {result['machine']}; load average {result['load_average']} -> {result['load_average_end']}")
    for p in result["phases"]:
        if "error" in p:
            print(f"  {p['phase']:<36} not measured ({p['error']})")
        else:
            print(f"  {p['phase']:<36} {p['wall_s']:>6.2f} s wall, {p['cpu_s']:>6.2f} s CPU")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
