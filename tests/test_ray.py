"""Indexing and classification on a real two-node Ray cluster (head + one worker node, separate processes).

Same windows and vectors as a local run, the same report plus where each stage ran; a killed owner resumes;
a killed worker node costs a retry; export -> classify on the cluster gives the local rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")

from conftest import REPO, cli_env  # noqa: E402
from ray_cluster import LocalRayCluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray"), pytest.mark.timeout(900)]

# Eight small files (1 to 4 windows each, 20 in all, three sample rates, stereo) and one that no decoder reads.
ARCHIVE = [
    ("a.wav", "tone", 12.0, 16_000, 1),
    ("b.wav", "noise", 25.0, 48_000, 2),
    ("c.flac", "chirp", 31.0, 22_050, 1),
    ("d.wav", "tone", 4.0, 16_000, 1),
    ("e.wav", "noise", 18.0, 16_000, 1),
    ("f.wav", "chirp", 9.0, 48_000, 1),
    ("sub/g.wav", "tone", 21.0, 16_000, 1),
    ("sub/h.flac", "noise", 35.0, 22_050, 1),
]


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node (2 logical CPUs each); this process joins as the driver."""
    import ray

    c = LocalRayCluster(cpus=2)
    try:
        c.start(workers=1)
        yield c
    finally:
        ray.shutdown()
        c.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from search.demo_audio import synthesize, write_audio

    root = tmp_path_factory.mktemp("ray-archive")
    for i, (name, kind, seconds, rate, channels) in enumerate(ARCHIVE):
        audio = synthesize(kind, seconds, rate, i)
        if channels > 1:
            audio = np.stack([audio] * channels, axis=1)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / name, audio, rate)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x07" * 64)
    return root


def _open(index_dir: Path, tiny_model_dir: Path, tiny_encoder, **overrides):
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    settings = load_settings(index=index_dir, model=str(tiny_model_dir), device="cpu", decode_workers=1, **overrides)
    return SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)


def _windows(index_dir: Path) -> dict[tuple[str, float], tuple[float, str, np.ndarray]]:
    import duckdb

    con = duckdb.connect(str(index_dir / "soundsift.duckdb"), read_only=True)
    try:
        rows = con.execute(
            'SELECT f.path, w.start, w."end", w.tags, w.embedding FROM windows w JOIN files f ON f.id = w.file_id'
        ).fetchall()
    finally:
        con.close()
    out = {}
    for path, start, end, tags, vector in rows:
        assert (path, start) not in out, f"window {path}@{start} stored twice"
        out[(path, start)] = (end, tags, np.asarray(vector, dtype=np.float32))
    return out


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, archive, tiny_model_dir, tiny_encoder):
    from indexer.runner import report_summary

    index_dir = tmp_path_factory.mktemp("ray-local") / "index"
    with _open(index_dir, tiny_model_dir, tiny_encoder) as sx:
        report = sx.index([str(archive)], progress=False)
    return index_dir, report_summary(report)


@pytest.fixture(scope="module")
def ray_index(tmp_path_factory, cluster, archive, tiny_model_dir, tiny_encoder):
    from indexer.runner import report_summary

    index_dir = tmp_path_factory.mktemp("ray-cluster") / "index"
    with _open(index_dir, tiny_model_dir, tiny_encoder, ray=cluster.address) as sx:
        report = sx.index([str(archive)], progress=False)
        again = sx.index([str(archive)], progress=False)
    return index_dir, report_summary(report), report_summary(again)


def test_ray_run_gives_the_local_windows_vectors_and_report(local_index, ray_index, archive):
    from indexer.audit import audit
    from indexer.store import IndexStore

    local_dir, local_doc = local_index
    ray_dir, ray_doc, again = ray_index
    local, remote = _windows(local_dir), _windows(ray_dir)
    assert len(local) == 20 and sorted(local) == sorted(remote)
    for key, (end, tags, vector) in local.items():
        assert remote[key][0] == end and json.loads(remote[key][1]) == json.loads(tags)
        np.testing.assert_allclose(remote[key][2], vector, atol=1e-5, rtol=0)

    stages = ray_doc.pop("stages")
    assert "stages" not in local_doc
    for doc in (local_doc, ray_doc):
        doc.pop("timings")
        doc.pop("windows_per_s")
    assert ray_doc == local_doc
    assert ray_doc["files_indexed"] == 8 and ray_doc["files_failed"] == 1 and ray_doc["windows"] == 20
    assert [e["path"] for e in ray_doc["errors"]] == [str(archive / "broken.wav")]
    assert stages["decode"]["on"] == "ray tasks" and sum(stages["decode"]["files_by_node"].values()) == 8
    assert stages["embed"]["on"] == "ray actors" and stages["embed"]["device"] == "cpu"
    assert sum(stages["embed"]["windows_by_actor"].values()) == 20
    assert stages["commit"] == {"on": "owner", "node": stages["commit"]["node"], "pid": os.getpid()}

    # Incremental: the second run over the same archive decodes nothing.
    assert again["files_unchanged"] == 9 and again["windows"] == 0 and again["files_indexed"] == 0
    store = IndexStore.open(ray_dir, None, create=False, read_only=True)
    try:
        assert audit(store)["ok"]
        runs = store.cursor().execute("SELECT status FROM runs ORDER BY id").fetchall()
        assert runs == [("completed",), ("completed",)]
    finally:
        store.close()


def test_export_then_classify_on_the_cluster_gives_the_local_rows(
    ray_index, cluster, run_cli, tmp_path, tiny_model_dir, tiny_encoder
):
    import pyarrow.parquet as pq

    from indexer.settings import load_settings
    from search.cluster.classify import classify_on_cluster
    from search.sound_index import SoundIndex

    index_dir = ray_index[0]
    shards = tmp_path / "windows"
    meta = run_cli("export", index_dir, "--out", shards, "--rows-per-part", "5", "--json").json
    assert meta["windows"] == 20 and meta["files"] == 8 and len(meta["parts"]) >= 3
    table = pq.read_table(shards)
    assert table.num_rows == 20 and set(table.column_names) == {
        "id",
        "file_id",
        "path",
        "start",
        "end",
        "tags",
        "vector",
    }
    assert len(set(table["id"].to_pylist())) == 20
    parts_of: dict[int, set] = {}
    for part in meta["parts"]:  # whole files per part
        for file_id in pq.read_table(shards / part["file"])["file_id"].to_pylist():
            parts_of.setdefault(file_id, set()).add(part["file"])
    assert len(parts_of) == 8 and all(len(p) == 1 for p in parts_of.values())

    labels = "tone, noise, chirp"
    out = tmp_path / "scores"
    doc = run_cli(
        "classify",
        "--ray",
        cluster.address,
        "--shards",
        shards,
        "--labels",
        labels,
        "--policy",
        "archive",
        "--out",
        out,
        "--json",
    ).json
    assert doc["rows_written"] == 20 and doc["parts"] == len(meta["parts"])
    settings = load_settings(index=index_dir, model=str(tiny_model_dir), device="cpu")
    cases = [
        dict(policy="archive"),
        dict(policy="softmax", by="file"),
        dict(policy="softmax", top=5),
        dict(policy="softmax", threshold=0.34),
    ]
    with SoundIndex.open(index_dir, settings=settings, read_only=True, encoder=tiny_encoder) as sx:
        for k, case in enumerate(cases):
            if k == 0:
                got = pq.read_table(out).to_pylist()
            else:
                target = tmp_path / f"scores{k}"
                classify_on_cluster(cluster.address, settings, labels, out_dir=target, shards=shards, **case)
                got = pq.read_table(target).to_pylist()
            header, rows = sx.iter_classify(labels, **case)
            want = [{"path": r.path, "start": r.start, "end": r.end, "label": r.label, **r.scores} for r in rows]
            if "top" not in case:
                got.sort(key=lambda r: (r["path"], r["start"]))
                want.sort(key=lambda r: (r["path"], r["start"]))
            assert len(got) == len(want) > 0, case
            for g, w in zip(got, want):
                assert (g["path"], g["start"], g["end"], g["label"]) == (w["path"], w["start"], w["end"], w["label"]), (
                    case
                )
                for name in ("tone", "noise", "chirp"):
                    assert g[name] == pytest.approx(w[name], abs=1e-5), case


def test_classify_ray_probe_gives_the_local_rows(ray_index, cluster, tmp_path, tiny_model_dir, tiny_encoder):
    """`classify --ray --probe`: a probe's weights travel to the tasks; the rows equal local `classify --probe`."""
    import pyarrow.parquet as pq

    from indexer.export import export_index
    from indexer.matrix import WindowMatrix
    from indexer.settings import load_settings
    from indexer.teach_store import TeachStore
    from search.cluster.classify import classify_on_cluster
    from search.core.like import resolve_windows
    from search.core.probes import train
    from search.sound_index import SoundIndex

    index_dir = ray_index[0]
    settings = load_settings(index=index_dir, model=str(tiny_model_dir), device="cpu")
    with SoundIndex.open(index_dir, settings=settings, encoder=tiny_encoder) as sx:
        teach = TeachStore(sx.store)
        paths = {p.split("/")[-1]: p for p in sx.store.indexed_paths().values()}
        teach.add_examples("steady", resolve_windows(teach, paths["b.wav"]), True, "test")
        teach.add_examples("sweep", resolve_windows(teach, paths["c.flac"]), True, "test")
        train(sx.store, WindowMatrix.current(sx.store), "kinds", "steady, sweep")
    shards = tmp_path / "windows"
    export_index(index_dir, shards, 5)
    for case in (dict(), dict(by="file"), dict(top=4)):
        out = tmp_path / f"probe-{len(list(tmp_path.iterdir()))}"
        doc = classify_on_cluster(
            cluster.address, settings, "", out_dir=out, shards=shards, index_dir=index_dir, probe="kinds", **case
        )
        assert doc["labels"] == ["steady", "sweep"], doc
        got = pq.read_table(out).to_pylist()
        with SoundIndex.open(index_dir, settings=settings, read_only=True, encoder=tiny_encoder) as sx:
            _, rows = sx.iter_classify([], probe="kinds", **case)
            want = [{"path": r.path, "start": r.start, "label": r.label, **r.scores} for r in rows]
        if "top" not in case:
            got.sort(key=lambda r: (r["path"], r["start"]))
            want.sort(key=lambda r: (r["path"], r["start"]))
        assert len(got) == len(want) > 0, case
        for g, w in zip(got, want):
            assert (g["path"], g["start"], g["label"]) == (w["path"], w["start"], w["label"]), case
            for name in ("steady", "sweep"):
                assert g[name] == pytest.approx(w[name], abs=1e-5), case


PLUGIN_ONLY_ON_THE_OWNER = """
import numpy as np
from plugins.contract import WindowTagger
from plugins.hookspecs import hookimpl


@hookimpl
def register_window_taggers(register):
    register(WindowTagger(name="loudness_only_here", tag=lambda w, sr: {"loud": np.abs(w).max(axis=1) > 0.5}))
"""


def test_a_plugin_missing_on_a_worker_is_an_error_naming_it(
    cluster, archive, tmp_path, monkeypatch, tiny_model_dir, tiny_encoder
):
    from indexer.ray_pipeline import ClusterError
    from indexer.settings import load_settings
    from plugins.manager import build_plugin_manager
    from search.sound_index import SoundIndex

    (tmp_path / "owner_only_tagger.py").write_text(PLUGIN_ONLY_ON_THE_OWNER)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the cluster's workers
    monkeypatch.setenv("SOUNDSIFT_EXTRA_PLUGINS", "owner_only_tagger")
    plugins = build_plugin_manager()
    assert "loudness_only_here" in plugins.taggers
    settings = load_settings(index=tmp_path / "index", model=str(tiny_model_dir), device="cpu", ray=cluster.address)
    with SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder, plugins=plugins) as sx:
        with pytest.raises(ClusterError) as caught:
            sx.index([str(archive / "a.wav")], progress=False)
        assert sx.store.cursor().execute("SELECT count(*) FROM windows").fetchone() == (0,)
        assert sx.store.cursor().execute("SELECT status FROM runs").fetchall() == [("failed",)]
    message = str(caught.value)
    assert "owner_only_tagger" in message and "missing on Ray worker" in message and "\n" not in message


def test_a_server_with_ray_sends_its_reindex_jobs_to_the_cluster(
    cluster, archive, tmp_path, tiny_model_dir, tiny_encoder
):
    from search.http.jobs import JobManager

    with _open(tmp_path / "index", tiny_model_dir, tiny_encoder, ray=cluster.address) as sx:
        jobs = JobManager(sx)
        try:
            job = jobs.submit([str(archive / "sub")], trigger="api")
            info = jobs.wait(job.id, timeout_s=600)
        finally:
            jobs.close()
    assert info.status == "completed", info.error
    report = info.report.document()  # what GET /jobs/{id} carries
    assert report["files_indexed"] == 2 and report["windows"] == 7
    assert report["stages"]["embed"]["on"] == "ray actors"
    assert sum(report["stages"]["decode"]["files_by_node"].values()) == 2


def test_owner_killed_mid_run_leaves_an_index_the_next_run_resumes(
    cluster, archive, local_index, tmp_path, tiny_model_dir
):
    index_dir = tmp_path / "index"
    env = {**cli_env(tiny_model_dir), "SOUNDSIFT_COMMIT_EVERY_FILES": "1", "SOUNDSIFT_TEST_PAUSE_AT": "commit:3"}
    args = [
        sys.executable,
        "-m",
        "search.cli",
        "index",
        str(archive),
        "--index",
        str(index_dir),
        "--ray",
        cluster.address,
        "--json",
    ]
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        for line in proc.stderr:
            if line.startswith("soundsift-paused-at commit"):
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail(f"the owner never paused: {proc.wait()} {proc.stdout.read()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    env.pop("SOUNDSIFT_TEST_PAUSE_AT")
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # Two commits landed before the kill (the third was rolled back with it): the rest is indexed now.
    assert doc["files_unchanged"] >= 1 and doc["files_indexed"] < 8
    assert doc["files_unchanged"] + doc["files_indexed"] + doc["files_failed"] == 9
    assert doc["stages"]["embed"]["on"] == "ray actors"
    assert sorted(_windows(index_dir)) == sorted(_windows(local_index[0]))
    check = subprocess.run(
        [sys.executable, "-m", "search.cli", "check", "--index", str(index_dir), "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and json.loads(check.stdout)["ok"]
    import duckdb

    con = duckdb.connect(str(index_dir / "soundsift.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT status FROM runs ORDER BY id").fetchall()
    finally:
        con.close()
    assert runs == [("interrupted",), ("completed",)]


def test_a_worker_node_killed_mid_run_costs_a_retry_not_the_run(
    cluster, archive, local_index, tmp_path, tiny_model_dir, tiny_encoder
):
    """Runs last: it takes the worker node away (and starts a fresh one after)."""
    worker = cluster.nodes[1]
    killed = threading.Event()

    def on_progress(update: dict) -> None:
        if update["files_done"] >= 1 and not killed.is_set():
            killed.set()
            cluster.kill_node(worker)

    index_dir = tmp_path / "index"
    with _open(index_dir, tiny_model_dir, tiny_encoder, ray=cluster.address, commit_every_files=1) as sx:
        report = sx.index([str(archive)], progress=False, on_progress=on_progress)
    assert killed.is_set()
    assert report.files_indexed == 8 and report.files_failed == 1 and report.windows == 20
    local, remote = _windows(local_index[0]), _windows(index_dir)  # _windows fails on any window stored twice
    assert sorted(local) == sorted(remote)
    for key, (_, _, vector) in local.items():
        np.testing.assert_allclose(remote[key][2], vector, atol=1e-5, rtol=0)
