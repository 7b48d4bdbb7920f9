"""Indexing through Ray against a local run on the same cores: the pipeline's overhead, and 1 vs 2 worker nodes.

    .venv/bin/python benchmarks/bench_ray.py                   # 16 files x 30 s (48 windows), full-size CLAP
    .venv/bin/python benchmarks/bench_ray.py --model tiny      # tiny CLAP: what Ray itself costs per window

Every configuration indexes the same archive into a fresh index with the same model, on CPU:
- local: `soundsift index` with one decode worker per core and torch on the same cores;
- ray, 1 worker node with all the cores (a head node with 0 CPUs only schedules);
- ray, 2 worker nodes sharing those cores (half each): the same hardware split across nodes.
Windows/s counts from the start of the run to its last commit (model loading on the owner excluded; the
cluster's actors load theirs inside the run, as they do in use). The cluster is started before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))


def write_archive(root: Path, files: int, seconds: float) -> None:
    from search.demo_audio import synthesize, write_audio

    root.mkdir(parents=True, exist_ok=True)
    kinds = ["bearing", "bell", "bark", "glass", "engine", "noise", "chirp", "tone"]
    for i in range(files):
        write_audio(root / f"clip{i:03d}.wav", synthesize(kinds[i % len(kinds)], seconds, 44_100, seed=i), 44_100)


def index_once(archive: Path, index_dir: Path, model: str, encoder, cores: int, ray: str | None) -> dict:
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    settings = load_settings(index=index_dir, model=model, device="cpu", decode_workers=cores, ray=ray)
    with SoundIndex.open(index_dir, settings=settings, create=True, encoder=encoder) as sx:
        t = time.perf_counter()
        report = sx.index([str(archive)], progress=False)
        seconds = time.perf_counter() - t
    return {
        "windows": report.windows,
        "seconds": round(seconds, 2),
        "windows_per_s": round(report.windows / seconds, 2),
        "stages": report.stages or None,
    }


def on_cluster(archive: Path, work: Path, model: str, encoder, worker_nodes: int, cpus_per_node: int) -> dict:
    import ray
    from ray_cluster import LocalRayCluster

    cluster = LocalRayCluster(cpus=cpus_per_node, head_cpus=0)
    try:
        cluster.start(workers=worker_nodes)
        result = index_once(
            archive, work / f"ray{worker_nodes}", model, encoder, cpus_per_node * worker_nodes, cluster.address
        )
    finally:
        ray.shutdown()
        cluster.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from indexer.model import load_clap

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        if args.model == "tiny":
            from indexer.tiny_clap import build_tiny_clap

            model = str(build_tiny_clap(work / "model"))
        else:
            from full_size_clap import build_full_size_clap

            model = str(build_full_size_clap(work / "model"))
        encoder = load_clap(model, device="cpu")
        archive = work / "archive"
        write_archive(archive, args.files, args.seconds)
        results = {
            "files": args.files,
            "seconds_each": args.seconds,
            "cores": args.cores,
            "model": args.model,
            "gpu": False,
        }
        results["local"] = index_once(archive, work / "local", model, encoder, args.cores, None)
        results["ray_1_node"] = on_cluster(archive, work, model, encoder, 1, args.cores)
        results["ray_2_nodes"] = on_cluster(archive, work, model, encoder, 2, max(1, args.cores // 2))
    local = results["local"]["windows_per_s"]
    for key in ("ray_1_node", "ray_2_nodes"):
        results[key]["overhead_vs_local"] = round(1 - results[key]["windows_per_s"] / local, 3) if local else None
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
