"""The README against the program: its JSON output contract and every command and flag it shows, like test_docs.py."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from search.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
COMMANDS: click.Group = typer.main.get_command(app)  # type: ignore[assignment]


def readme_command_lines() -> list[list[str]]:
    """Every ``soundsift CMD ...`` line of the README's shell blocks and inline code, as words."""
    lines = [line for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL) for line in block.splitlines()]
    lines += re.findall(r"`(soundsift [^`]+)`", README)
    out = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if len(words) >= 2 and words[0] == "soundsift":
            out.append([w.strip("[]") for w in words])
    return out


def options_of(command: str, sub: str | None = None) -> set[str]:
    cmd = COMMANDS.commands[command]
    if sub is not None:  # a sub-command of a group (`watch add`)
        cmd = cmd.commands[sub]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts)}


def test_the_readme_shows_commands():
    assert {words[1] for words in readme_command_lines()} >= {
        "index",
        "search",
        "classify",
        "classify-file",
        "stats",
        "serve",
        "plugins",
        "doctor",
        "check",
    }


@pytest.mark.parametrize("words", readme_command_lines(), ids=lambda w: " ".join(w)[:60])
def test_every_command_and_flag_in_the_readme_exists(words):
    command = words[1]
    assert command in COMMANDS.commands, f"`soundsift {command}` is in the README but not a command"
    found, path, rest = COMMANDS.commands[command], [command], words[2:]
    if hasattr(found, "commands") and rest and rest[0] in found.commands:  # a sub-command: `examples add`
        found, path, rest = found.commands[rest[0]], [command, rest[0]], rest[1:]
    flags = {w.split("=", 1)[0] for w in rest if re.fullmatch(r"--[a-z][a-z-]*(=.*)?|-[a-zA-Z]", w)}
    known = {opt for param in found.params for opt in (*param.opts, *param.secondary_opts)}
    missing = flags - known
    assert not missing, f"`soundsift {' '.join(path)}` has no {sorted(missing)} (README: {' '.join(words)})"
    help_text = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
    assert all(flag in help_text for flag in flags), help_text


def contract() -> dict[str, set[str]]:
    """command -> the JSON field names the README's output contract promises for it."""
    paragraph = README.split("Every command takes `--json`", 1)[1].split("\n\n", 1)[0].split("Paths are", 1)[0]
    paragraph = paragraph.replace("{label: p}", "")  # a label -> probability mapping: no fixed key
    promised = {}
    for segment in paragraph.split(";"):
        m = re.search(r"`([a-z-]+)` →(.*)", segment, re.DOTALL)
        if m:
            spans = re.findall(r"`([^`]+)`", m.group(2))
            promised[m.group(1)] = {w for span in spans for w in re.findall(r"[a-z_]+", span)}
    return promised


def all_keys(doc) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in all_keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in all_keys(v)}
    return set()


def test_the_json_contract_names_four_commands():
    assert set(contract()) == {"index", "stats", "search", "classify"}
    assert contract()["index"] >= {"files_indexed", "files_failed", "windows", "errors", "path", "error", "timings"}


def test_each_command_prints_the_fields_the_readme_promises(tmp_path, tiny_model_dir, write_sound, monkeypatch):
    for key, value in {
        "SOUNDSIFT_MODEL": str(tiny_model_dir),
        "SOUNDSIFT_DEVICE": "cpu",
        "SOUNDSIFT_DECODE_WORKERS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    write_sound(tmp_path / "archive" / "a.wav", "tone", 12.0)
    write_sound(tmp_path / "archive" / "b.wav", "noise", 4.0, seed=2)
    (tmp_path / "archive" / "broken.mp3").write_bytes(b"\xff\xfb" + bytes(200))  # an error to list
    (tmp_path / "archive" / "odd.pcm").write_bytes(bytes(16_001))  # a partial last frame: a warning to list
    (tmp_path / "archive" / "notes.txt").write_text("not audio\n")  # a skipped file to list
    index = str(tmp_path / "index")
    runs = {
        "index": ["index", str(tmp_path / "archive"), "--index", index, "--json"],
        "stats": ["stats", "--index", index, "--json"],
        "search": ["search", "bell", "--index", index, "-k", "2", "--json"],
        "classify": ["classify", "--index", index, "--labels", "tone, noise", "--json"],
    }
    for command, args in runs.items():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        missing = contract()[command] - all_keys(doc)
        assert not missing, f"`soundsift {command} --json` lacks {sorted(missing)}"
        if command == "index":
            assert doc["errors"] and set(doc["errors"][0]) == {"path", "error"}
