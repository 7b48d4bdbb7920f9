"""The ``soundsift`` command line: index, search, classify, classify-file, serve, stats, plugins, doctor, demo.

Commands live in modules beside this one, one per area (indexing, querying, classify_file, info, serving, and
one module per feature: evaluate, teach, watch, transcribe); each registers itself on the shared typer app
(app.py) when imported here.
"""

from __future__ import annotations

import sys

from indexer.errors import SoundsiftError
from search.cli import (
    classify_file,  # noqa: F401  (classify-file)
    evaluate,  # noqa: F401  (eval, label-set)
    indexing,  # noqa: F401  (index, check, export)
    info,  # noqa: F401  (stats, plugins, doctor)
    querying,  # noqa: F401  (search, classify)
    serving,  # noqa: F401  (tag, serve, demo)
    teach,  # noqa: F401  (examples, train, probes)
    transcribe,  # noqa: F401  (soundsift transcribe)
    watch,  # noqa: F401  (watch, report, clips)
)
from search.cli.app import app, err


def _ray_alone(argv: list[str]) -> list[str]:
    """`--ray` with no value means `--ray auto` (a typer option cannot take an optional value).

    The next word is taken as the address unless it is another option or an existing path without a colon.
    """
    import os

    out = list(argv)
    for i, word in enumerate(out):
        nxt = out[i + 1] if i + 1 < len(out) else None
        if word == "--ray" and (nxt is None or nxt.startswith("-") or (os.path.exists(nxt) and ":" not in nxt)):
            out[i] = "--ray=auto"
    return out


def main() -> None:
    """Entry point: a user's mistake is one line on stderr and a non-zero exit, never a traceback."""
    try:
        app(args=_ray_alone(sys.argv[1:]), standalone_mode=False)
    except SoundsiftError as exc:
        sys.stderr.write(f"error: {exc}\n")  # one line, never wrapped
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


def run() -> None:
    """The program's entry point (``soundsift``, ``python -m search.cli``): `main`, then a quick exit.

    Python's own shutdown tears down every imported module one by one, OpenVINO's plugins and DuckDB's among
    them: 0.2 s of a cold `index` spent after its output was written. So the program finishes what
    still matters (threads still working, the atexit handlers: logging, multiprocessing's children, finalizers),
    flushes its output and ends the process. ``main`` alone (called in a process that goes on) exits as usual.
    """
    code: int = 0
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): what the interpreter would print, and its status
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    exit_now(code)


def exit_now(code: int) -> None:
    """End the process with ``code`` once its non-daemon threads have finished and its atexit handlers have run,
    without tearing down the imported modules."""
    import atexit
    import os
    import threading

    # What the interpreter's own shutdown does first: threading's exit hooks (a ThreadPoolExecutor's idle workers
    # are told to stop there), then a join of every non-daemon thread.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:  # an interpreter without the hook: join what is left
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
