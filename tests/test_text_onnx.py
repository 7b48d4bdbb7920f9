"""The ONNX Runtime text tower: the same vectors as transformers, readers that load neither torch nor transformers,
and an export that is written by whoever has the model loaded and replaced when it is missing or damaged."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, build_three_file_index, cli_env

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
print("\\n@@probe " + json.dumps({"code": code, "heavy": heavy, "pandas": "pandas" in sys.modules}))
"""


def probe(args: list, tiny_model_dir: Path, cache: Path) -> tuple[dict, str, str]:
    """(code and heavy modules, stdout, stderr) of one CLI run in a fresh interpreter with exports under ``cache``."""
    env = cli_env(tiny_model_dir)
    env["SOUNDSIFT_ONNX_CACHE"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([str(a) for a in args])],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    out, _, tail = proc.stdout.rpartition("\n@@probe ")
    assert tail, f"no probe line: {proc.stdout}\n{proc.stderr}"
    return json.loads(tail), out, proc.stderr


def test_set_texts() -> list[str]:
    """Every prompted text of the test sets: the tiny CLAP's sentences and the English phrasings (positive and
    negative) the Chinese translator gives for every query of the zh benchmark files, plus edge cases."""
    from indexer.settings import load_settings
    from indexer.tiny_clap import SENTENCES
    from plugins.manager import default_plugins
    from search.core.prompts import prepare_query

    settings = load_settings()
    plugins = default_plugins()
    texts = [settings.prompt_template.format(s) for s in SENTENCES[1:]]
    for name in ("zh_queries.tsv", "zh_queries_blind.tsv", "zh_queries_heldout.tsv"):
        for line in (REPO / "benchmarks" / name).read_text(encoding="utf-8").splitlines():
            query = line.split("\t")[0].strip()
            if not query or query.startswith("#"):
                continue
            prepared = prepare_query(
                query, plugins, settings.prompt_template, settings.plugin_view(), keep_untranslated=True
            )
            texts += prepared.texts + prepared.negatives
    texts += ["This is a sound of 轴承异响.", "x", "", "glass " * 300]  # raw Chinese, one token, nothing, truncated
    return list(dict.fromkeys(texts))


test_set_texts.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def exported(tiny_encoder, tmp_path_factory) -> Path:
    """An export of the tiny CLAP in a cache of this module's own."""
    import os

    from indexer.text_onnx import ensure_text_export

    cache = tmp_path_factory.mktemp("onnx-module")
    before = os.environ["SOUNDSIFT_ONNX_CACHE"]
    os.environ["SOUNDSIFT_ONNX_CACHE"] = str(cache)
    try:
        where = ensure_text_export(tiny_encoder, tiny_encoder.identity)
    finally:
        os.environ["SOUNDSIFT_ONNX_CACHE"] = before
    assert where == cache / tiny_encoder.identity.fingerprint
    return cache


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, tiny_model_dir, tiny_encoder):
    """A small closed index of the tiny CLAP (three files, six windows)."""
    return build_three_file_index(tmp_path_factory.mktemp("onnx-index"), tiny_model_dir, tiny_encoder)


def transformers_vectors(encoder, texts: list[str]) -> np.ndarray:
    """Unit vectors from transformers' own ``ClapModel.get_text_features``, in padded batches (fast on a busy box)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            tokens = encoder.tokenizer(texts[i : i + 64], truncation=True, padding=True, return_tensors="pt")
            features = encoder.model.get_text_features(**tokens)
            features = features if isinstance(features, torch.Tensor) else features.pooler_output
            out.append(torch.nn.functional.normalize(features.float(), dim=-1).numpy())
    return np.concatenate(out)


@pytest.mark.parametrize("prepack", [True, False], ids=["packed", "unpacked"])
def test_onnx_vectors_equal_transformers_for_every_test_text(exported, tiny_encoder, monkeypatch, prepack):
    from indexer.text_onnx import OnnxTextEncoder, open_export

    monkeypatch.setenv("SOUNDSIFT_ONNX_CACHE", str(exported))
    texts = test_set_texts()
    assert len(texts) > 500 and any("bearing" in t for t in texts)  # the Chinese queries' translations are in
    onnx = open_export(tiny_encoder.identity, prepack=prepack)  # a server's session, and a short command's
    assert isinstance(onnx, OnnxTextEncoder)
    got, want = onnx.embed_texts(texts), transformers_vectors(tiny_encoder, texts)
    assert got.shape == want.shape == (len(texts), 512) and got.dtype == np.float32
    assert float(np.max(np.abs(got - want))) <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    some = texts[:: max(1, len(texts) // 20)]  # and the unbatched torch path the index remembers texts by
    assert float(np.max(np.abs(onnx.embed_texts(some) - tiny_encoder.embed_texts(some)))) <= 1e-5
    assert np.array_equal(
        onnx.embed_texts(texts[:3][::-1]), got[:3][::-1]
    )  # one text per run: batch-mates change nothing


def test_the_export_is_keyed_by_fingerprint_with_the_checkpoints_tokenizer(exported, tiny_encoder):
    from tokenizers import Tokenizer

    where = exported / tiny_encoder.identity.fingerprint
    meta = json.loads((where / "export.json").read_text())
    assert meta["fingerprint"] == tiny_encoder.identity.fingerprint and meta["embedding_dim"] == 512
    # the graph and, beside it, its weights (ONNX external data), each of the size recorded
    assert sorted(p.name for p in where.iterdir()) == [
        "export.json",
        "text_tower.onnx",
        "text_tower.weights",
        "tokenizer.json",
    ]
    assert meta["export_version"] == 2 and meta["weights_bytes"] == (where / "text_tower.weights").stat().st_size
    assert sorted(p.name for p in exported.iterdir()) == [tiny_encoder.identity.fingerprint]  # no staging left
    tok = Tokenizer.from_file(str(where / "tokenizer.json"))
    for text in ("This is a sound of glass breaking.", "glass " * 300):
        assert tok.encode(text).ids == tiny_encoder.tokenizer([text], truncation=True)["input_ids"][0]


def test_search_and_classify_with_the_export_load_neither_torch_nor_transformers(
    built_index, exported, tiny_model_dir, tiny_encoder
):
    found, out, err = probe(["search", "a motor humming", "--index", built_index, "--json"], tiny_model_dir, exported)
    assert found == {"code": 0, "heavy": [], "pandas": False}, err  # pandas alone is a fifth of a second
    assert "warning" not in err
    assert [len(r["hits"]) for r in json.loads(out)["results"]] == [6]
    labels = "knocking and rattling, water leaking, 轴承异响"
    classified, out, err = probe(
        ["classify", "--labels", labels, "--index", built_index, "--json"], tiny_model_dir, exported
    )
    assert classified == {"code": 0, "heavy": [], "pandas": False}, err
    rows = json.loads(out)["rows"]
    assert len(rows) == 6 and all(abs(sum(r["scores"].values()) - 1.0) < 1e-5 for r in rows)
    # The reader remembered the texts it embedded: they are the transformers vectors within 1e-5.
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        text = "This is a sound of water leaking."
        remembered = sx.store.text_vectors(tiny_encoder.identity.fingerprint, [text])[text]
    assert float(np.max(np.abs(remembered - tiny_encoder.embed_texts([text])[0]))) <= 1e-5


def test_remembered_vectors_stay_valid_when_the_export_appears(built_index, exported, tiny_model_dir, tiny_encoder):
    """A text embedded by transformers before any export is served as remembered, the same values, afterwards."""
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    empty = built_index.parent / "no-exports"
    _, before, err = probe(["search", "a squealing belt", "--index", built_index, "--json"], tiny_model_dir, empty)
    assert err.count("warning: ONNX text tower unusable") == 1
    _, after, err = probe(["search", "a squealing belt", "--index", built_index, "--json"], tiny_model_dir, exported)
    assert before == after and "warning" not in err
    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        text = "This is a sound of a squealing belt."
        remembered = sx.store.text_vectors(tiny_encoder.identity.fingerprint, [text])[text]
    assert np.array_equal(remembered, tiny_encoder.embed_texts([text])[0])  # written by transformers, kept as is


def damage_export(where: Path, damage: str) -> None:
    """Break the export at ``where`` the way a disk, a crash or a stale file would."""
    model = where / "text_tower.onnx"
    data = model.read_bytes()
    if damage == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":  # the same size: only loading it shows
        model.write_bytes(b"\x00not an onnx file" * (len(data) // 17) + b"\x00" * (len(data) % 17))
    elif damage == "wrong-values":  # loads and runs, but no longer computes what it was checked to compute
        meta = json.loads((where / "export.json").read_text())
        meta["probe_vector"] = [-x for x in meta["probe_vector"]]
        (where / "export.json").write_text(json.dumps(meta))
    elif damage == "weights-garbage":  # the graph intact, its weights file the same size: only the probe shows
        weights = where / "text_tower.weights"
        weights.write_bytes(b"\x3f" * weights.stat().st_size)
    elif damage == "other-version":
        meta = json.loads((where / "export.json").read_text())
        meta["export_version"] = -1
        (where / "export.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "weights-garbage", "wrong-values", "other-version"])
def test_a_damaged_export_falls_back_with_one_warning_and_the_next_owner_rewrites_it(
    damage, built_index, exported, tiny_model_dir, tiny_encoder, tmp_path, monkeypatch, capsys
):
    import shutil

    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    cache = tmp_path / "cache"
    where = cache / tiny_encoder.identity.fingerprint
    shutil.copytree(exported, cache)
    damage_export(where, damage)
    monkeypatch.setenv("SOUNDSIFT_ONNX_CACHE", str(cache))
    monkeypatch.setattr("indexer.text_onnx._WARNED", set())  # once per process: this test's process is shared
    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    queries = [f"rain on a roof ({damage})", f"birds chirping ({damage})"]
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        hits = [sx.search([q], k=2).results[0].hits for q in queries]
        assert [len(h) for h in hits] == [2, 2]
        assert (
            not sx.encoder.text_onnx_loaded and type(sx.encoder._text.model).__name__ == "ClapTextModelWithProjection"
        )
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "warning: ONNX text tower unusable" in err, err
    assert not where.exists()  # out of the way, for the next owner
    with SoundIndex.open(tmp_path / "owner", settings=settings, create=True, encoder=tiny_encoder) as owner:
        assert owner.write_text_export() == where
    assert "warning" not in capsys.readouterr().err
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        sx.search([f"a siren wailing ({damage})"], k=1)
        assert sx.encoder.text_onnx_loaded and sx.encoder._text is None


def test_a_version_1_export_is_read_as_it_is_and_the_next_owner_rewrites_it(
    built_index, exported, tiny_model_dir, tiny_encoder, tmp_path, monkeypatch, capsys
):
    """Version 1 held the weights inside the graph file: readers keep using it; an owner writes version 2."""
    import shutil

    import onnx

    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    cache = tmp_path / "cache"
    where = cache / tiny_encoder.identity.fingerprint
    shutil.copytree(exported, cache)
    graph = onnx.load(str(where / "text_tower.onnx"))  # the weights read back into the graph: one file
    (where / "text_tower.weights").unlink()
    onnx.save_model(graph, str(where / "text_tower.onnx"))
    meta = json.loads((where / "export.json").read_text())
    meta.update(export_version=1, model_bytes=(where / "text_tower.onnx").stat().st_size)
    del meta["weights_bytes"]
    (where / "export.json").write_text(json.dumps(meta))
    monkeypatch.setenv("SOUNDSIFT_ONNX_CACHE", str(cache))
    settings = load_settings(index=built_index, model=str(tiny_model_dir), device="cpu")
    with SoundIndex.open(built_index, settings=settings, read_only=True) as sx:
        sx.search(["a kettle whistling (version 1)"], k=1)
        assert sx.encoder.text_onnx_loaded and sx.encoder._onnx.export_version == 1
    with SoundIndex.open(tmp_path / "owner", settings=settings, create=True, encoder=tiny_encoder) as owner:
        assert owner.write_text_export() == where
    assert "warning" not in capsys.readouterr().err
    assert json.loads((where / "export.json").read_text())["export_version"] == 2
    assert (where / "text_tower.weights").stat().st_size > (where / "text_tower.onnx").stat().st_size


@pytest.mark.slow  # three interpreters, two of them loading torch and transformers
def test_a_missing_export_falls_back_and_the_next_index_writes_it(
    built_index, tiny_model_dir, tiny_encoder, tmp_path, run_cli, write_sound
):
    cache = tmp_path / "cache"
    where = cache / tiny_encoder.identity.fingerprint
    found, out, err = probe(["search", "a baby crying", "--index", built_index, "--json"], tiny_model_dir, cache)
    assert {k: found[k] for k in ("code", "heavy")} == {"code": 0, "heavy": ["torch", "transformers"]}, err
    assert err.count("warning:") == 1 and "warning: ONNX text tower unusable" in err, err
    assert len(json.loads(out)["results"][0]["hits"]) == 6 and not where.exists()
    write_sound(tmp_path / "more" / "tone.wav", "tone", 3.0)
    run_cli("index", tmp_path / "more", "--index", tmp_path / "other", env={"SOUNDSIFT_ONNX_CACHE": str(cache)})
    assert (where / "export.json").exists()
    found, out, err = probe(["search", "a baby crying", "--index", tmp_path / "other", "--json"], tiny_model_dir, cache)
    assert {k: found[k] for k in ("code", "heavy")} == {"code": 0, "heavy": []} and "warning" not in err, err
    assert len(json.loads(out)["results"][0]["hits"]) == 1


@pytest.mark.slow  # two interpreters loading torch and transformers
def test_doctor_export_writes_once_and_checks_after(tiny_model_dir, tiny_encoder, tmp_path, run_cli):
    cache = tmp_path / "cache"
    first = run_cli("doctor", "--export", env={"SOUNDSIFT_ONNX_CACHE": str(cache)})
    where = cache / tiny_encoder.identity.fingerprint
    assert f"text tower (ONNX): {where} (written)" in first.stdout.replace("\n", "")
    flat = first.stdout.replace("\n", "")
    assert f"audio tower (ONNX): {where}.audio (written; per window here: torch " in flat
    assert ("OpenVINO " in flat) == (importlib.util.find_spec("openvino") is not None), flat  # measured where installed
    second = run_cli("doctor", "--export", "--model", tiny_model_dir, env={"SOUNDSIFT_ONNX_CACHE": str(cache)})
    assert second.stdout.replace("\n", "").count("(already there, checked") == 2


def test_help_imports_no_torch(tiny_model_dir, tmp_path):
    found, out, _ = probe(["--help"], tiny_model_dir, tmp_path)
    assert {k: found[k] for k in ("code", "heavy")} == {"code": 0, "heavy": []} and "search" in out
