"""What each command loads: light commands import neither torch nor transformers; search loads the text tower alone;
texts embedded once are remembered in the index, so asking again loads no model at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, build_three_file_index, cli_env

# Runs the real CLI entry point, then reports which heavy packages ended up imported (stdout's last line).
PROBE = """
import json, sys
sys.argv = ["soundsift", *json.loads(sys.argv[1])]
from search.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("torch", "transformers")})
print("\\n@@probe " + json.dumps({"code": code, "heavy": heavy}))
"""


def probe(args: list[str], tiny_model_dir: Path, env: dict | None = None) -> tuple[dict, str, str]:
    """(probe result, stdout before it, stderr) of one CLI run in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([str(a) for a in args])],
        capture_output=True,
        text=True,
        env={**cli_env(tiny_model_dir), **(env or {})},
        cwd=REPO,
        timeout=300,
    )
    out, _, tail = proc.stdout.rpartition("\n@@probe ")
    assert tail, f"no probe line: {proc.stdout}\n{proc.stderr}"
    return json.loads(tail), out, proc.stderr


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, tiny_model_dir, tiny_encoder):
    """A small index built in-process (the tiny CLAP), closed: ready for CLI readers."""
    return build_three_file_index(tmp_path_factory.mktemp("light"), tiny_model_dir, tiny_encoder)


def test_light_commands_import_neither_torch_nor_transformers(built_index, tiny_model_dir):
    for args in (
        ["--help"],
        ["stats", "--index", built_index, "--json"],
        ["stats", "--index", built_index],
        ["check", "--index", built_index, "--json"],
        ["plugins", "--json"],
        ["doctor"],
        ["search", "--help"],
    ):
        result, out, err = probe(args, tiny_model_dir)
        assert result == {"code": 0, "heavy": []}, (args, result, err)
    stats, _, _ = probe(["stats", "--index", built_index, "--json"], tiny_model_dir)
    _, out, _ = probe(["stats", "--index", built_index, "--json"], tiny_model_dir)
    assert json.loads(out)["windows"] == 6 and json.loads(out)["faiss_vectors"] == 6


def test_error_paths_import_neither_torch_nor_transformers(built_index, tmp_path, tiny_model_dir):
    cases = [
        (["search", "dog", "--index", tmp_path / "nothing-here"], "no index at"),
        (["stats", "--index", tmp_path / "nothing-here"], "no index at"),
        (["classify", "--labels", "dog", "--by", "day", "--index", built_index], "--by must be window or file"),
        (["index", tmp_path / "not-mounted", "--index", tmp_path / "new"], "no such file or directory"),
        (["classify-file", tmp_path / "missing.wav", "--labels", "dog"], "no such file"),
        (
            ["classify-file", tmp_path / "missing.wav", "--labels", "dog", "--policy", "nope"],
            "no scoring policy named 'nope'",
        ),
        (["search", "dog", "-k", "0", "--index", built_index], "k must be at least 1"),
    ]
    for args, message in cases:
        result, _, err = probe(args, tiny_model_dir)
        assert result["heavy"] == [] and result["code"] != 0, (args, result, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, (args, err)


def test_search_loads_the_text_tower_alone(built_index, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SOUNDSIFT_TEXT_ONNX", "0")  # the transformers path (tests/test_text_onnx.py: the ONNX one)
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        assert not sx.encoder.text_tower_loaded and not sx.encoder.audio_tower_loaded  # opening loads nothing
        hits = sx.search(["a bell ringing in the distance"], k=3).results[0].hits
        assert len(hits) == 3
        assert sx.encoder.text_tower_loaded and not sx.encoder.audio_tower_loaded
        model = sx.encoder._text.model
        assert type(model).__name__ == "ClapTextModelWithProjection"
        assert not [n for n, _ in model.named_parameters() if "audio" in n]


def test_text_tower_alone_equals_the_whole_model(tiny_model_dir, tiny_encoder):
    from indexer.model import load_clap_text

    text = load_clap_text(str(tiny_model_dir), device="cpu")
    texts = ["This is a sound of glass breaking.", "This is a sound of 轴承异响.", "x"]
    assert np.max(np.abs(text.embed_texts(texts) - tiny_encoder.embed_texts(texts))) < 1e-5
    assert text.identity.fingerprint == tiny_encoder.identity.fingerprint
    assert text.logit_scale == tiny_encoder.logit_scale
    assert sum(p.numel() for p in text.model.parameters()) < sum(p.numel() for p in tiny_encoder.model.parameters()) / 2


def test_a_second_classify_with_the_same_labels_loads_no_model(built_index, tiny_model_dir):
    args = ["classify", "--labels", "rain on a roof, a church bell", "--index", built_index, "--json"]
    no_export = {"SOUNDSIFT_TEXT_ONNX": "0"}  # the transformers text tower, not the ONNX export (test_text_onnx.py)
    first, out1, _ = probe(args, tiny_model_dir, no_export)
    assert first == {"code": 0, "heavy": ["torch", "transformers"]}  # the text tower ran once
    second, out2, _ = probe(args, tiny_model_dir)
    assert second == {"code": 0, "heavy": []}  # remembered: no model, and classify on the CPU needs no torch
    assert out1 == out2
    searched, out3, _ = probe(["search", "a church bell", "--index", built_index, "--json"], tiny_model_dir)
    assert searched == {"code": 0, "heavy": []}  # a remembered text: not even torch
    assert json.loads(out3)["results"][0]["texts"] == ["This is a sound of a church bell."]


def test_remembered_texts_land_in_duckdb_and_warm_the_owner(built_index, tiny_model_dir, tiny_encoder, monkeypatch):
    import duckdb

    monkeypatch.setenv("SOUNDSIFT_TEXT_ONNX", "0")  # compared bit for bit with the transformers tower below
    from indexer.settings import load_settings
    from indexer.store import DB_NAME, TEXT_SIDE_DIR
    from search.sound_index import SoundIndex

    def in_duckdb(text: str) -> bool:
        con = duckdb.connect(str(built_index / DB_NAME), read_only=True)
        try:
            return con.execute("SELECT count(*) FROM text_vectors WHERE text = ?", [text]).fetchone()[0] == 1
        finally:
            con.close()

    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    door, owl = "This is a sound of a squeaking door.", "This is a sound of an owl at night."
    # Alone, a reader folds what it embedded into DuckDB as it closes.
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        sx.search(["a squeaking door"], k=1)
    assert in_duckdb(door) and not list((built_index / TEXT_SIDE_DIR).glob("*.npz"))
    # Beside another reader it cannot write DuckDB: a side file, read by every reader, folded in by the next owner.
    with SoundIndex.open(built_index, settings=settings, read_only=True) as other:
        with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
            sx.search(["an owl at night"], k=1)
        assert list((built_index / TEXT_SIDE_DIR).glob("*.npz")) and not in_duckdb(owl)
        assert owl in other.store.text_vectors(other.encoder.identity.fingerprint, [owl])
    with SoundIndex.open(built_index, settings=settings, encoder=tiny_encoder) as owner:
        assert not list((built_index / TEXT_SIDE_DIR).glob("*.npz"))
        remembered = owner.store.text_vectors(owner.encoder.identity.fingerprint)
        assert door in remembered and owl in remembered
        assert door in owner.encoder._cache and owl in owner.encoder._cache  # the owner warms from the table
        assert np.array_equal(remembered[owl], tiny_encoder.embed_texts([owl])[0])
