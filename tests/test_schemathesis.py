"""Schemathesis (all checks; examples, coverage and fuzzing phases) against a live server, with and without an API key.

The CLI runs in a subprocess against the real app on uvicorn at an ephemeral port; a bounded number
of examples per operation keeps each run short.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from api_server import LiveServer, api_settings, build_index, write_archive
from conftest import REPO

KEY = "schemathesis-key-0123"
CONFIG = REPO / "tests" / "schemathesis.toml"
MAX_EXAMPLES = int(os.environ.get("SOUNDSIFT_SCHEMATHESIS_EXAMPLES", "12"))


def schemathesis_run(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """`schemathesis run` with every check and the three phases, bounded; its report goes to tmp_path."""
    command = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--generation-deterministic",
        "--request-timeout",
        "120",
        "--max-response-time",
        "120",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        *extra,
    ]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="", NO_COLOR="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)


@pytest.fixture(scope="module")
def archive_index(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("schemathesis")
    archive = write_archive(root / "archive")
    return root, archive


@pytest.mark.slow
@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
def test_schemathesis_all_checks_pass(key, archive_index, tiny_model_dir, tmp_path):
    from search.http.app import create_app

    root, archive = archive_index
    settings = api_settings(tmp_path / "index", tiny_model_dir, api_key=key, max_upload_mb=1.0, max_queued_jobs=4)
    build_index(settings, [archive])
    with LiveServer(create_app(settings)) as server:
        extra = ["--header", f"X-API-Key: {key}"] if key else []
        result = schemathesis_run(server.url, tmp_path, *extra)
        server.app.state.jobs.close(timeout_s=60)
    failures = result.stdout.partition("= FAILURES =")[2].partition("= WARNINGS =")[0] or result.stdout[-6000:]
    assert result.returncode == 0, failures[:12000] + result.stderr[-3000:]
