"""The one consumer of decode events: batches across files, a file is done only after its last batch, a failed
file's waiting windows are dropped, progress once per finished file, and a framer can stop a file early."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from indexer.decode_workers import DecodeJob, DecodePool, FileDecoded, FileFailed, FileOpened, WindowsDecoded
from indexer.settings import Settings
from indexer.window_stream import FileDone, StreamWindow, WindowsBatch, WindowStream
from search.demo_audio import synthesize

W = 4  # samples per window in the hand-made events


def decoded(idx: int, starts: list[int], length: int = W) -> WindowsDecoded:
    audio = np.zeros((len(starts), W), np.float32)
    audio[:, :length] = idx + 1
    return WindowsDecoded(idx, np.array(starts, np.int64), np.full(len(starts), length, np.int64), audio)


def opened(idx: int) -> FileOpened:
    return FileOpened(idx, "test", 48_000, 1, None, "pcm")


def describe(items) -> list:
    out = []
    for item in items:
        if isinstance(item, WindowsBatch):
            out.append(("batch", [(w.file_idx, w.start) for w in item.windows]))
        elif isinstance(item, FileDone):
            out.append(("done", item.file_idx, item.samples, item.opened is not None))
        elif isinstance(item, FileFailed):
            out.append(("failed", item.file_idx))
        elif isinstance(item, FileOpened):
            out.append(("opened", item.file_idx))
    return out


def test_batches_span_files_and_a_file_is_done_after_its_last_batch():
    events = [
        opened(0),
        decoded(0, [0, 4, 8]),
        FileDecoded(0, 12),
        opened(1),
        decoded(1, [0]),
        FileDecoded(1, 4),
    ]
    progress: list[dict] = []
    items = list(WindowStream(events, batch_size=2, files_total=2, on_progress=progress.append))
    assert describe(items) == [
        ("opened", 0),
        ("batch", [(0, 0), (0, 4)]),
        ("opened", 1),
        ("batch", [(0, 8), (1, 0)]),  # file 0's last window waited for a batch-mate from file 1
        ("done", 0, 12, True),
        ("done", 1, 4, True),
    ]
    assert [(p["files_done"], p["files_total"], p["windows"]) for p in progress] == [(1, 2, 4), (2, 2, 4)]


def test_a_failed_files_waiting_windows_are_dropped_and_the_others_go_on():
    events = [decoded(0, [0]), decoded(1, [0]), FileFailed(0, "broken"), decoded(1, [4, 8]), FileDecoded(1, 12)]
    items = list(WindowStream(events, batch_size=3, files_total=2))
    assert describe(items) == [
        ("failed", 0),  # (0, 0) waited in the queue with (1, 0): it is gone, (1, 0) stays
        ("batch", [(1, 0), (1, 4), (1, 8)]),
        ("done", 1, 12, False),
    ]


def test_groups_keep_batches_stackable_and_skip_what_is_not_wanted():
    events = [decoded(0, [0, 4]), decoded(0, [8], length=2), decoded(0, [12]), FileDecoded(0, 14)]

    def by_length(w: StreamWindow):
        if w.start == 4:
            return None  # not wanted
        w.ref = f"w{w.start}"
        return w.length

    items = list(WindowStream(events, batch_size=2, files_total=1, group=by_length))
    batches = [(b.group, [w.ref for w in b.windows]) for b in items if isinstance(b, WindowsBatch)]
    assert batches == [(4, ["w0", "w12"]), (2, ["w8"])]
    assert describe(items)[-1] == ("done", 0, 14, False)


class StopAfter:
    """A framer that wants the first ``n`` windows of a file only."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def windows(self, event):
        for start in event.starts:
            self.seen += 1
            yield StreamWindow(event.file_idx, int(start), W, np.zeros(W, np.float32))

    def finish(self, file_idx):
        return [StreamWindow(file_idx, -1, W, np.zeros(W, np.float32))]  # what the framer still held

    def complete(self, file_idx):
        return self.seen >= self.n


def test_a_framer_stops_reading_once_it_has_what_it_wants():
    read: list[int] = []

    def events():
        for k in range(10):
            read.append(k)
            yield decoded(0, [4 * k])
        yield FileDecoded(0, 40)

    items = list(WindowStream(events(), batch_size=8, files_total=1, framer=StopAfter(3)))
    assert read == [0, 1, 2]
    assert describe(items) == [("batch", [(0, 0), (0, 4), (0, 8), (0, -1)]), ("done", 0, 0, False)]


def test_real_decode_workers_through_the_stream(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), synthesize("tone", 25.0, 16_000, 0), 16_000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    window = 10 * 48_000
    job = DecodeJob.of(Settings(), window, window)
    items = list(WindowStream(DecodePool(job, workers=1, timeout_s=60).run([str(bad), str(good)]), 2, 2))
    kinds = describe(items)
    assert kinds[0] == ("failed", 0)
    starts = [s for k in kinds if k[0] == "batch" for _, s in k[1]]
    assert starts == [0, window, 25 * 48_000 - window]  # the last window aligned to the end, as indexing cuts it
    assert kinds[-1] == ("done", 1, 25 * 48_000, True)
