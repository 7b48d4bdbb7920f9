"""Which server-side paths an index job may name: only under the allowed roots, never a special file.

Every path outside the roots gets the same answer whether it exists or not, so the API cannot be used
to probe the server's file system. Relative paths are resolved against the allowed roots, never
against the server's working directory.
"""

from __future__ import annotations

import os
import stat

from indexer.errors import BadInput, SoundsiftError

# Kernel and device trees: never indexed, even when a root would contain them.
SPECIAL_TREES = ("/proc", "/sys", "/dev", "/run")


class OutsideRoots(SoundsiftError):
    """A job named a path outside the roots this server may index (HTTP 403)."""


class NotUnderRoots(SoundsiftError):
    """A job named a path under an allowed root that does not exist (HTTP 404)."""


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _special(real: str) -> bool:
    return any(_inside(real, tree) for tree in SPECIAL_TREES)


def allowed_roots(store, extra: list[str] | None = None) -> list[str]:
    """The real paths of the roots already in the index plus ``extra`` (``--allow-root``, ``allow_roots``)."""
    # store.roots() reads root_bytes too: a root whose name is not UTF-8 is the directory on disk, not its display form
    roots = {os.path.realpath(r) for r in store.roots() if r} | {
        os.path.realpath(os.path.expanduser(str(x))) for x in extra or []
    }
    return sorted(r for r in roots if not _special(r))


def outside_message(raw: str) -> str:
    """The one answer for any path outside the roots (existing or not)."""
    return (
        f"{raw!r} is not under a root this server may index; index it from the command line, "
        "or start the server with --allow-root DIR (or allow_roots in its settings)"
    )


def resolve_job_path(raw: str, roots: list[str]) -> str:
    """``raw`` as an absolute, normalised path under one of ``roots``.

    Raises OutsideRoots (same text whether or not the path exists) for anything outside them, a
    kernel/device tree included; NotUnderRoots for a path under a root that is missing; BadInput for one
    that is not a regular file or a directory (FIFOs, sockets, devices).
    """
    if "\x00" in raw:
        raise BadInput("a path cannot contain NUL")
    candidates = [raw] if os.path.isabs(raw) else [os.path.join(root, raw) for root in roots]
    inside: list[tuple[str, str]] = []
    for candidate in candidates:
        path = os.path.normpath(candidate)
        real = os.path.realpath(path)
        if not _special(real) and any(_inside(real, root) for root in roots):
            inside.append((path, real))
    if not inside:
        raise OutsideRoots(outside_message(raw))
    path, real = next(((p, r) for p, r in inside if os.path.lexists(r)), inside[0])
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise NotUnderRoots(f"no such file or directory under the allowed roots: {raw}") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise BadInput(f"not a regular file or a directory: {raw}")
    return path
