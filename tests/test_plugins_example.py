"""docs/example-plugin installed for real (pip, into a target dir): found via its entry point, used by index and classify."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "example-plugin"


def write_toot(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """The TOOT format as the example's README specifies it, written independently of the plugin's code."""
    audio = audio if audio.ndim == 2 else audio[:, None]
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<4sIHI", b"TOOT", sample_rate, audio.shape[1], len(audio)) + pcm.tobytes())


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-installs a copy of docs/example-plugin (setuptools builds in the source tree) into a fresh target dir."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(work / "site"),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    return work / "site"


@pytest.mark.slow  # six CLI processes, each loading torch: about 30 s of CPU
def test_example_plugin_is_discovered_and_used_by_index_and_classify(installed_example, tmp_path, run_cli, write_sound):
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(installed_example)])}
    doc = run_cli("plugins", "--json", env=env).json
    hooks = {p["name"]: p["hooks"] for p in doc["plugins"]}
    assert hooks["toot"] == ["register_decoders", "register_scoring_policies"]  # the entry point's name
    assert {"name": "toot", "extensions": ["toot"], "magic": ["TOOT"], "generic": False} in doc["decoders"]
    assert "tempered" in {p["name"] for p in doc["policies"]}
    assert doc["failed"] == [] or all(f["name"] != "toot" for f in doc["failed"])

    t = np.arange(25 * 16_000) / 16_000
    archive = tmp_path / "archive"
    write_toot(archive / "long.toot", np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 16_000)  # 25 s stereo
    write_toot(archive / "short.toot", 0.3 * np.sin(2 * np.pi * 220 * t[: 4 * 16_000]), 16_000)  # 4 s mono
    write_toot(archive / "renamed.wav", 0.3 * np.sin(2 * np.pi * 330 * t[: 3 * 16_000]), 16_000)  # magic beats the name
    write_sound(archive / "plain.wav", "noise", 3.0)
    index = tmp_path / "index"
    report = run_cli("index", archive, "--index", index, "--json", env=env).json
    assert (report["files_indexed"], report["files_failed"], report["errors"]) == (4, 0, [])
    assert report["windows"] == 6  # long: [0,10] [10,20] [15,25]; short, renamed, plain: one short window each
    with duckdb.connect(str(index / "soundsift.duckdb"), read_only=True) as con:
        decoders = {
            Path(p).name: (d, round(dur, 3))
            for p, d, dur in con.execute("SELECT path, decoder, duration FROM files").fetchall()
        }
    assert decoders == {
        "long.toot": ("toot", 25.0),
        "short.toot": ("toot", 4.0),
        "renamed.wav": ("toot", 3.0),
        "plain.wav": ("soundfile", 3.0),
    }

    labels = "a pure tone, white noise, a bell"
    softmax = run_cli("classify", "--index", index, "--labels", labels, "--json", env=env).json
    tempered = run_cli(
        "classify",
        "--index",
        index,
        "--labels",
        labels,
        "--policy",
        "tempered",
        "--policy-option",
        "temperature=4",
        "--json",
        env=env,
    ).json
    assert tempered["policy"] == "tempered" and len(tempered["rows"]) == len(softmax["rows"]) == 6
    for plain, flat in zip(softmax["rows"], tempered["rows"]):
        assert (plain["path"], plain["start"]) == (flat["path"], flat["start"])
        # softmax(l / 4) is softmax(l) ** (1/4), renormalised
        p = np.array([plain["scores"][n] for n in softmax["labels"]], np.float64) ** 0.25
        np.testing.assert_allclose([flat["scores"][n] for n in softmax["labels"]], p / p.sum(), rtol=1e-4)
        assert flat["label"] == plain["label"]

    # a built-in policy's per-label options from the command line, on the same index
    thresholds = {"a pure tone": 0.2, "white noise": 0.9, "a bell": 0.5}
    multi = run_cli(
        "classify",
        "--index",
        index,
        "--labels",
        labels,
        "--policy",
        "multilabel",
        "--policy-option",
        "center=0",
        "--policy-option",
        f"thresholds={json.dumps(thresholds)}",
        "--json",
        env=env,
    ).json
    assert len(multi["rows"]) == 6
    for row in multi["rows"]:
        fired = [n for n in multi["labels"] if row["scores"][n] >= thresholds[n]]
        assert row["label"] == (max(fired, key=row["scores"].get) if fired else None)
    bad = run_cli(
        "classify",
        "--index",
        index,
        "--labels",
        labels,
        "--policy",
        "multilabel",
        "--policy-option",
        "treshold=0.3",
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().splitlines()[-1]
        == "error: the multilabel policy has no option 'treshold'; it reads: center, threshold, thresholds "
        "(see `soundsift plugins` for each policy's options)"
    )


def test_example_policy_refuses_a_bad_option(installed_example, monkeypatch):
    from plugins.contract import LabelTexts, PolicyOptionError

    monkeypatch.syspath_prepend(str(installed_example))
    from soundsift_toot import score_tempered

    monkeypatch.delitem(sys.modules, "soundsift_toot")  # leave no trace for later tests

    labels = [LabelTexts("a", ("a",)), LabelTexts("b", ("b",))]
    logits = np.array([[2.0, 0.0]], np.float32)
    result = score_tempered(logits, np.full_like(logits, -np.inf), labels, None, {"temperature": 2.0})
    np.testing.assert_allclose(result.scores[0], [np.e / (np.e + 1), 1 / (np.e + 1)], rtol=1e-6)  # softmax([1, 0])
    with pytest.raises(PolicyOptionError, match="temperature must be a positive number, not -1"):
        score_tempered(logits, logits, labels, None, {"temperature": -1})


def test_the_example_plugins_own_tests_pass(tmp_path):
    """docs/example-plugin/tests is what docs/plugins.md shows under "Testing your plugin": it must pass."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
