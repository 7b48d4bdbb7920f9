"""Following a root without a model: new files come out settled, each once, a burst in a few batches, a growing file
only after it stops growing, hidden temporary names only once renamed; native events and the polling fallback."""

from __future__ import annotations

import threading
import time

import pytest

from indexer.follow import RootFollower


def _collect(
    follower: RootFollower, stop: threading.Event, into: list[list[str]], times: list[float]
) -> threading.Thread:
    def run():
        for batch in follower.batches(stop, tick_s=0.05):
            into.append(batch)
            times.append(time.monotonic())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("polling", [False, True], ids=["events", "polling"])
def test_a_burst_is_batched_and_a_growing_file_waits(tmp_path, polling):
    follower = RootFollower([str(tmp_path)], settle_s=0.6, batch_s=0.5, polling=polling).start()
    stop, batches, times = threading.Event(), [], []
    worker = _collect(follower, stop, batches, times)
    try:
        time.sleep(0.3)
        for i in range(300):  # a burst
            (tmp_path / f"f{i:03d}.wav").write_bytes(b"x" * 100)
        (tmp_path / ".partial.wav").write_bytes(b"x")  # a copier's temporary name
        growing = tmp_path / "growing.wav"
        with open(growing, "wb") as fh:
            for _ in range(8):  # keeps changing for ~1.6 s, longer than the settle time
                fh.write(b"y" * 1000)
                fh.flush()
                time.sleep(0.2)
        last_write = time.monotonic() - 0.2
        (tmp_path / ".partial.wav").rename(tmp_path / "renamed.wav")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(len(b) for b in batches) < 302:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(5)
        follower.stop()
    seen = [p for b in batches for p in b]
    assert sorted(seen) == sorted(
        [str(tmp_path / f"f{i:03d}.wav") for i in range(300)] + [str(growing), str(tmp_path / "renamed.wav")]
    )
    assert len(batches) <= 4  # 302 files, not 302 runs
    burst_batch = next(b for b in batches if str(tmp_path / "f000.wav") in b)
    assert str(growing) not in burst_batch  # still growing when the burst settled
    out_at = next(t for t, b in zip(times, batches) if str(growing) in b)
    assert out_at >= last_write + 0.6  # taken only once unchanged for the settle time
