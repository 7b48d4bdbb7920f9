"""The CLI as a client: while `soundsift serve` owns an index, search, classify, stats, check and classify-file go
through its HTTP API and print exactly what they print locally."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_server import write_archive
from conftest import REPO, cli_env, cli_in_process, cli_settings_env

KEY = "s3cret-key"


def cli(tiny_model_dir: Path, *args, env: dict | None = None):
    """One CLI command through its entry point, in this process (the server it talks to is a process of its own)."""
    full = {**cli_settings_env(tiny_model_dir), "SOUNDSIFT_API_KEY": None, "SOUNDSIFT_SERVER": None}
    full.update(env or {})
    return cli_in_process(full, *args)


class Served:
    """`soundsift serve` in a subprocess on 127.0.0.1, an ephemeral port; its URL is read from the owner note."""

    def __init__(self, tiny_model_dir: Path, index: Path, api_key: str | None = None):
        args = [
            sys.executable,
            "-m",
            "search.cli",
            "serve",
            "--index",
            str(index),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        env = cli_env(tiny_model_dir)
        if api_key:
            env["SOUNDSIFT_API_KEY"] = api_key
        self.proc = subprocess.Popen(
            args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.index = index
        self.url = None

    def __enter__(self) -> "Served":
        # Until it answers or exits: no deadline of its own (the test's timeout is the hang guard).
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.stderr.read()}")
            try:
                self.url = json.loads((self.index / "owner.json").read_text()).get("url")
                if self.url and httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def archive_and_index(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("remote")
    archive = write_archive(root / "archive")
    built = cli(tiny_model_dir, "index", archive, "--index", root / "index", "--json")
    assert built.returncode == 0, built.stderr
    return root, archive, root / "index"


def commands(root: Path, archive: Path, index: Path) -> dict[str, list]:
    tone = archive / "line1" / "tone-a.wav"
    return {
        "search --json": ["search", "a steady tone", "glass breaking", "--index", index, "-k", "3", "--json"],
        "search": ["search", "a steady tone", "--index", index, "-k", "3", "--path-glob", "*line1*"],
        "classify --json": ["classify", "--labels", "tone, noise, 轴承异响", "--index", index, "--json"],
        "classify --out csv": ["classify", "--labels", "tone, noise", "--index", index, "--out", root / "rows.csv"],
        "classify by file": [
            "classify",
            "--labels",
            "tone, noise",
            "--by",
            "file",
            "--top",
            "2",
            "--policy",
            "multilabel",
            "--policy-option",
            "threshold=0.1",
            "--index",
            index,
        ],
        "stats --json": ["stats", "--index", index, "--json"],
        "stats": ["stats", "--index", index],
        "check --json": ["check", "--index", index, "--json"],
        "classify-file --json": ["classify-file", tone, "--labels", "tone, noise", "--index", index, "--json"],
    }


def run_all(tiny_model_dir, root, archive, index, env=None) -> dict[str, tuple[int, str, bytes]]:
    got = {}
    for name, args in commands(root, archive, index).items():
        (root / "rows.csv").unlink(missing_ok=True)
        proc = cli(tiny_model_dir, *args, env=env)
        assert proc.returncode == 0, (name, proc.stderr)
        stdout = proc.stdout
        if name == "check --json":  # how long the audit took is the one figure that differs run to run
            doc = json.loads(stdout)
            assert doc.pop("seconds") >= 0
            stdout = json.dumps(doc)
        got[name] = (proc.returncode, stdout, (root / "rows.csv").read_bytes() if "--out" in args else b"")
    return got


@pytest.fixture(scope="module")
def local_outputs(archive_and_index, tiny_model_dir):
    """What each command prints with no server running."""
    return run_all(tiny_model_dir, *archive_and_index)


@pytest.mark.slow
def test_cli_through_the_server_prints_what_it_prints_locally(archive_and_index, local_outputs, tiny_model_dir):
    root, archive, index = archive_and_index
    local = local_outputs
    assert json.loads(local["classify --json"][1])["rows"] and local["classify --out csv"][2].count(b"\n") == 9
    with Served(tiny_model_dir, index) as server:
        # The index is owned: a local open fails, so equal output can only have come through the server.
        assert server.url and (index / "owner.json").exists()
        remote = run_all(tiny_model_dir, root, archive, index)
        for name in local:
            assert remote[name] == local[name], name
        repair = cli(tiny_model_dir, "check", "--index", index, "--repair")
        assert repair.returncode != 0 and repair.stderr.count("\n") == 1 and "stop it" in repair.stderr


@pytest.mark.slow
def test_cli_through_a_server_with_an_api_key(archive_and_index, local_outputs, tiny_model_dir):
    root, archive, index = archive_and_index
    wanted = ["search --json", "classify --out csv", "stats --json", "classify-file --json"]
    local = local_outputs
    with Served(tiny_model_dir, index, api_key=KEY):
        for name in wanted:
            args = commands(root, archive, index)[name]
            (root / "rows.csv").unlink(missing_ok=True)
            by_env = cli(tiny_model_dir, *args, env={"SOUNDSIFT_API_KEY": KEY})
            assert by_env.returncode == 0, by_env.stderr
            got = (0, by_env.stdout, (root / "rows.csv").read_bytes() if "--out" in args else b"")
            assert got == local[name], name
        by_flag = cli(tiny_model_dir, *commands(root, archive, index)["stats --json"], "--api-key", KEY)
        assert by_flag.stdout == local["stats --json"][1]
        refused = cli(tiny_model_dir, "search", "tone", "--index", index)
        assert refused.returncode != 0 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and "needs its API key" in refused.stderr


def test_a_server_that_does_not_answer_is_one_line(tmp_path, tiny_model_dir):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (["search", "dog"], ["stats", "--json"], ["classify", "--labels", "dog, cat"], ["check"]):
        proc = cli(tiny_model_dir, *args, "--index", tmp_path / "idx", "--server", f"http://127.0.0.1:{port}")
        assert proc.returncode != 0 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"error: the server at http://127.0.0.1:{port} did not answer"), proc.stderr
