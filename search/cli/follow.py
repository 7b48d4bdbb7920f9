"""`soundsift index PATHS --follow`: after the first run, index files as they land, until Ctrl-C (between commits)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

from indexer.errors import BadInput
from indexer.follow import RootFollower
from search.cli.app import _emit_json, err, out


@contextlib.contextmanager
def stop_on_interrupt(stop: threading.Event):
    """The first Ctrl-C (or SIGTERM) sets ``stop``: the run in progress finishes its commits and nothing new starts.
    A second Ctrl-C interrupts at once (the open transaction rolls back; what was committed stays)."""

    def first(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("stopping after the current commit (Ctrl-C again to stop now)", markup=False)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def follow_index(sx, paths: list[Path], deliverer, json_out: bool, stop: threading.Event | None = None) -> int:
    """Index settled new files under ``paths`` batch by batch until stopped; returns how many runs it made."""
    from indexer.watch_store import WatchStore

    stop = stop or threading.Event()
    follower = RootFollower([str(p) for p in paths], sx.settings.follow_settle_s, sx.settings.follow_batch_s).start()
    mode = "polling" if follower.polling else "file events"
    err.print(f"following {', '.join(map(str, paths))} ({mode}); Ctrl-C stops", markup=False)
    runs = 0
    watches = WatchStore(sx.store)
    with stop_on_interrupt(stop):
        try:
            for batch in follower.batches(stop):
                present = [p for p in batch if os.path.exists(p)]
                if not present:
                    continue
                alerts_before = sum(watches.alert_counts().values())
                try:
                    report = sx.index(present, progress=False)
                except BadInput as exc:  # a file vanished between settling and the scan: the rest next time
                    err.print(f"warning: {exc}", markup=False)
                    continue
                runs += 1
                deliverer.wake()
                alerts = sum(watches.alert_counts().values()) - alerts_before
                if json_out:
                    _emit_json({**report.document(), "alerts": alerts})
                else:
                    out.print(
                        f"followed: indexed {report.files_indexed} files ({report.windows} windows), "
                        f"failed {report.files_failed}; {alerts} alerts",
                        markup=False,
                        highlight=False,
                    )
        finally:
            follower.stop()
    return runs
