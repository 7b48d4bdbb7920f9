"""Bad input never stops a run; a user's mistake is one line on stderr and a non-zero exit."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from indexer.errors import ModelMismatch, ModelNotFound
from indexer.model import load_clap
from indexer.store import IndexStore
from indexer.tiny_clap import build_tiny_clap

SR = 48_000


def _wav_header(channels: int, rate: int, bits: int = 16, data_bytes: int = 0) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def test_bad_files_are_recorded_and_skipped(tmp_path, write_sound, run_cli):
    archive = tmp_path / "archive"
    good = write_sound(archive / "good.wav", "tone", 12.0)
    (archive / "empty.wav").write_bytes(b"")
    (archive / "garbage.mp3").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    full = write_sound(tmp_path / "x.mp3", "noise", 5.0)
    (archive / "truncated.mp3").write_bytes(full.read_bytes()[:40])
    (archive / "text.flac").write_text("this is not audio at all\n" * 20)
    sf.write(archive / "lowrate.wav", np.zeros(3000, np.float32), 2000)
    (archive / "zero_channels.wav").write_bytes(_wav_header(0, 16000, data_bytes=3200) + bytes(3200))
    sf.write(archive / "nan.wav", np.array([0.1, np.nan, 0.2] * 16000, np.float32), 16000, subtype="FLOAT")
    # mislabelled but valid audio (FLAC bytes named .mp3) is decoded by the decoder that accepts it
    write_sound(tmp_path / "real.flac", "bell", 6.0)
    (archive / "mislabelled.mp3").write_bytes((tmp_path / "real.flac").read_bytes())

    proc = run_cli("index", archive, "--index", tmp_path / "index", "--json")
    assert proc.returncode == 0
    report = proc.json
    assert report["files_indexed"] == 2
    assert report["windows"] == 3  # good.wav: 2, mislabelled.mp3: 1
    errors = {e["path"].rsplit("/", 1)[-1]: e["error"] for e in report["errors"]}
    assert set(errors) == {
        "empty.wav",
        "garbage.mp3",
        "truncated.mp3",
        "text.flac",
        "lowrate.wav",
        "zero_channels.wav",
        "nan.wav",
    }
    assert errors["empty.wav"] == "empty file (0 bytes)"
    assert "sample rate 2000 Hz outside 4000..768000 Hz" in errors["lowrate.wav"]
    assert "non-finite samples" in errors["nan.wav"]
    assert all("\n" not in e for e in errors.values())
    assert good.exists()

    stats = run_cli("stats", "--index", tmp_path / "index", "--json").json
    assert stats["files"]["indexed"] == 2 and stats["files"]["failed"] == 7
    failed = run_cli("stats", "--index", tmp_path / "index")
    assert "7 failed" in failed.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (("index", "/no/such/dir", "--index", "{tmp}/i"), "error: no such file or directory: /no/such/dir"),
        (("classify", "--index", "{tmp}/nothing", "--labels", "a"), "error: no index at {tmp}/nothing"),
        (("classify-file", "{tmp}/a.wav", "--labels", " , ,"), "error: empty label list"),
        (
            ("classify-file", "{tmp}/a.wav", "--labels", "x", "--model", "{tmp}/no-model"),
            "error: CLAP weights for '{tmp}/no-model' are not available",
        ),
        (
            ("classify-file", "{tmp}/a.wav", "--labels", "x", "--policy", "nope"),
            "error: no scoring policy named 'nope'",
        ),
        (
            ("index", "{tmp}/a.wav", "--index", "{tmp}/i", "--window", "20", "--hop", "20"),
            "error: --window 20 s is longer than the model accepts: the maximum is 10 s",
        ),
        (  # refused before any cluster is reached (the address is never dialled)
            ("classify", "--index", "{tmp}/i", "--labels", "a, b", "--ray", "127.0.0.1:9", "--out", "{tmp}/o")
            + ("--path-glob", "*/a.wav"),
            "error: --path-glob, --tag and --said are not available with --ray",
        ),
        (
            ("classify", "--index", "{tmp}/i", "--labels", "a, b", "--ray", "127.0.0.1:9", "--out", "{tmp}/o")
            + ("--prompt-template", "the sound of {{}}"),
            "error: --prompt-template is not supported with --ray yet",
        ),
    ],
)
def test_user_mistakes_are_one_line(tmp_path, write_sound, run_cli, args, message):
    write_sound(tmp_path / "a.wav", "tone", 2.0)
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("note:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(message.format(tmp=tmp_path))
    assert "Traceback" not in proc.stderr


def test_missing_hub_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound) as info:
        load_clap("laion/clap-htsat-fused-not-cached", device="cpu")
    assert "huggingface-cli download laion/clap-htsat-fused-not-cached" in str(info.value)
    assert "--model DIR" in str(info.value)


def test_model_mismatch_names_both(tmp_path, write_sound, run_cli, tiny_model_dir):
    other = build_tiny_clap(tmp_path / "other-clap", seed=1)
    write_sound(tmp_path / "archive" / "a.wav", "tone", 3.0)
    run_cli("index", tmp_path / "archive", "--index", tmp_path / "index")
    proc = run_cli("search", "a tone", "--index", tmp_path / "index", "--model", other, check=False)
    assert proc.returncode != 0
    assert "was built with" in proc.stderr and str(tiny_model_dir) in proc.stderr and str(other) in proc.stderr
    proc = run_cli("index", tmp_path / "archive", "--index", tmp_path / "index", "--window", "5", check=False)
    assert proc.returncode != 0 and "other feature settings" in proc.stderr and "window_s" in proc.stderr


def test_model_mismatch_from_python(tmp_path, tiny_encoder):
    from dataclasses import replace

    store = IndexStore.open(tmp_path, tiny_encoder.identity, create=True)
    store.close()
    with pytest.raises(ModelMismatch):
        IndexStore.open(tmp_path, replace(tiny_encoder.identity, fingerprint="f" * 64), create=False).close()
