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


READERS_WAIT_S = 30.0  # readers (search, classify, stats) finish in seconds: a writer waits for them


class IndexOwnership:
    """Held for as long as a process has the index open; released on close or process death.

    A writer (index, serve) holds the lock exclusively and names itself in owner.json; readers
    (search, classify, stats from the CLI) share it, so several can query at once, but never
    while a writer owns the index.
    """

    def __init__(self, index_dir: Path, role: str = "cli", url: str | None = None, shared: bool = False):
        self.index_dir = index_dir
        self.shared = shared
        index_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(index_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + READERS_WAIT_S
        while True:
            try:
                fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                owner = describe_owner(index_dir)
                if not owner and not shared and time.monotonic() < deadline:
                    time.sleep(0.1)  # held by readers only: they are done in moments
                    continue
                os.close(self._fd)
                raise IndexLocked(self._busy_message(owner)) from None
        if not shared:
            self.describe(role, url)

    def _busy_message(self, owner: dict) -> str:
        if not owner:
            return f"index {self.index_dir} is being read by other soundsift commands; retry when they finish"
        who = f"pid {owner.get('pid', '?')} ({owner.get('command', 'unknown command')})"
        hint = f"; its API is at {owner['url']}" if owner.get("url") else "; wait for it to finish or stop it"
        return f"index {self.index_dir} is in use by {who}{hint}"

    def describe(self, role: str, url: str | None = None) -> None:
        """Write who owns the index (read by a second process to name us)."""
        info = {
            "pid": os.getpid(),
            "command": " ".join(sys.argv) or sys.executable,
            "role": role,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "url": url,
        }
        tmp = self.index_dir / f".{OWNER_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.index_dir / OWNER_NAME)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if not self.shared:
                (self.index_dir / OWNER_NAME).unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None  # type: ignore[assignment]  # released: never used again
