"""A decoder that segfaults or hangs costs only its file; a broken plugin is reported by name and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.manager import build_plugin_manager

REPO = Path(__file__).resolve().parent.parent
BUILTIN_POLICIES = {"softmax", "multilabel", "margin", "contrast", "archive"}


@pytest.fixture()
def extra_plugins(monkeypatch):
    """``extra_plugins("crashy", ...)``: load tests/plugins modules here and in spawned decode workers."""
    monkeypatch.syspath_prepend(str(REPO))  # spawned workers inherit sys.path

    def load(*names: str) -> None:
        monkeypatch.setenv("SOUNDSIFT_EXTRA_PLUGINS", ",".join(f"tests.plugins.{n}" for n in names))

    return load


def test_crashing_and_hanging_decoders_fail_their_files_and_the_run_goes_on(
    tmp_path, extra_plugins, write_sound, make_settings, tiny_encoder
):
    from search.sound_index import SoundIndex

    extra_plugins("crashy", "hangy", "broken_import", "broken_register")
    archive = tmp_path / "archive"
    archive.mkdir()
    # one worker takes the files in path order: the crash and the hang come first, the good files after them
    # different contents: the indexer recognises copies by content hash and would decode only one
    (archive / "a_segfault.crash").write_bytes(b"crash me" * 8)
    (archive / "b_stuck.hang").write_bytes(b"hang me" * 8)
    write_sound(archive / "c.wav", "tone", 3.0)
    write_sound(archive / "d.flac", "noise", 12.0, sample_rate=44_100)
    settings = make_settings(tmp_path / "index", decode_timeout_s=4.0, decode_workers=1)
    plugins = build_plugin_manager()
    assert {"crashy", "hangy"} <= set(plugins.decoders)

    with SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder, plugins=plugins, create=True) as sx:
        report = sx.index([str(archive)])
        files = {
            Path(p).name: (status, error)
            for p, status, error in sx.store.cursor().execute("SELECT path, status, error FROM files").fetchall()
        }
        rows = sx.classify("tone, noise").rows

    assert report.files_indexed == 2 and report.files_failed == 2
    assert report.windows == 3  # c: one short window; d (12 s): [0, 10] and [2, 12]
    errors = {Path(e.path).name: e.error for e in report.errors}
    assert errors["a_segfault.crash"] == "decoder crashed (exit code -11)"
    assert errors["b_stuck.hang"] == "decoder hung: no progress for 4 s, killed"
    assert files == {
        "a_segfault.crash": ("failed", errors["a_segfault.crash"]),
        "b_stuck.hang": ("failed", errors["b_stuck.hang"]),
        "c.wav": ("indexed", None),
        "d.flac": ("indexed", None),
    }
    assert sorted(Path(r.path).name for r in rows) == ["c.wav", "d.flac", "d.flac"]


def test_broken_plugins_are_reported_by_name_and_everything_else_works(extra_plugins):
    extra_plugins("broken_import", "broken_register", "typo_hook", "wrong_type", "crashy")
    host = build_plugin_manager()
    failures = {f.name: f.error for f in host.failures}
    assert (
        failures["tests.plugins.broken_import"]
        == "ModuleNotFoundError: No module named 'soundsift_dependency_that_does_not_exist'"
    )
    assert (
        failures["tests.plugins.broken_register"]
        == "register_decoders: RuntimeError: the codec library is not initialised"
    )
    assert failures["tests.plugins.typo_hook"].startswith(
        "implements unknown hook(s) register_decoder; the hooks are: "
    )
    assert (
        failures["tests.plugins.wrong_type"]
        == "register_window_taggers: TypeError: register_window_taggers was given dict, expected WindowTagger"
    )
    # skipped whole: the policy broken_register registered before raising is not used, nor is it listed
    assert "half_registered" not in host.policies
    assert not {"tests.plugins.broken_register", "tests.plugins.typo_hook", "tests.plugins.wrong_type"} & set(
        host.plugin_names()
    )
    # everything else: the built-ins and the healthy extra plugin
    assert BUILTIN_POLICIES <= set(host.policies)
    assert {"soundfile", "ffmpeg", "crashy"} <= set(host.decoders)
    assert "acoustic" in host.taggers
    assert host.hooks_of("tests.plugins.crashy") == ["register_decoders"]


def test_plugins_command_lists_plugins_hooks_decoders_policies_and_failures(run_cli):
    env = {"SOUNDSIFT_EXTRA_PLUGINS": "tests.plugins.crashy,tests.plugins.broken_register"}
    doc = run_cli("plugins", "--json", env=env).json
    hooks = {p["name"]: p["hooks"] for p in doc["plugins"]}
    assert hooks["policies"] == ["register_scoring_policies"]
    assert hooks["taggers"] == ["register_window_taggers"]
    assert hooks["tests.plugins.crashy"] == ["register_decoders"]
    decoders = {d["name"]: d for d in doc["decoders"]}
    assert decoders["crashy"] == {"name": "crashy", "extensions": ["crash"], "magic": [], "generic": False}
    assert "wav" in decoders["soundfile"]["extensions"] and decoders["soundfile"]["generic"] is True
    policies = {p["name"]: p for p in doc["policies"]}
    assert set(policies) >= BUILTIN_POLICIES
    assert set(policies["multilabel"]["options"]) == {"center", "threshold", "thresholds"}
    assert [t["name"] for t in doc["taggers"]] == ["acoustic", "classifier"]
    assert {
        "name": "tests.plugins.broken_register",
        "error": "register_decoders: RuntimeError: the codec library is not initialised",
    } in doc["failed"]

    text = run_cli("plugins", env=env)
    assert "tests.plugins.crashy: register_decoders" in text.stdout.splitlines()
    assert (
        "failed to load tests.plugins.broken_register: register_decoders: RuntimeError: the codec library is not "
        "initialised" in text.stderr.splitlines()
    )


def test_soundsift_plugins_narrows_what_loads(monkeypatch, extra_plugins, run_cli):
    extra_plugins("crashy", "broken_import")
    monkeypatch.setenv("SOUNDSIFT_PLUGINS", "policies, tests.plugins.crashy")
    host = build_plugin_manager()
    assert host.plugin_names() == ["policies", "tests.plugins.crashy"]
    assert set(host.decoders) == {"crashy"} and set(host.policies) == BUILTIN_POLICIES and host.taggers == {}
    assert host.failures == []  # what is not wanted is not even imported

    monkeypatch.setenv("SOUNDSIFT_PLUGINS", "")
    assert build_plugin_manager().plugin_names() == []

    doc = run_cli("plugins", "--json", env={"SOUNDSIFT_PLUGINS": "taggers,decode_soundfile"}).json
    assert [p["name"] for p in doc["plugins"]] == ["decode_soundfile", "taggers"]
    assert [d["name"] for d in doc["decoders"]] == ["soundfile"] and doc["policies"] == [] and doc["failed"] == []
