"""Teach it your sounds: examples, search by example, probes (train, classify, search, filters, export/import).

Four classes of synthetic sound (hum, whistle, hiss, knocking) that even the tiny random CLAP separates are
indexed once per module; 4 windows per class are marked through the real CLI, a probe is trained, and its
accuracy on the other windows is compared with a plain scikit-learn logistic regression on the same vectors.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, cli_env

RATE = 48_000
CLASSES = ("hum", "whistle", "hiss", "knock")
PER_CLASS = 7
MARKED = 4


def synth(kind: str, seed: int, seconds: float = 2.0) -> np.ndarray:
    """One clip of a class; seeds vary pitch, rate and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "hum":
        x = 0.4 * np.sin(2 * np.pi * (60 + rng.uniform(-3, 3)) * t) + 0.2 * np.sin(2 * np.pi * 120 * t)
    elif kind == "whistle":
        x = 0.4 * np.sin(2 * np.pi * rng.uniform(2500, 3500) * t + 3 * np.sin(2 * np.pi * 5 * t))
    elif kind == "hiss":
        x = 0.3 * rng.standard_normal(len(t))
    else:  # knocking: short damped thumps
        x = np.zeros(len(t))
        n = int(0.03 * RATE)
        pulse = 0.8 * np.exp(-np.arange(n) / (0.005 * RATE)) * np.sin(2 * np.pi * 180 * np.arange(n) / RATE)
        for s in np.arange(0.1, seconds - 0.05, rng.uniform(0.25, 0.4)):
            i = int(s * RATE)
            x[i : i + n] += pulse[: len(x) - i]
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write(path: Path, audio: np.ndarray) -> Path:
    from search.demo_audio import write_audio

    return write_audio(path, audio, RATE)


def index_archive(archive: Path, index_dir: Path, model_dir: Path, encoder) -> None:
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    settings = load_settings(index=index_dir, model=str(model_dir), device="cpu", decode_workers=1)
    with SoundIndex.open(index_dir, settings=settings, create=True, encoder=encoder) as sx:
        sx.index([str(archive)], progress=False)


@pytest.fixture(scope="module")
def taught(tmp_path_factory, tiny_model_dir, tiny_encoder):
    """An index of the four classes (one window per file) with 4 marked windows per class."""
    root = tmp_path_factory.mktemp("teach")
    archive = root / "archive"
    archive.mkdir()
    for kind in CLASSES:
        for i in range(PER_CLASS):
            write(archive / f"{kind}_{i}.wav", synth(kind, 100 * CLASSES.index(kind) + i))
    index_dir = root / "index"
    index_archive(archive, index_dir, tiny_model_dir, tiny_encoder)
    return {"root": root, "archive": archive, "index": index_dir}


def cli(model_dir: Path, *args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI entry point (`search.cli.main`) run in this process: exit code, stdout and stderr as a subprocess has them.

    In-process keeps each call to a fraction of a second; the kill test runs a real subprocess."""
    import contextlib
    import io
    import json

    from search.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_argv = sys.argv
    code = 0
    os.environ.update({k: v for k, v in cli_env(model_dir).items() if k.startswith(("SOUNDSIFT_", "HF_"))})
    os.environ.update(env or {})
    sys.argv = ["soundsift", *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
            except SystemExit as exc:
                code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    proc = subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"soundsift {' '.join(map(str, args))} exited {code}\n{proc.stdout}\n{proc.stderr}")
    proc.json = json.loads(proc.stdout) if "--json" in args and code == 0 and proc.stdout.strip() else None  # type: ignore[attr-defined]
    return proc


def window_vectors(index_dir: Path):
    """(window ids, vectors, class of each window) read straight from the store."""
    from indexer.matrix import WindowMatrix
    from indexer.store import IndexStore

    store = IndexStore.open(index_dir, None, create=False, read_only=True)
    try:
        wm = WindowMatrix.current(store)
        ids = np.asarray(wm.ids).copy()
        rows = store.window_rows([int(i) for i in ids])
        vectors = np.asarray(wm.vectors, np.float32).copy()
    finally:
        store.close()
    return ids, vectors, np.array([Path(rows[int(i)][0]).name.split("_")[0] for i in ids])


@pytest.fixture(scope="module")
def trained(taught, tiny_model_dir):
    """The probe ``four`` trained on 4 marked files per class through the CLI."""
    a = taught["archive"]
    for kind in CLASSES:
        cli(
            tiny_model_dir,
            "examples",
            "add",
            kind,
            *[a / f"{kind}_{i}.wav" for i in range(MARKED)],
            "--index",
            taught["index"],
        )
    doc = cli(
        tiny_model_dir, "train", "four", "--classes", ", ".join(CLASSES), "--index", taught["index"], "--json"
    ).json
    return doc


def test_probe_accuracy_close_to_plain_logistic_regression(taught, trained, tiny_model_dir):
    from sklearn.linear_model import LogisticRegression

    assert trained["name"] == "four" and trained["classes"] == list(CLASSES) and trained["version"] == 1
    assert trained["metrics"]["counts"] == {c: MARKED for c in CLASSES}
    assert set(trained["metrics"]["f1"]) == set(CLASSES) and 0.0 <= trained["metrics"]["cv_accuracy"] <= 1.0
    ids, vectors, truth = window_vectors(taught["index"])
    names = [f"{c}_{i}.wav" for c in CLASSES for i in range(MARKED)]
    doc = cli(tiny_model_dir, "classify", "--probe", "four", "--index", taught["index"], "--json").json
    assert doc["labels"] == list(CLASSES)
    by_window = {r["window_id"]: r for r in doc["rows"]}
    assert set(by_window) == set(int(i) for i in ids)
    for r in doc["rows"]:
        assert abs(sum(r["scores"].values()) - 1.0) < 1e-4 and r["label"] == max(r["scores"], key=r["scores"].get)
    rows = {int(i): Path(by_window[int(i)]["path"]).name for i in ids}
    marked = np.array([rows[int(i)] in names for i in ids])
    probe_acc = np.mean([by_window[int(i)]["label"] == truth[k] for k, i in enumerate(ids) if not marked[k]])
    plain = LogisticRegression(max_iter=2000).fit(vectors[marked], truth[marked])
    plain_acc = float(np.mean(plain.predict(vectors[~marked]) == truth[~marked]))
    assert probe_acc >= 0.6, (probe_acc, plain_acc)
    assert abs(probe_acc - plain_acc) <= 0.1, (probe_acc, plain_acc)


def test_probe_equals_sklearn_predict_proba(taught, trained):
    """The stored W v + b through the softmax policy is scikit-learn's predict_proba of the same fit."""
    from sklearn.linear_model import LogisticRegression

    from indexer.store import IndexStore
    from search.core.probes import load_scorer

    ids, vectors, _ = window_vectors(taught["index"])
    store = IndexStore.open(taught["index"], None, create=False, read_only=True)
    try:
        scorer = load_scorer(store, "four")
    finally:
        store.close()
    order = {c: i for i, c in enumerate(CLASSES)}
    # refit as the probe was fitted: the marked windows' vectors, labels in class order, class_weight="balanced"
    marked_rows = _marked(taught)
    x = vectors[[list(ids).index(w) for w, _ in marked_rows]]
    y = np.array([order[c] for _, c in marked_rows])
    clf = LogisticRegression(class_weight="balanced", max_iter=2000).fit(x, y)
    np.testing.assert_allclose(scorer.probabilities(vectors), clf.predict_proba(vectors), atol=1e-4)


def _marked(taught) -> list[tuple[int, str]]:
    from indexer.store import IndexStore
    from indexer.teach_store import TeachStore

    store = IndexStore.open(taught["index"], None, create=False, read_only=True)
    try:
        return [(e.window_id, e.cls) for c in CLASSES for e in TeachStore(store).examples(c)]
    finally:
        store.close()


def test_like_returns_same_class_first(taught, tiny_model_dir):
    a = taught["archive"]
    for kind in CLASSES:
        target = a / f"{kind}_{PER_CLASS - 1}.wav"
        doc = cli(tiny_model_dir, "search", "--like", target, "-k", "3", "--index", taught["index"], "--json").json
        hits = doc["results"][0]["hits"]
        assert len(hits) == 3 and all(Path(h["path"]).name != target.name for h in hits)  # itself left out
        same = sum(Path(h["path"]).name.startswith(kind + "_") for h in hits)
        assert same >= 2, (kind, [h["path"] for h in hits])
    # --include-self keeps the target's own window (first: cosine 1 with itself); a window id works as a target
    wid = hits[0]["window_id"]
    doc = cli(
        tiny_model_dir, "search", "--like", wid, "--include-self", "-k", "2", "--index", taught["index"], "--json"
    ).json
    assert doc["results"][0]["hits"][0]["window_id"] == wid
    # a clip outside the index, embedded through the same audio path, finds its class
    clip = write(taught["root"] / "clip.wav", synth("whistle", 999))
    doc = cli(tiny_model_dir, "search", "--like-file", clip, "-k", "3", "--index", taught["index"], "--json").json
    assert sum(Path(h["path"]).name.startswith("whistle_") for h in doc["results"][0]["hits"]) >= 2


def test_probe_search_filters_and_writers(taught, trained, tiny_model_dir, tmp_path):
    idx = taught["index"]
    full = cli(tiny_model_dir, "classify", "--probe", "four", "--index", idx, "--json").json["rows"]
    hiss = sorted(full, key=lambda r: (-r["scores"]["hiss"], r["window_id"]))
    doc = cli(tiny_model_dir, "search", "--probe", "four:hiss", "-k", "3", "--index", idx, "--json").json
    hits = doc["results"][0]["hits"]
    assert [h["window_id"] for h in hits] == [r["window_id"] for r in hiss[:3]]
    assert [round(h["score"], 4) for h in hits] == [round(r["scores"]["hiss"], 4) for r in hiss[:3]]
    want = {r["window_id"] for r in full if r["scores"]["hiss"] >= 0.5}
    got = cli(
        tiny_model_dir, "classify", "--probe", "four", "--tag", "probe:four:hiss>=0.5", "--index", idx, "--json"
    ).json
    assert {r["window_id"] for r in got["rows"]} == want and want
    got = cli(
        tiny_model_dir, "search", "hiss", "--tag", "probe:four:hiss>=0.5", "-k", "50", "--index", idx, "--json"
    ).json
    assert {h["window_id"] for h in got["results"][0]["hits"]} == want
    by_file = cli(tiny_model_dir, "classify", "--probe", "four", "--by", "file", "--index", idx, "--json").json
    assert len(by_file["rows"]) == len(CLASSES) * PER_CLASS  # one window per file: file rows = window rows
    out = tmp_path / "rows.csv"
    cli(tiny_model_dir, "classify", "--probe", "four", "--out", out, "--index", idx)
    header = out.read_text().splitlines()[0].split(",")
    assert {"path", "start", "end", "label", *CLASSES} <= set(header)


def test_export_import_and_another_model_refused(taught, trained, tiny_model_dir, tmp_path):
    import json

    idx = taught["index"]
    file = tmp_path / "four.probe.json"
    cli(tiny_model_dir, "probes", "export", "four", file, "--index", idx)
    assert file.stat().st_size < 200_000
    cli(tiny_model_dir, "probes", "import", file, "--name", "four_copy", "--index", idx)
    listed = {p["name"]: p for p in cli(tiny_model_dir, "probes", "list", "--index", idx, "--json").json["probes"]}
    assert listed["four_copy"]["classes"] == list(CLASSES) and not listed["four"]["examples_changed"]
    a = cli(tiny_model_dir, "classify", "--probe", "four", "--index", idx, "--json").json["rows"]
    b = cli(tiny_model_dir, "classify", "--probe", "four_copy", "--index", idx, "--json").json["rows"]
    assert [r["scores"] for r in a] == [r["scores"] for r in b]
    doc = json.loads(file.read_text())
    doc["model_id"], doc["model_fingerprint"] = "laion/clap-htsat-fused", "f" * 64
    other = tmp_path / "other.probe.json"
    other.write_text(json.dumps(doc))
    proc = cli(tiny_model_dir, "probes", "import", other, "--name", "other", "--index", idx, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert "laion/clap-htsat-fused" in proc.stderr and str(tiny_model_dir.resolve()) in proc.stderr
    names = [p["name"] for p in cli(tiny_model_dir, "probes", "list", "--index", idx, "--json").json["probes"]]
    assert "other" not in names
    cli(tiny_model_dir, "probes", "remove", "four_copy", "--index", idx)


def test_bad_input_is_one_line_and_stores_nothing(taught, trained, tiny_model_dir):
    idx = taught["index"]
    a = taught["archive"]

    def state():
        ex = cli(tiny_model_dir, "examples", "list", "--index", idx, "--json").json["examples"]
        pr = cli(tiny_model_dir, "probes", "list", "--index", idx, "--json").json["probes"]
        return len(ex), sorted((p["name"], p["version"]) for p in pr)

    before = state()
    cases = [
        (("train", "p", "--classes", "hum, bird"), "class 'bird' has no examples"),
        (("examples", "add", "hum", a / "hum_0.wav", a / "nowhere.wav"), "is not in the index"),
        (("examples", "add", "hum", "99999999"), "no window 99999999"),
        (("train", "p", "--classes", "hum, , hiss"), "empty class name"),
        (("search", "--like", a / "not_indexed.wav"), "is not in the index"),
    ]
    for args, words in cases:
        proc = cli(tiny_model_dir, *args, "--index", idx, check=False)
        assert proc.returncode != 0 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert words in proc.stderr, proc.stderr
    # a probe with one example per class
    cli(tiny_model_dir, "examples", "add", "solo_a", a / "hum_5.wav", "--index", idx)
    cli(tiny_model_dir, "examples", "add", "solo_b", a / "hiss_5.wav", "--index", idx)
    proc = cli(tiny_model_dir, "train", "solo", "--classes", "solo_a, solo_b", "--index", idx, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "at least 2 per class" in proc.stderr, proc.stderr
    cli(tiny_model_dir, "examples", "remove", "solo_a", "--index", idx)
    cli(tiny_model_dir, "examples", "remove", "solo_b", "--index", idx)
    assert state() == before


def test_one_class_probe_takes_background(taught, trained, tiny_model_dir):
    doc = cli(
        tiny_model_dir,
        "train",
        "hum_only",
        "--classes",
        "hum",
        "--background",
        "8",
        "--index",
        taught["index"],
        "--json",
    ).json
    assert doc["classes"] == ["hum", "other"] and doc["metrics"]["counts"] == {"hum": MARKED, "other": 8}
    cli(tiny_model_dir, "probes", "remove", "hum_only", "--index", taught["index"])


def test_examples_survive_rename_and_copy_and_go_stale_on_change(tmp_path, tiny_model_dir, tiny_encoder):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, kind in enumerate(("hum", "hiss", "knock")):
        write(archive / f"{kind}.wav", synth(kind, i))
    idx = tmp_path / "index"
    index_archive(archive, idx, tiny_model_dir, tiny_encoder)
    for kind in ("hum", "hiss", "knock"):
        cli(tiny_model_dir, "examples", "add", "mine", f"{archive / (kind + '.wav')}@0.5", "--index", idx)
    os.rename(archive / "hum.wav", archive / "hum_renamed.wav")
    shutil.copy(archive / "hiss.wav", archive / "hiss_copy.wav")
    write(archive / "knock.wav", synth("whistle", 7))  # same path, other content
    index_archive(archive, idx, tiny_model_dir, tiny_encoder)
    rows = {
        Path(e["marked_path"]).name: e
        for e in cli(tiny_model_dir, "examples", "list", "--index", idx, "--json").json["examples"]
    }
    assert Path(rows["hum.wav"]["path"]).name == "hum_renamed.wav" and rows["hum.wav"]["stale"] is None
    assert rows["hum.wav"]["window_id"] is not None
    assert rows["hiss.wav"]["stale"] is None and rows["hiss.wav"]["window_id"] is not None
    assert rows["knock.wav"]["stale"] == "modified" and rows["knock.wav"]["window_id"] is None
    os.remove(archive / "hiss.wav")  # the copy still holds the content: the example stays live
    index_archive(archive, idx, tiny_model_dir, tiny_encoder)
    rows = {
        Path(e["marked_path"]).name: e
        for e in cli(tiny_model_dir, "examples", "list", "--index", idx, "--json").json["examples"]
    }
    assert Path(rows["hiss.wav"]["path"]).name == "hiss_copy.wav" and rows["hiss.wav"]["window_id"] is not None


def test_kill_during_training_keeps_the_old_probe(taught, trained, tiny_model_dir):
    idx = taught["index"]
    before = cli(tiny_model_dir, "classify", "--probe", "four", "--index", idx, "--json").json["rows"]
    env = {**cli_env(tiny_model_dir), "SOUNDSIFT_TEST_PAUSE_AT": "probe_commit"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "train", "four", "--classes", "hum, hiss", "--index", str(idx)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("soundsift-paused-at probe_commit"):
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail("training never reached its commit")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    listed = cli(tiny_model_dir, "probes", "list", "--index", idx, "--json").json["probes"]
    four = next(p for p in listed if p["name"] == "four")
    assert four["version"] == trained["version"] and four["classes"] == list(CLASSES)
    after = cli(tiny_model_dir, "classify", "--probe", "four", "--index", idx, "--json").json["rows"]
    assert [r["scores"] for r in after] == [r["scores"] for r in before]


def test_examples_import_and_eval_probe(taught, trained, tiny_model_dir, tmp_path):
    import csv

    idx, a = taught["index"], taught["archive"]
    manifest = tmp_path / "marks.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "start", "end", "label"])
        w.writerow([a / "hum_4.wav", 0, 1, "imported_hum"])
        w.writerow([a / "hiss_4.wav", "", "", "imported_hiss"])
        w.writerow([tmp_path / "not_indexed.wav", "", "", "imported_hiss"])
    doc = cli(tiny_model_dir, "examples", "import", manifest, "--index", idx, "--json").json
    assert doc["examples"] == 2 and doc["classes"] == ["imported_hiss", "imported_hum"]
    write(tmp_path / "elsewhere.wav", synth("hum", 4242))  # a real file the index does not hold
    assert doc["not_indexed"] == [] and len(doc["skipped"]) == 1  # the reader skips a file that does not exist
    with manifest.open("a", newline="") as fh:
        csv.writer(fh).writerow([tmp_path / "elsewhere.wav", "", "", "imported_hiss"])
    doc = cli(tiny_model_dir, "examples", "import", manifest, "--index", idx, "--json").json
    assert doc["not_indexed"] == [str(tmp_path / "elsewhere.wav")] and doc["examples"] == 2
    listed = cli(tiny_model_dir, "examples", "list", "--class", "imported_hum", "--index", idx, "--json").json
    assert [Path(e["path"]).name for e in listed["examples"]] == ["hum_4.wav"]
    for cls in ("imported_hum", "imported_hiss"):
        cli(tiny_model_dir, "examples", "remove", cls, "--index", idx)
    # a held-out sample (class folders of new clips) scored by the probe: the eval report of a label set
    sample = tmp_path / "sample"
    for kind in CLASSES:
        (sample / kind).mkdir(parents=True)
        for i in range(2):
            write(sample / kind / f"{i}.wav", synth(kind, 5000 + 10 * CLASSES.index(kind) + i))
    report = cli(tiny_model_dir, "eval", sample, "--probe", "four", "--index", idx, "--json").json
    assert report["labels"] == list(CLASSES) and report["clips"] == 8 and report["variant"] == "probe:four"
    assert 0.0 <= report["accuracy"] <= 1.0 and len(report["per_label"]) == len(CLASSES)
    proc = cli(tiny_model_dir, "eval", sample, "--probe", "nope", "--index", idx, check=False)
    assert proc.returncode != 0 and "no probe named 'nope'" in proc.stderr and proc.stderr.count("\n") == 1
