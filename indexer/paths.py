"""File names that are not valid UTF-8: stored losslessly, shown with replacement characters.

Python hands such a name around as a ``str`` holding lone surrogates (``surrogateescape``: byte 0xff
becomes U+DCFF), which opens the file again but cannot be encoded as UTF-8, so neither DuckDB nor
Arrow nor a JSON reader takes it. The store keeps two forms of every such name: the display form
(the bytes decoded as UTF-8 with U+FFFD for each undecodable byte) in the text column that every
reader and every output uses, and the file system's own bytes in a BLOB next to it, from which the
real name is rebuilt whenever a file has to be opened or compared with what a scan found. A name
that is valid UTF-8 has no BLOB (NULL): its display form is the name.
"""

from __future__ import annotations

import os
from typing import overload


def display_path(path: str) -> str:
    """``path`` as text any encoder accepts: each byte that is not UTF-8 becomes U+FFFD."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", errors="replace")


def path_bytes(path: str | None) -> bytes | None:
    """The file system bytes of ``path`` when its display form loses something, else None."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(path)


@overload
def real_path(display: str, raw: bytes | None) -> str: ...
@overload
def real_path(display: None, raw: bytes | None) -> str | None: ...
def real_path(display: str | None, raw: bytes | None) -> str | None:
    """The name to open: rebuilt from the stored bytes when there are any, else the display form itself."""
    if raw is not None:
        return os.fsdecode(bytes(raw))
    return display
