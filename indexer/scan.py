"""Archive scan: walk the given roots for audio files by extension (following no symlink out of them) and hash contents."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import BadInput
from plugins.safe_files import SIDECAR_LIMIT, not_regular_reason, open_regular, read_limited, special_kind


@dataclass(frozen=True)
class ScannedFile:
    """A candidate file as found on disk. ``path`` keeps the form the root was given in."""

    path: str
    root: str
    size: int
    mtime: float


@dataclass
class ScanResult:
    files: list[ScannedFile]
    skipped: list[tuple[str, str]]  # (path, reason): unknown extension, symlink out of root, unreadable, not a regular file


SIDECAR_SUFFIXES = (".toml", ".json")  # e.g. take1.pcm.toml: how a headerless file decodes


def _sidecar_mtimes(path: str) -> list[float]:
    """Modified times of the file's sidecars: editing one changes how the file decodes, so it counts as a change."""
    times = []
    for suffix in SIDECAR_SUFFIXES:
        try:
            times.append(os.stat(path + suffix).st_mtime)
        except OSError:
            pass
    return times


def _inside(real: str, roots: list[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def scan_paths(paths: Iterable[str | Path], extensions: Iterable[str]) -> ScanResult:
    """Every audio file under ``paths`` (files given directly are taken whatever their extension).

    Only regular files are taken; a FIFO, a device or a socket is skipped with the reason and never opened.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    roots = [str(p) for p in paths]
    missing = [r for r in roots if not os.path.exists(r)]
    if missing:
        raise BadInput(f"no such file or directory: {', '.join(missing)}")
    real_roots = [os.path.realpath(r) for r in roots]
    found: dict[str, ScannedFile] = {}
    skipped: list[tuple[str, str]] = []

    def consider(path: str, root: str, explicit: bool) -> None:
        if not explicit and os.path.splitext(path)[1].lower().lstrip(".") not in exts:
            skipped.append((path, "extension not indexed"))
            return
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
        found.setdefault(path, ScannedFile(path, root, st.st_size, max([st.st_mtime, *_sidecar_mtimes(path)])))

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


HASH_BLOCK = 1 << 20


def content_hash(path: str | Path) -> str:
    """BLAKE2b-160 of the whole file, streamed in 1 MiB blocks (how renames, copies and touched files are recognised)."""
    import hashlib

    h = hashlib.blake2b(digest_size=20)
    with open_regular(path) as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
    for suffix in SIDECAR_SUFFIXES:  # the same bytes with another sidecar decode differently
        sidecar_path = str(path) + suffix
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


def content_hashes(paths: list[str], threads: int = 4) -> dict[str, str | None]:
    """path -> content hash (None when the file cannot be read); hashlib releases the GIL, so threads overlap the reads."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> str | None:
        try:
            return content_hash(path)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return dict(zip(paths, pool.map(one, paths)))


def under_root(path: str, root: str) -> bool:
    """True when ``path`` (as stored) lies under ``root`` (as given), or is that file."""
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root + os.sep)
