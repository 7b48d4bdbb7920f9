"""The package as users install it: the public plugin API as ``soundsift``, and a wheel that carries its defaults."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_public_plugin_api_is_the_contract():
    import plugins.contract
    import plugins.hookspecs
    import plugins.scoring
    import soundsift

    assert soundsift.hookimpl is plugins.hookspecs.hookimpl
    assert soundsift.Decoder is plugins.contract.Decoder and soundsift.ScoringPolicy is plugins.contract.ScoringPolicy
    assert soundsift.softmax is plugins.scoring.softmax and soundsift.per_label is plugins.scoring.per_label
    assert set(soundsift.__all__) >= {
        "hookimpl",
        "Decoder",
        "DecodeError",
        "AudioSource",
        "ScoringPolicy",
        "PolicyResult",
        "PolicyOptionError",
        "LabelTexts",
        "ArchiveStats",
        "WindowTagger",
        "QueryTranslation",
        "softmax",
        "per_label",
        "number",
        "OpenAudio",
        "ScoreFunction",
    }
    assert all(hasattr(soundsift, name) for name in soundsift.__all__)


def _shared_site_dirs() -> list[str]:
    """Where this interpreter finds its packages (the new venv sees them too, as /work/mkvenv.sh does)."""
    dirs = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    return list(dict.fromkeys([*dirs, *site.getsitepackages()]))


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_with_the_shipped_defaults(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", wheels, REPO],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = wheels.glob("soundsift-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("soundsift/configs/default.toml") == (REPO / "configs" / "default.toml").read_bytes()
        names = zf.namelist()
    assert "soundsift/__init__.py" in names and "plugins/contract.py" in names and "search/http/web/index.html" in names
    assert not any(n.startswith(("plugins/soundsift_api/", "tests/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    (purelib,) = venv.glob("lib/python*/site-packages")
    (purelib / "zz_shared.pth").write_text("\n".join(_shared_site_dirs()) + "\n")
    subprocess.run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            wheel,
        ],
        check=True,
        capture_output=True,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOUNDSIFT_CONFIG")}
    probe = (
        "import json, indexer.settings as s, soundsift; from soundsift import hookimpl, Decoder, ScoringPolicy; "
        "print(json.dumps({'defaults': str(s.DEFAULT_TOML), 'indexer': s.__file__, 'soundsift': soundsift.__file__, "
        "'plugin': s.load_settings().plugin}))"
    )
    got = json.loads(
        subprocess.run(
            [venv / "bin" / "python", "-c", probe], cwd=outside, env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    assert got["defaults"] == str(purelib / "soundsift" / "configs" / "default.toml")
    assert got["indexer"].startswith(str(purelib)) and got["soundsift"].startswith(str(purelib))
    import tomllib

    shipped = tomllib.loads((REPO / "configs" / "default.toml").read_text(encoding="utf-8"))["plugin"]
    assert got["plugin"] == shipped and got["plugin"]["pcm"]["sample_rate"] == 16000
    proc = subprocess.run(
        [venv / "bin" / "soundsift", "plugins", "--json"], cwd=outside, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert {"soundfile", "ffmpeg", "pcm"} <= {d["name"] for d in json.loads(proc.stdout)["decoders"]}


def test_the_license_file_is_the_license_pyproject_names():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert declared == {"text": "Apache-2.0"}
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and len(text.splitlines()) == 201


def test_contributing_names_the_tiers_and_how_to_run_one_test():
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for needle in (
        "make test-fast",
        "make test",
        "make lint",
        '-m "not slow and not browser"',
        "pytest -q tests/",
        "make bench",
        "## Adding a decoder",
        "BUILTIN_PLUGINS",
    ):
        assert needle in text, needle


def test_the_package_list_names_every_package_folder():
    import tomllib
    from setuptools import find_namespace_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = find_namespace_packages(
        str(REPO), include=["indexer*", "search*", "plugins*"], exclude=["plugins.soundsift_api*"]
    )
    assert set(on_disk) | {"soundsift", "soundsift.configs"} == set(config["packages"])
    assert config["package-dir"] == {"soundsift": "plugins/soundsift_api", "soundsift.configs": "configs"}
