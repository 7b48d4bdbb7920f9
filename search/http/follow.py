"""`serve --follow`: a thread that watches the archive roots and queues an index job for each batch of settled files."""

from __future__ import annotations

import os
import threading
import time

from indexer.follow import RootFollower
from search.http.jobs import JobManager, QueueFull


class FollowJobs:
    """Follows ``roots`` (indexer/follow.py) and submits each settled batch as one job (trigger ``follow``)."""

    def __init__(self, jobs: JobManager, roots: list[str], settle_s: float, batch_s: float):
        self.jobs = jobs
        self.follower = RootFollower(roots, settle_s, batch_s).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soundsift-follow", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for batch in self.follower.batches(self._stop):
            while not self._stop.is_set():
                try:
                    self.jobs.submit(batch, trigger="follow")
                    break
                except QueueFull:  # the queue drains; the batch waits rather than being lost
                    time.sleep(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.follower.stop()


def follow_jobs(jobs: JobManager, paths: list[str], settings) -> FollowJobs | None:
    """Follow ``paths`` (none given: the roots already in the index); None when there is nothing to follow."""
    roots = list(paths) or [r for r in jobs.sound_index.store.roots() if r and os.path.isdir(r)]
    # a root under another root is followed through it (runs of single files record their folder as root)
    roots = [r for r in roots if not any(o != r and r.startswith(o.rstrip(os.sep) + os.sep) for o in roots)]
    if not roots:
        return None
    return FollowJobs(jobs, roots, settings.follow_settle_s, settings.follow_batch_s)
