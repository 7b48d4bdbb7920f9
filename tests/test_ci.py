"""The CI entry point: `.ci/run` fails the run when the suite fails, including when pytest collects no tests."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from conftest import REPO


def _ci_run_with_make(tmp_path, make_body: str) -> subprocess.CompletedProcess:
    """`.ci/run` with `make` on PATH replaced by ``make_body`` (a shell script), so no lint or suite runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text("#!/usr/bin/env bash\n" + make_body)
    make.chmod(make.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("CI", None)
    return subprocess.run(
        [str(REPO / ".ci" / "run")], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120
    )


def test_no_tests_collected_fails_the_ci_run(tmp_path):
    # The same pytest call as `make test`, selecting nothing: pytest exits 5 and so must the run.
    pytest_call = f'exec "{sys.executable}" -m pytest -q -p no:cacheprovider -m no_such_marker tests/test_ci.py\n'
    done = _ci_run_with_make(tmp_path, 'test "$1" = test && test "$CI" = true || exit 99\n' + pytest_call)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "deselected" in done.stdout


def test_a_passing_suite_passes_the_ci_run(tmp_path):
    done = _ci_run_with_make(tmp_path, 'test "$1" = test && test "$CI" = true || exit 99\n')
    assert done.returncode == 0, done.stdout + done.stderr
