"""Every benchmark runs in its quick mode and reports what it promises (CI checks they work; they are not timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_quick(name: str, tmp_path) -> dict:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=280,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "machine:" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_index_quick(tmp_path):
    r = run_quick("bench_index", tmp_path)
    assert r["windows"] == r["pipeline_windows"] == 4  # 2 files of 12 s: a full window and a tail each
    assert r["soundsift_windows_per_s"] > 0 and r["pipeline_windows_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["soundsift_windows_per_s"] / r["pipeline_windows_per_s"], rel=0.02)
    assert 0 < r["tower_share_of_peak"] and r["matmul_peak_gflops"] > 0 and r["tower_gflop_per_window"] > 0


def test_bench_classify_quick(tmp_path):
    r = run_quick("bench_classify", tmp_path)
    assert r["windows"] == 5_000
    runs = {(x["labels"], x["policy"], x["by"]): x for x in r["runs"]}
    assert runs[(10, "softmax", "window")]["rows"] == 100 and runs[(100, "archive", "window")]["rows"] == 100
    assert runs[(10, "softmax", "file")]["rows"] == 14  # 5,000 windows, 360 per file


def test_bench_eval_quick(tmp_path):
    r = run_quick("bench_eval", tmp_path)
    assert (r["clips"], r["labels"], r["variants"]) == (200, 10, 2) and r["windows"] >= 200
    assert r["scoring_s"] > 0 and r["baseline_rows_s"] > 0 and r["evaluate_s"] > 0 and 0 < r["accuracy"] <= 1
    assert r["render_ms"] is None or r["render_ms"] > 0


@pytest.mark.slow
def test_bench_search_quick(tmp_path):
    r = run_quick("bench_search", tmp_path)
    assert r["index"]["type"] == "IndexIVFScalarQuantizer" and r["windows"] == 10_000
    assert r["recall_at_10"] >= 0.9 and r["p99_ms"] >= r["p50_ms"] > 0
    assert r["serving_anon_mb_per_million"] > 0


@pytest.mark.slow
def test_bench_memory_quick(tmp_path):
    r = run_quick("bench_memory", tmp_path)
    assert [x["windows"] for x in r["runs"]] == [9, 27]
    assert all(x["peak_rss_mb"] > 50 for x in r["runs"])


@pytest.mark.slow
def test_bench_cold_start_quick(tmp_path):
    r = run_quick("bench_cold_start", tmp_path)
    assert r["search_to_first_result_s"] > 0 and r["imports_s"] > 0
    assert r["stats_s"] > 0 and r["stats_rss_mb"] > 0 and r["search_via_server_s"] > 0
    assert r["search_cached_loaded_transformers"] is False  # a remembered text loads no model
    assert r["windows"] == r["pipeline_windows"] == 4 and r["index_classify_vs_pipeline"] > 0
    assert r["full_clap_load_s"] > 0 and r["text_export_s"] > 0 and r["search_cold_transformers_s"] > 0
    assert r["help_s"] > 0 and r["classify_remembered_s"] > 0 and r["index_classify_remembered_vs_pipeline"] > 0


def test_bench_probe_quick(tmp_path):
    r = run_quick("bench_probe", tmp_path)
    assert r["train"]["examples"] == 200 and r["train"]["classes"] == 4 and 0 < r["train"]["cv_accuracy"] <= 1
    assert r["train"]["probe_fit_with_cv_s"] > 0 and r["train"]["sklearn_fit_1thread_s"] > 0
    assert r["score"]["windows"] == 20_000 and r["score"]["matrix_dtype"] == "float16"
    assert r["score"]["probe_classify_top100_s"] > 0 and r["score"]["labels_classify_top100_s"] > 0


@pytest.mark.slow
def test_bench_scale_quick(tmp_path):
    r = run_quick("bench_scale", tmp_path)
    (run,) = r["runs"]
    assert run["windows"] == 20_000 and run["commit_windows_per_s"] > 0
    assert run["recall_at_10"] == 1.0 and run["search_p99_ms"] >= run["search_p50_ms"] > 0  # flat: exact
    assert run["after_kill9_windows"] > 20_000 and run["after_kill9_recovery"]["added"] > 0  # committed, then caught up
    assert run["classify_10_labels_s"] > 0 and run["disk_mb_per_million"] > 0 and run["serving_peak_rss_mb"] > 0


@pytest.mark.slow
def test_bench_audio_onnx_quick(tmp_path):
    r = run_quick("bench_audio_onnx", tmp_path)
    assert r["torch_tower_s_per_window"] > 0 and r["onnx_tower_s_per_window"] > 0
    assert r["max_abs_diff"] < 1e-4 and r["torch_share_of_peak"] > 0 and r["onnx_share_of_peak"] > 0
    # the default is the fastest runtime that beats torch with vectors within 1e-4 (OpenVINO where installed)
    beats = {k: r[f"{k}_speedup"] for k in ("onnx", "openvino") if r.get(f"{k}_speedup") and r[f"{k}_speedup"] > 1}
    fastest = {"onnx": "onnxruntime", "openvino": "openvino"}[max(beats, key=beats.__getitem__)] if beats else "torch"
    assert r["cpu_default"] == fastest
    assert r["onnx_qualifies_as_cpu_default"] == (fastest == "onnxruntime")
    if r["openvino_tower_s_per_window"] is not None:
        assert r["openvino_max_abs_diff"] < 1e-4 and r["openvino_share_of_peak"] > 0


@pytest.mark.slow
def test_bench_transcribe_quick(tmp_path):
    r = run_quick("bench_transcribe", tmp_path)
    q, t = r["queries"], r["transcribe"]
    assert q["segments"] == 5_000 and q["fts5_top10_p95_ms"] >= q["fts5_top10_p50_ms"] > 0
    assert q["per_query"]["投诉"]["hits"] == 10 and q["baseline_substring_scan_p50_ms"] > 0
    assert t["soundsift_transcriber"]["windows"] == t["baseline_pipeline_16k"]["windows"] == 2
    assert t["soundsift_transcriber"]["mean_windows_per_s"] > 0
