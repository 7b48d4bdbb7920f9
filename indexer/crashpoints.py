"""Test-only pause points: SOUNDSIFT_TEST_PAUSE_AT=<phase>[:<n>] stops the process the n-th time it reaches <phase>.

Crash tests use it to aim a kill -9 at one phase of a run (decode, embed, commit, faiss_write). With the
variable set, every phase reached is also announced on stderr as ``soundsift-phase <phase> <count>``, so a
test killing at a random moment knows which phase it hit. Unset (always, outside tests) it costs one
environment lookup per call and does nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

ENV = "SOUNDSIFT_TEST_PAUSE_AT"
PHASES = ("decode", "embed", "commit", "faiss_write", "tag_commit", "probe_commit")
PAUSE_S = 120.0
_counts: Counter[str] = Counter()


def reached(phase: str) -> None:
    """Announce ``phase`` and, when it is the requested pause point, sleep until killed (or PAUSE_S)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _counts[phase] += 1
    target, _, nth = spec.partition(":")
    sys.stderr.write(f"soundsift-phase {phase} {_counts[phase]}\n")
    if target == phase and _counts[phase] == int(nth or 1):
        sys.stderr.write(f"soundsift-paused-at {phase} {_counts[phase]}\n")
        sys.stderr.flush()
        time.sleep(PAUSE_S)
    sys.stderr.flush()


def reset() -> None:
    """Forget the counts (a forked test child starts from zero)."""
    _counts.clear()
