"""Shared fixtures: a tiny CLAP built once per session, synthetic audio, settings pinned to CPU, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """ONNX text-tower exports of this session land here, never in the user's cache (CLI subprocesses inherit it)."""
    where = tmp_path_factory.mktemp("onnx-cache")
    os.environ["SOUNDSIFT_ONNX_CACHE"] = str(where)
    return where


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random CLAP saved with save_pretrained; loaded through the real loading code."""
    from indexer.tiny_clap import build_tiny_clap

    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from indexer.model import load_clap

    return load_clap(str(tiny_model_dir), device="cpu")


@pytest.fixture()
def make_settings(tiny_model_dir):
    """Settings for an index dir, pinned to CPU and the tiny model: ``make_settings(index_dir, **overrides)``."""
    from indexer.settings import load_settings

    def make(index_dir: Path, **overrides):
        values = dict(index=index_dir, model=str(tiny_model_dir), device="cpu", decode_workers=1)
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture()
def write_sound():
    """``write_sound(path, kind, seconds, sample_rate=48000, seed=0, channels=1)`` -> Path (format by extension)."""
    from search.demo_audio import synthesize, write_audio

    def write(
        path: Path,
        kind: str = "tone",
        seconds: float = 3.0,
        sample_rate: int = 48_000,
        seed: int = 0,
        channels: int = 1,
    ):
        audio = synthesize(kind, seconds, sample_rate, seed)
        if channels > 1:
            audio = np.stack([audio] * channels, axis=1)
        return write_audio(path, audio, sample_rate)

    return write


@pytest.fixture()
def open_index(tmp_path, make_settings, tiny_encoder):
    """``open_index(name="index", **settings)`` -> a SoundIndex created under tmp_path (closed after the test)."""
    from search.sound_index import SoundIndex

    opened = []

    def open_(name: str = "index", **overrides):
        settings = make_settings(tmp_path / name, **overrides)
        sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
        opened.append(sx)
        return sx

    yield open_
    for sx in opened:
        sx.close()


def build_three_file_index(root: Path, tiny_model_dir: Path, tiny_encoder) -> Path:
    """A small closed index of the tiny CLAP under ``root`` (tone, noise and bell, 12 s each: six windows)."""
    from indexer.settings import load_settings
    from search.demo_audio import synthesize, write_audio
    from search.sound_index import SoundIndex

    for i, kind in enumerate(["tone", "noise", "bell"]):
        write_audio(root / "archive" / f"{kind}.wav", synthesize(kind, 12.0, 48_000, seed=i), 48_000)
    settings = load_settings(index=root / "index", model=str(tiny_model_dir), device="cpu", decode_workers=1)
    with SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder) as sx:
        sx.index([root / "archive"], progress=False)
    return root / "index"


def cli_env(tiny_model_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "SOUNDSIFT_MODEL": str(tiny_model_dir),
            "SOUNDSIFT_DEVICE": "cpu",
            "SOUNDSIFT_DECODE_WORKERS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@pytest.fixture()
def run_cli(tiny_model_dir):
    """Run the real ``soundsift`` CLI in a subprocess: ``run_cli(*args, check=True)`` -> CompletedProcess.

    ``result.json`` holds the parsed stdout when ``--json`` was given.
    """

    def run(*args: str, check: bool = True, env: dict | None = None, timeout: float = 240):
        full_env = cli_env(tiny_model_dir)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "search.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=REPO,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"soundsift {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        proc.json = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None
        return proc

    return run


def cli_in_process(env: dict, *args: str):
    """The real CLI entry point (``search.cli.main``: the same exit codes and one-line errors) run in this process,
    with ``env`` set for the call (a value of None unsets a variable).

    Returns ``returncode``, ``stdout``, ``stderr`` and ``json`` (parsed stdout when ``--json`` was given), like
    `run_cli`. A test that runs many commands uses this rather than one new interpreter per command (each
    importing torch and loading the model); `run_cli` stays for what needs a process of its own.
    """
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from search.cli import main

    argv = ["soundsift", *map(str, args)]
    saved = sys.argv
    sys.argv = argv
    try:
        with CliRunner().isolation(env=env) as (stdout, stderr, _):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            sys.stdout.flush()  # the isolated streams are buffered text over bytes
            sys.stderr.flush()
            result = SimpleNamespace(
                returncode=code, stdout=stdout.getvalue().decode(), stderr=stderr.getvalue().decode()
            )
    finally:
        sys.argv = saved
    result.json = json.loads(result.stdout) if "--json" in argv and result.stdout.strip() else None
    return result


def cli_settings_env(tiny_model_dir: Path) -> dict:
    """The SOUNDSIFT_* and HF_* variables of `cli_env`: what an in-process CLI call needs set."""
    return {k: v for k, v in cli_env(tiny_model_dir).items() if k.startswith(("SOUNDSIFT_", "HF_"))}


@pytest.fixture()
def invoke_cli(tiny_model_dir):
    """``invoke_cli(*args, check=True, env=None)``: `cli_in_process` with the tiny model's settings."""

    def run(*args: str, check: bool = True, env: dict | None = None):
        result = cli_in_process({**cli_settings_env(tiny_model_dir), **(env or {})}, *args)
        if check and result.returncode != 0:
            raise AssertionError(
                f"soundsift {' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run
