"""The ONNX Runtime audio tower: the vectors torch gives, an owner on a CPU that indexes without torch or
transformers once the model's exports exist, a damaged export that falls back and is written again, and the
hand-over to torch on a long run where the export measured torch faster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_text_onnx import probe


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_encoder, tiny_model_dir):
    """Both exports of the tiny CLAP, and the record of its checkpoint, in a cache of this module's own."""
    from indexer.audio_onnx import export_audio_tower, remember_checkpoint
    from indexer.text_onnx import export_text_tower

    cache = tmp_path_factory.mktemp("onnx-audio-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOUNDSIFT_ONNX_CACHE", str(cache))
    export_text_tower(tiny_encoder, tiny_encoder.identity)
    where = export_audio_tower(tiny_encoder)
    remember_checkpoint(str(tiny_model_dir), None, tiny_encoder.identity)  # what loading it in this cache records
    yield cache, where
    mp.undo()


def archive(root: Path, seconds=(25.0, 7.5, 3.2)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seconds):
        t = np.arange(int(48_000 * s)) / 48_000
        wave = 0.2 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * np.random.default_rng(i).standard_normal(len(t))
        sf.write(root / f"clip{i}.wav", wave.astype(np.float32), 48_000)
    return root


def stored(index_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from indexer.store import IndexStore

    store = IndexStore.open(index_dir, None, create=False, read_only=True)
    try:
        chunks = list(store.iter_vectors(10_000))
    finally:
        store.close()
    return np.concatenate([c.starts for c in chunks]), np.concatenate([c.vectors for c in chunks])


def test_numpy_log_mel_equals_the_torch_features_and_the_extractor(tiny_encoder):
    import torch

    from indexer.log_mel import NumpyLogMel

    ex = tiny_encoder.extractor
    numpy_features = NumpyLogMel(ex.mel_filters, ex.fft_window_size, ex.hop_length, ex.nb_max_samples)
    rng = np.random.default_rng(3)
    waves = np.stack(
        [numpy_features.repeat_pad((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in (480_000, 33_333)]
    )
    waves[1, 400_000:] = 0.0  # near-silent frames: where float32 would drift
    got = numpy_features(waves)
    want = tiny_encoder.features(torch.from_numpy(waves)).numpy()
    assert got.shape == want.shape == (2, 4, 1001, 64)
    np.testing.assert_allclose(got, want, atol=1e-4)
    extracted = ex(list(waves), sampling_rate=48_000, return_tensors="np", truncation="fusion", padding="repeatpad")
    np.testing.assert_allclose(got[:, 0], extracted["input_features"][:, 0], atol=1e-4)


def test_the_session_gives_the_torch_tower_vectors(exports, tiny_encoder):
    from indexer.audio_onnx import open_audio_export

    encoder = open_audio_export(tiny_encoder.identity)
    rng = np.random.default_rng(5)
    for sizes in ([480_000], [480_000, 100_000, 7_000]):  # batch 1 and 3, short windows repeat-padded
        windows = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in sizes]
        got = encoder.embed_windows(windows)
        want = tiny_encoder.embed_windows(windows)
        assert got.shape == (len(sizes), tiny_encoder.embedding_dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    meta = json.loads((exports[1] / "export.json").read_text())
    assert (
        meta["torch_s_per_window"] > 0 and meta["onnx_s_per_window"] > 0 and meta["torch_start_s"] > 0
    )  # measured in a fresh process


def test_an_owner_indexes_without_torch_and_stores_the_torch_vectors(exports, tmp_path, tiny_model_dir, monkeypatch):
    cache, _ = exports
    audio = archive(tmp_path / "audio")
    light, out, err = probe(["index", audio, "--index", tmp_path / "light", "--json"], tiny_model_dir, cache)
    assert light["code"] == 0 and light["heavy"] == [], err
    assert light["pandas"] is False  # pyarrow's pandas check alone was a fifth of a second of the first commit
    assert json.loads(out)["windows"] == 5
    assert err.count("scores are meaningless") == 1
    monkeypatch.setenv("SOUNDSIFT_AUDIO_ONNX", "0")
    heavy, _, err = probe(["index", audio, "--index", tmp_path / "torch"], tiny_model_dir, cache)
    assert heavy["code"] == 0 and heavy["heavy"] == ["torch", "transformers"], err
    monkeypatch.delenv("SOUNDSIFT_AUDIO_ONNX")
    starts_onnx, onnx = stored(tmp_path / "light")
    starts_torch, torch_vectors = stored(tmp_path / "torch")
    np.testing.assert_array_equal(starts_onnx, starts_torch)
    np.testing.assert_allclose(onnx, torch_vectors, atol=1e-5)
    # an update of the same index: the index's own record names the model, still no torch
    (audio / "clip9.wav").write_bytes((audio / "clip1.wav").read_bytes()[:-4000])
    again, out, err = probe(["index", audio, "--index", tmp_path / "light", "--json"], tiny_model_dir, cache)
    assert again["code"] == 0 and again["heavy"] == [], err


def test_audio_onnx_off_or_a_changed_checkpoint_index_with_torch(exports, tmp_path, tiny_model_dir, monkeypatch):
    import shutil

    cache, _ = exports
    audio = archive(tmp_path / "audio", seconds=(4.0,))
    monkeypatch.setenv("SOUNDSIFT_AUDIO_ONNX", "0")
    off, _, err = probe(["index", audio, "--index", tmp_path / "off"], tiny_model_dir, cache)
    assert off["code"] == 0 and off["heavy"] == ["torch", "transformers"], err
    monkeypatch.delenv("SOUNDSIFT_AUDIO_ONNX")
    copy = tmp_path / "copy-of-model"
    shutil.copytree(tiny_model_dir, copy)  # never loaded from here: no record of its identity yet
    first, _, err = probe(["index", audio, "--index", tmp_path / "copy", "--model", copy], tiny_model_dir, cache)
    assert first["code"] == 0 and first["heavy"] == ["torch", "transformers"], err
    second, _, err = probe(["index", audio, "--index", tmp_path / "copy2", "--model", copy], tiny_model_dir, cache)
    assert second["code"] == 0 and second["heavy"] == [], err  # the first load recorded it
    config = copy / "config.json"
    config.write_text(config.read_text() + " ")  # the checkpoint changed: its record no longer applies
    third, _, err = probe(["index", audio, "--index", tmp_path / "copy3", "--model", copy], tiny_model_dir, cache)
    assert third["code"] == 0 and third["heavy"] == ["torch", "transformers"], err


def garble(path: Path) -> None:
    """The file's bytes replaced by noise of the same size (what a size check cannot see)."""
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_damaged_audio_export_falls_back_once_and_the_owner_writes_it_again(
    exports, tmp_path, tiny_model_dir, monkeypatch, runtime
):
    """Garbage weights of the right size: the probe check catches them, the run goes on with torch (one warning),
    and that owner writes the export again. OpenVINO is made to compile the graph (its kept model is garbled too)."""
    cache, where = exports
    monkeypatch.setenv("SOUNDSIFT_AUDIO_RUNTIME", runtime)
    if runtime == "openvino":
        pytest.importorskip("openvino")
        garble(where / "audio_tower.openvino")  # does not import: OpenVINO compiles the (garbled) graph instead
    garble(where / "audio_tower.weights")
    audio = archive(tmp_path / "audio", seconds=(4.0,))
    fell_back, _, err = probe(["index", audio, "--index", tmp_path / "a"], tiny_model_dir, cache)
    assert fell_back["code"] == 0 and fell_back["heavy"] == ["torch", "transformers"]
    assert err.count("warning: ONNX audio tower unusable") == 1, err
    meta = json.loads((where / "export.json").read_text())  # written again by the owner that loaded torch
    assert (where / "audio_tower.weights").stat().st_size == meta["weights_bytes"]
    light, _, err = probe(["index", audio, "--index", tmp_path / "b"], tiny_model_dir, cache)
    assert light["code"] == 0 and light["heavy"] == [], err


def test_openvino_runs_the_export_and_a_truncated_compiled_model_is_written_again(
    exports, tmp_path, tiny_model_dir, tiny_encoder
):
    """With OpenVINO installed the export keeps a compiled model and both runtimes' rates; OpenVINO's vectors are
    torch's; a compiled model cut short fails the cheap check, so the owner indexes with torch and rewrites it."""
    pytest.importorskip("openvino")
    from indexer.audio_onnx import RATE_KEYS, OnnxAudioEncoder, open_audio_export

    cache, where = exports
    meta = json.loads((where / "export.json").read_text())
    assert meta[RATE_KEYS["openvino"]] > 0 and meta[RATE_KEYS["onnxruntime"]] > 0
    assert (where / "audio_tower.openvino").stat().st_size == meta["openvino_blob_bytes"] > 0
    for runtime in ("openvino", "onnxruntime"):
        encoder = OnnxAudioEncoder(where, tiny_encoder.identity, runtime=runtime)  # raises if the probe fails
        assert encoder.runtime == runtime  # no fallback to the other runtime
        windows = [(0.2 * np.random.default_rng(11).standard_normal(n)).astype(np.float32) for n in (480_000, 9_000)]
        np.testing.assert_allclose(encoder.embed_windows(windows), tiny_encoder.embed_windows(windows), atol=1e-5)
    # a compiled model of another OpenVINO version: readers compile the graph, the next owner with torch rewrites it
    from indexer.audio_onnx import check_or_write_audio_export
    from indexer.audio_openvino import blob_key

    meta["openvino_blob"] = "2024.0.0|0123456789abcdef"
    (where / "export.json").write_text(json.dumps(meta))
    stale = open_audio_export(tiny_encoder.identity)
    stale.embed_windows([np.zeros(480_000, np.float32)])
    assert stale.runtime == "openvino" and stale._problem is None
    assert check_or_write_audio_export(tiny_encoder)[1] is True  # written again
    assert json.loads((where / "export.json").read_text())["openvino_blob"] == blob_key()
    blob = where / "audio_tower.openvino"
    blob.write_bytes(blob.read_bytes()[:1000])
    audio = archive(tmp_path / "audio", seconds=(4.0,))
    heavy, _, err = probe(["index", audio, "--index", tmp_path / "a"], tiny_model_dir, cache)
    assert heavy["code"] == 0 and heavy["heavy"] == ["torch", "transformers"], err
    assert "warning" not in err  # nothing was wrong with the run: the export was only not whole
    assert blob.stat().st_size == json.loads((where / "export.json").read_text())["openvino_blob_bytes"]
    light, _, err = probe(["index", audio, "--index", tmp_path / "b"], tiny_model_dir, cache)
    assert light["code"] == 0 and light["heavy"] == [], err


def test_a_long_run_hands_over_to_torch_where_torch_measured_faster(exports, tiny_encoder, monkeypatch):
    from indexer.audio_onnx import RATE_KEYS, open_audio_export

    encoder = open_audio_export(tiny_encoder.identity)
    rate = RATE_KEYS[encoder.runtime]  # the runtime in use: OpenVINO where installed and measured faster
    encoder.meta.update({rate: 0.2, "torch_s_per_window": 0.1, "torch_start_s": 0.25})  # repaid after 3 windows
    loads = []

    def load_torch():
        loads.append(1)
        return tiny_encoder

    encoder.allow_hand_over(load_torch)
    assert encoder.hand_over_after == 3
    rng = np.random.default_rng(9)
    windows = [(0.2 * rng.standard_normal(480_000)).astype(np.float32) for _ in range(2)]
    first = encoder.embed_windows(windows)
    assert not encoder.handed_over and not loads
    encoder.embed_windows(windows)  # 4 windows embedded: the load starts in the background
    encoder.finish()
    assert encoder.handed_over and loads == [1]
    np.testing.assert_allclose(encoder.embed_windows(windows), first, atol=1e-5)
    monkeypatch.setenv("SOUNDSIFT_AUDIO_ONNX", "1")  # "always": never hands over
    pinned = open_audio_export(tiny_encoder.identity)
    pinned.meta.update({RATE_KEYS[pinned.runtime]: 0.2, "torch_s_per_window": 0.1, "torch_start_s": 0.25})
    pinned.allow_hand_over(load_torch)
    assert pinned.hand_over_after is None
