"""One owner per index: an exclusive advisory lock on ``owner.lock`` with the owner's pid and command beside it."""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from indexer.errors import IndexLocked

LOCK_NAME = "owner.lock"
OWNER_NAME = "owner.json"


def describe_owner(index_dir: Path) -> dict:
    """What the current owner wrote about itself (pid, command, started, url), or {}."""
    try:
        return json.loads((index_dir / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return {}


class IndexOwnership:
    """Held for as long as a process has the index open read-write; released on close or process death."""

    def __init__(self, index_dir: Path, role: str = "cli", url: str | None = None):
        self.index_dir = index_dir
        index_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(index_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            owner = describe_owner(index_dir)
            who = f"pid {owner.get('pid', '?')} ({owner.get('command', 'unknown command')})"
            hint = f"; its API is at {owner['url']}" if owner.get("url") else "; wait for it to finish or stop it"
            raise IndexLocked(f"index {index_dir} is in use by {who}{hint}") from None
        self.describe(role, url)

    def describe(self, role: str, url: str | None = None) -> None:
        """Write who owns the index (read by a second process to name us)."""
        info = {"pid": os.getpid(), "command": " ".join(sys.argv) or sys.executable, "role": role,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "url": url}
        tmp = self.index_dir / f".{OWNER_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.index_dir / OWNER_NAME)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            (self.index_dir / OWNER_NAME).unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
