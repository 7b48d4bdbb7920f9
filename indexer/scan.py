"""Archive scan: walk the given roots for audio files (following no symlink out of them) and hash contents.

A file is taken when a loaded decoder declares its extension or, failing that, when its first bytes are
a known audio container (see indexer/formats.py); every other file is skipped with its reason.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import BadInput
from indexer.formats import ScanFormats
from plugins.safe_files import SIDECAR_LIMIT, not_regular_reason, open_regular, read_limited, special_kind


@dataclass(frozen=True)
class ScannedFile:
    """A candidate file as found on disk. ``path`` keeps the form the root was given in."""

    path: str
    root: str
    size: int
    mtime: float  # the latest of the file's and its sidecars' mtimes
    sidecars: tuple[str, ...] = ()  # sidecar files the decoders of this file declare (hashed with it)


@dataclass
class ScanResult:
    files: list[ScannedFile]
    skipped: list[
        tuple[str, str]
    ]  # (path, reason): unknown extension, symlink out of root, unreadable, not a regular file


def _sidecar_mtimes(sidecars: Iterable[str]) -> list[float]:
    """Modified times of the file's sidecars: editing one changes how the file decodes, so it counts as a change."""
    times = []
    for sidecar in sidecars:
        try:
            times.append(os.stat(sidecar).st_mtime)
        except OSError:
            pass
    return times


def _inside(real: str, roots: list[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def scan_paths(
    paths: Iterable[str | Path], extensions: Iterable[str] = (), formats: ScanFormats | None = None
) -> ScanResult:
    """Every audio file under ``paths`` (files given directly are taken whatever their extension).

    ``formats`` (what the loaded decoders open) gives the extensions, sniffing and sidecars; ``extensions``
    adds more extensions to index. Only regular files are taken; a FIFO, a device or a socket is skipped
    with the reason and never opened.
    """
    formats = formats or ScanFormats.of(())
    exts = set(formats.extensions) | {e.lower().lstrip(".") for e in extensions}
    roots = [str(p) for p in paths]
    missing = [r for r in roots if not os.path.exists(r)]
    if missing:
        raise BadInput(f"no such file or directory: {', '.join(missing)}")
    real_roots = [os.path.realpath(r) for r in roots]
    found: dict[str, ScannedFile] = {}
    skipped: list[tuple[str, str]] = []

    def consider(path: str, root: str, explicit: bool) -> None:
        real = os.path.realpath(path)
        if os.path.islink(path) and not _inside(real, real_roots):
            skipped.append((path, "symlink out of the indexed roots"))
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            skipped.append((path, f"cannot stat: {exc.strerror}"))
            return
        kind = special_kind(st.st_mode)
        if kind is not None:  # a FIFO named x.wav would block whoever opens it: never opened, only reported
            skipped.append((path, not_regular_reason(kind)))
            return
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if not explicit and ext not in exts:
            reason = _not_audio(path, ext, formats)
            if reason:
                skipped.append((path, reason))
                return
        sidecars = tuple(formats.sidecars(path))
        found.setdefault(
            path, ScannedFile(path, root, st.st_size, max([st.st_mtime, *_sidecar_mtimes(sidecars)]), sidecars)
        )

    for root in roots:
        if not os.path.isdir(root):
            consider(root, os.path.dirname(root) or ".", explicit=True)
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                consider(os.path.join(dirpath, name), root, explicit=False)
    return ScanResult(sorted(found.values(), key=lambda f: f.path), skipped)


def _not_audio(path: str, ext: str, formats: ScanFormats) -> str | None:
    """Why a file whose extension no decoder declares is skipped; None when its head is a known audio container."""
    owner = formats.sidecar_of(path)
    if owner is not None:
        return f"sidecar of {os.path.basename(owner)}"
    try:
        if formats.sniff(path) is not None:
            return None
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    named = f"extension .{ext}" if ext else "no extension"
    return (
        f"not a known audio format ({named}: no loaded decoder declares it and its first bytes are no known container)"
    )


HASH_BLOCK = 1 << 20


def content_hash(path: str | Path, sidecars: Iterable[str | Path] = ()) -> str:
    """BLAKE2b-160 of the whole file, streamed in 1 MiB blocks (how renames, copies and touched files are recognised).

    ``sidecars`` (files named after ``path`` plus a suffix, as decoders declare them) are hashed with it.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=20)
    with open_regular(path) as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
    for sidecar_path in sidecars:  # the same bytes with another sidecar decode differently
        suffix = str(sidecar_path)[len(str(path)) :]
        if not os.path.lexists(sidecar_path):
            continue
        try:
            sidecar = read_limited(sidecar_path, SIDECAR_LIMIT)
        except OSError as exc:
            # A special or oversized sidecar is never read; the decoder reports it. What it is still counts,
            # so replacing it with a good one is a change.
            try:
                st = os.stat(sidecar_path)
                sidecar = f"unusable {stat.S_IFMT(st.st_mode)} {st.st_size} {st.st_mtime_ns}".encode()
            except OSError:
                sidecar = f"unusable {type(exc).__name__}".encode()
        h.update(suffix.encode() + len(sidecar).to_bytes(8, "little") + sidecar)
    return h.hexdigest()


def content_hashes(
    paths: list[str], threads: int = 4, sidecars: dict[str, tuple[str, ...]] | None = None
) -> dict[str, str | None]:
    """path -> content hash (None when the file cannot be read); hashlib releases the GIL, so threads overlap the reads.

    ``sidecars``: path -> its sidecar files (`ScannedFile.sidecars`), hashed with it.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> str | None:
        try:
            return content_hash(path, (sidecars or {}).get(path, ()))
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return dict(zip(paths, pool.map(one, paths)))


def under_root(path: str, root: str) -> bool:
    """True when ``path`` (as stored) lies under ``root`` (as given), or is that file."""
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root + os.sep)
