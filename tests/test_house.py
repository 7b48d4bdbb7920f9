"""The house keeps its shape: no import circles (imports inside functions count), no product function over 120
lines, SQL only in indexer/, at most a dozen modules at search/'s top level, built-in plugins importing only the
public `soundsift` package, and the public import paths still importable."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOUSE_CHECK = Path("/work/shared/hooks/house_check.py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append(node.module or "")
    return out


@pytest.mark.skipif(not HOUSE_CHECK.is_file(), reason="the shared house check is not on this machine")
def test_the_house_check_is_silent():
    done = subprocess.run([sys.executable, str(HOUSE_CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout


def test_at_most_a_dozen_modules_at_the_top_of_search():
    top = sorted(p.name for p in (ROOT / "search").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
    assert {p.name for p in (ROOT / "search").iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {
        "core",
        "http",
        "cli",
        "cluster",
    }


def test_built_in_plugins_import_only_the_public_soundsift_package():
    project = ("plugins", "indexer", "search")
    for path in sorted((ROOT / "plugins" / "builtin").rglob("*.py")):
        bad = [m for m in _imports(path) if m.split(".")[0] in project]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}; built-ins import from soundsift only"


def test_the_soundsift_package_offers_what_decoders_need():
    import soundsift

    for name in ("open_regular", "read_limited", "SIDECAR_LIMIT", "NotRegularFile", "FileTooLarge", "AudioSource"):
        assert name in soundsift.__all__ and getattr(soundsift, name) is not None
    assert "seek" in soundsift.AudioSource.__doc__


@pytest.mark.parametrize(
    "module, names",
    [
        ("search.sound_index", "SoundIndex classify_file classify_array classify_windows label_matrix prepare_all"),
        ("search.api", "SoundIndex classify_file classify_array classify_windows label_matrix prepare_all dumps"),
        ("search.app", "create_app"),
        ("search.http_api", "create_app"),
        ("search.filters", "Filters TagFilter parse_tag_filter resolve_model"),
        ("search.cli", "main app"),
        ("search.http.uploads", "UploadCaps UploadTooLong classify_upload"),
        ("indexer.store", "IndexStore FileRecord CommitPlan WindowBatch WindowChunk MIGRATIONS SCHEMA_VERSION"),
    ],
)
def test_public_import_paths_are_importable(module, names):
    loaded = importlib.import_module(module)
    for name in names.split():
        assert getattr(loaded, name) is not None, f"{module}.{name}"


def test_light_modules_do_not_import_torch():
    code = "import sys, search.cli, search.sound_index, search.api, search.filters, soundsift; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
