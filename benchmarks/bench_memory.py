"""Memory: peak RSS while indexing one hour of audio (against a tenth of it: flat in file length), and serving memory.

    .venv/bin/python benchmarks/bench_memory.py            # full-size CLAP, a 6-minute and a 60-minute file
    .venv/bin/python benchmarks/bench_memory.py --quick    # tiny model, 1.5 and 4.5 minutes (checks the benchmark works)

Peak RSS is the sum over `soundsift index` and its decode workers, sampled every 0.1 s from /proc.
Serving memory per million windows is measured by benchmarks/bench_search.py (it builds the index for
a million windows); run that for the serving figure.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def write_long_wav(path: Path, seconds: float, rate: int = 44_100, block_s: float = 60.0) -> Path:
    """A mono 16-bit wav of ``seconds`` (machinery and a bell, varying), written block by block."""
    import soundfile as sf

    from search.demo_audio import synthesize

    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        done, i = 0.0, 0
        while done < seconds:
            span = min(block_s, seconds - done)
            out.write(synthesize(("bearing", "engine", "bell", "noise")[i % 4], span, rate, seed=i))
            done += span
            i += 1
    return path


def tree_rss_mb(root_pid: int) -> float:
    """RSS of a process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 2**20


def index_peak(model_dir: Path, archive: Path, index_dir: Path) -> dict:
    """Run `soundsift index` on ``archive``; its peak tree RSS, wall time and windows."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    t = time.perf_counter()
    proc = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"soundsift index failed ({proc.returncode})")
    report = json.loads(out)
    return {"peak_rss_mb": round(peak, 1), "wall_s": round(time.perf_counter() - t, 1), "windows": report["windows"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 1.5 and 4.5 minute files")
    parser.add_argument("--model", type=Path, help="a CLAP directory (default: the full-size random one, built once)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench_index import machine

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    if args.quick:
        from indexer.tiny_clap import build_tiny_clap

        model_dir, lengths = build_tiny_clap(work / "tiny-clap"), [90.0, 270.0]
    else:
        from full_size_clap import build_full_size_clap

        model_dir, lengths = args.model or build_full_size_clap(HERE / ".cache" / "clap-full-size"), [360.0, 3600.0]
    runs = []
    for seconds in lengths:
        archive = work / f"archive-{int(seconds)}"
        write_long_wav(archive / "long.wav", seconds)
        runs.append({"seconds": seconds, **index_peak(model_dir, archive, work / f"index-{int(seconds)}")})
    result = {
        "machine": machine(),
        "runs": runs,
        "flat_ratio": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
    }
    print(f"machine: {result['machine']}")
    for r in runs:
        print(
            f"indexing one {r['seconds'] / 60:.1f}-minute file ({r['windows']} windows): peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(process + decode workers), {r['wall_s']:.0f} s"
        )
    print(f"longest / shortest peak: {result['flat_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
