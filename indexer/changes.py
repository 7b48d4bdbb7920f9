"""Change detection: compare a scan of the archive with the stored files and say what a run must do.

A file is unchanged when its size and mtime match the stored row (and, with ``verify_content``, its
content hash too). Everything else is hashed (BLAKE2b of the whole file): a new path whose content
left another path is a rename (the row moves, its windows stay); content already indexed under another
path is copied (no second embedding); a touched file with the same content only gets its row refreshed;
the rest is decoded. Stored files under a scanned root that the scan no longer finds are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from indexer.errors import BadInput
from indexer.scan import ScannedFile, ScanResult, content_hashes, under_root
from indexer.store import FileRecord

# A stored file row, as far as change detection cares: the store's one file record.
KnownFile = FileRecord


@dataclass
class Candidate:
    """A file that needs new windows: decoded, or copied from ``source`` (a stored file with the same content)."""

    scanned: ScannedFile
    hash: str | None
    previous: KnownFile | None  # the row this path had (an update), or None (an addition)
    source: KnownFile | None = None


@dataclass
class ChangeSet:
    unchanged: int = 0
    touched: list[tuple[KnownFile, ScannedFile, str | None]] = field(default_factory=list)  # same path, same content
    renamed: list[tuple[KnownFile, ScannedFile, str | None]] = field(
        default_factory=list
    )  # content moved to a new path
    copies: list[Candidate] = field(default_factory=list)  # content stored under another path
    decode: list[Candidate] = field(default_factory=list)  # one per distinct content
    twins: dict[str, list[Candidate]] = field(default_factory=dict)  # hash -> candidates waiting on a decode
    removed: list[KnownFile] = field(default_factory=list)


def known_files(records: list[FileRecord]) -> dict[str, FileRecord]:
    """path -> stored file, from `IndexStore.known_files`."""
    return {r.path: r for r in records}


def refuse_unmounted(roots: list[str], scan: ScanResult, known: dict[str, KnownFile]) -> None:
    """Stop before any change when a root looks unmounted: it is an empty directory (nothing found, nothing
    skipped) while the index holds files under it. A missing root is refused by the scan itself."""
    for root in roots:
        if not os.path.isdir(root):
            continue
        held = sum(1 for k in known.values() if under_root(k.path, root))
        found = any(under_root(f.path, root) for f in scan.files) or any(under_root(p, root) for p, _ in scan.skipped)
        if held and not found:
            raise BadInput(
                f"archive root {root} is empty but the index holds {held} files under it; is it unmounted? "
                "Nothing was changed. Mount it and run again, or pass --allow-empty-root to remove those files from the index."
            )


def plan_changes(
    roots: list[str],
    scan: ScanResult,
    known: dict[str, KnownFile],
    retry_failed: bool = False,
    verify_content: bool = False,
    hash_threads: int = 4,
) -> ChangeSet:
    """What this run must do to make the index match the scanned roots."""
    changes = ChangeSet()
    need_hash: list[ScannedFile] = []
    for f in scan.files:
        prev = known.get(f.path)
        same_stat = prev is not None and prev.size == f.size and prev.mtime == f.mtime
        if prev is not None and same_stat and not verify_content and not (retry_failed and prev.status == "failed"):
            changes.unchanged += 1
        else:
            need_hash.append(f)
    hashes = content_hashes([f.path for f in need_hash], hash_threads, {f.path: f.sidecars for f in need_hash})
    scanned_paths = {f.path for f in scan.files}
    gone = [k for k in known.values() if k.path not in scanned_paths and any(under_root(k.path, r) for r in roots)]
    gone_by_hash: dict[str, list[KnownFile]] = {}
    for k in gone:
        if k.hash and k.status == "indexed":
            gone_by_hash.setdefault(k.hash, []).append(k)
    indexed_by_hash: dict[str, KnownFile] = {}
    for k in sorted(known.values(), key=lambda k: k.id):
        if k.hash and k.status == "indexed":
            indexed_by_hash.setdefault(k.hash, k)
    renamed_ids: set[int] = set()
    decoding: dict[str, Candidate] = {}
    for f in need_hash:
        h = hashes[f.path]
        prev = known.get(f.path)
        if prev is not None and h is not None and prev.hash == h and not (retry_failed and prev.status == "failed"):
            if prev.hash is not None and (prev.size, prev.mtime) != (f.size, f.mtime):
                changes.touched.append((prev, f, h))  # same content: refresh the row, keep the windows
            changes.unchanged += 1
            continue
        if (
            prev is not None
            and prev.hash is None
            and verify_content
            and prev.status == "indexed"
            and (prev.size, prev.mtime) == (f.size, f.mtime)
        ):
            changes.touched.append((prev, f, h))  # indexed before hashes were kept: record it now
            changes.unchanged += 1
            continue
        if prev is None and h is not None and gone_by_hash.get(h):
            source = gone_by_hash[h].pop(0)
            renamed_ids.add(source.id)
            changes.renamed.append((source, f, h))
            continue
        candidate = Candidate(f, h, prev)
        if h is not None and h in indexed_by_hash:
            candidate.source = indexed_by_hash[h]
            changes.copies.append(candidate)
        elif h is not None and h in decoding:
            changes.twins.setdefault(h, []).append(candidate)
        else:
            changes.decode.append(candidate)
            if h is not None:
                decoding[h] = candidate
    changes.removed = [k for k in gone if k.id not in renamed_ids]
    return changes
