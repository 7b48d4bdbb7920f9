"""Following archive roots as files land: file events (watchdog: inotify, FSEvents; polling for network shares),
each new or changed file taken once it stops growing, settled files handed over in batches.

A file counts as settled when its size and mtime have not changed for ``settle_s`` and no event touched it
meanwhile. Files settling close together (``batch_s``) go in one batch, so a burst of a thousand files is a
few runs, not a thousand. Names starting with a dot (editors' and copiers' temporary files) are ignored
until they are renamed to their final name.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler


@dataclass
class _Seen:
    size: int
    mtime: float
    changed_at: float  # monotonic time of the last change seen (event or stat)


class _Handler(FileSystemEventHandler):
    def __init__(self, follower: "RootFollower"):
        self.follower = follower

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):  # a folder landing whole: its files are new too
                self.follower.touch_tree(str(getattr(event, "dest_path", "") or event.src_path))
            return
        if event.event_type in ("created", "modified", "closed"):
            self.follower.touch(str(event.src_path))
        elif event.event_type == "moved":
            self.follower.touch(str(event.dest_path))


class RootFollower:
    """Watches roots for new and changed files and yields them, settled, in batches (`batches`)."""

    def __init__(self, roots: list[str], settle_s: float = 2.0, batch_s: float = 1.0, polling: bool | None = None):
        self.roots = [str(r) for r in roots]
        self.settle_s = settle_s
        self.batch_s = batch_s
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._observer: Any = None
        self.polling = bool(polling) if polling is not None else os.environ.get("SOUNDSIFT_FOLLOW_POLLING") == "1"

    # -- events --------------------------------------------------------------------------------
    def start(self) -> "RootFollower":
        """Start watching (native events; polling when asked for or when native watching cannot start)."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        for attempt in [PollingObserver] if self.polling else [Observer, PollingObserver]:
            observer = attempt(timeout=0.5) if attempt is PollingObserver else attempt()
            try:
                for root in self.roots:
                    observer.schedule(
                        _Handler(self), root if os.path.isdir(root) else os.path.dirname(root) or ".", recursive=True
                    )
                observer.start()
            except OSError:  # inotify watches exhausted, a file system without events: poll instead
                continue
            self._observer = observer
            self.polling = attempt is PollingObserver
            return self
        raise OSError(f"cannot watch {', '.join(self.roots)}")

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None

    def _wanted(self, path: str) -> bool:
        if os.path.basename(path).startswith("."):
            return False
        real = os.path.abspath(path)
        for root in self.roots:
            r = os.path.abspath(root)
            if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
                return True
        return False

    def touch(self, path: str) -> None:
        """A file changed now (an event, or a test)."""
        if not self._wanted(path):
            return
        with self._lock:
            old = self._seen.get(path)
            self._seen[path] = _Seen(old.size if old else -1, old.mtime if old else -1.0, time.monotonic())

    def touch_tree(self, folder: str) -> None:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                self.touch(os.path.join(dirpath, name))

    # -- settling ------------------------------------------------------------------------------
    def settled(self, now: float | None = None) -> tuple[list[str], int]:
        """(files unchanged for settle_s, now taken off the list; how many are still settling)."""
        now = time.monotonic() if now is None else now
        ready = []
        with self._lock:
            for path, seen in list(self._seen.items()):
                try:
                    st = os.stat(path)
                except OSError:  # gone (deleted, or renamed: the new name has its own event)
                    del self._seen[path]
                    continue
                if (st.st_size, st.st_mtime) != (seen.size, seen.mtime):
                    self._seen[path] = _Seen(st.st_size, st.st_mtime, now)
                elif now - seen.changed_at >= self.settle_s:
                    ready.append(path)
                    del self._seen[path]
            waiting = len(self._seen)
        return sorted(ready), waiting

    def batches(self, stop: threading.Event, tick_s: float = 0.2) -> Iterator[list[str]]:
        """Batches of settled files until ``stop`` is set. A batch waits up to ``batch_s`` for files still settling."""
        batch: list[str] = []
        first_ready = 0.0
        while not stop.is_set():
            ready, waiting = self.settled()
            if ready and not batch:
                first_ready = time.monotonic()
            batch += [p for p in ready if p not in batch]
            if batch and (not waiting or time.monotonic() - first_ready >= self.batch_s):
                yield batch
                batch = []
                continue
            stop.wait(tick_s)
