"""Opening archive files without trusting them: regular files only, small files read with a limit.

An archive can hold a FIFO (opening it blocks until a writer comes, reading it may never end), a
link to ``/dev/zero`` (endless) or to a device, or a sidecar of gigabytes. Nothing here opens such a
file for reading: the type is checked with ``stat`` first, the file is then opened with
``O_NONBLOCK`` (so a FIFO swapped in after the check cannot block the open) and checked again on the
open descriptor, and small files are read with a byte limit. Plugins use these for their sidecars.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

SIDECAR_LIMIT = 64 * 1024  # bytes: a sidecar holds a few settings, never more


class NotRegularFile(OSError):
    """The path names something other than a regular file (a FIFO, a device, a socket, a directory)."""


class FileTooLarge(OSError):
    """A small file (a sidecar) is over its byte limit."""


def special_kind(mode: int) -> str | None:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a character device"...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def not_regular_reason(kind: str) -> str:
    """The sentence for a special file: ``not a regular file: a FIFO (named pipe)``."""
    return "not a regular file" if kind == "not a regular file" else f"not a regular file: {kind}"


def open_regular(path: str | os.PathLike | bytes) -> BinaryIO:
    """Open ``path`` for reading in binary mode, only if it is a regular file (links to one are followed).

    Raises NotRegularFile for anything else without ever blocking on it, OSError when it cannot be opened.
    """
    st = os.stat(path)
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise NotRegularFile(f"{not_regular_reason(kind)}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = special_kind(os.fstat(fd).st_mode)  # swapped between the stat and the open
        if kind is not None:
            raise NotRegularFile(f"{not_regular_reason(kind)}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: str | os.PathLike | bytes, limit: int = SIDECAR_LIMIT) -> bytes:
    """The bytes of a small regular file; FileTooLarge past ``limit`` bytes (never reads more than limit + 1)."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise FileTooLarge(f"larger than {_size_words(limit)} ({size} bytes)")
        data = fh.read(limit + 1)  # the file may have grown since the fstat
    if len(data) > limit:
        raise FileTooLarge(f"larger than {_size_words(limit)}")
    return data


def _size_words(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"
