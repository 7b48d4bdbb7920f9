"""Reading a span through the decoder plugins: a source that can seek is read from there, one that cannot is
streamed from the start; both give the same audio (the seeking one at the file's own rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from indexer.decode import TARGET_RATE, DecodeLimits, read_span
from plugins.builtin.decode_soundfile import SoundFileSource
from plugins.manager import build_plugin_manager
from soundsift import Decoder


def test_a_seeking_source_and_a_streamed_one_read_the_same_span(tmp_path):
    rate = 16_000
    audio = np.sin(np.arange(30 * rate) * 2 * np.pi * 440 / rate).astype(np.float32) * 0.5
    path = tmp_path / "a.wav"
    sf.write(str(path), np.stack([audio, -audio * 0.5], axis=1), rate)  # stereo: the mean is audio / 4
    decoders = build_plugin_manager().decoders
    limits = DecodeLimits()

    source = SoundFileSource(path)
    assert source.seek(12.0) == 12.0 and len(next(source.blocks())) > 0
    source.close()

    seeking, seek_rate = read_span(path, 12.0, 14.5, {"soundfile": decoders["soundfile"]}, {}, limits)
    assert seek_rate == rate and len(seeking) == int(14.5 * rate) - 12 * rate
    np.testing.assert_allclose(seeking, audio[12 * rate : int(14.5 * rate)] / 4, atol=1e-4)

    opened: list[int] = []

    class NoSeek:  # what a third-party decoder without ``seek`` gives: blocks from the start only
        def __init__(self, p: Path):
            self._inner = SoundFileSource(p)
            self.sample_rate, self.channels = self._inner.sample_rate, self._inner.channels
            self.duration_s, self.codec = self._inner.duration_s, "test"
            opened.append(1)

        def blocks(self):
            return self._inner.blocks()

        def close(self):
            self._inner.close()

    plain = Decoder(name="noseek", open=lambda p, s: NoSeek(p), extensions=("wav",))
    streamed, stream_rate = read_span(path, 12.0, 14.5, {"noseek": plain}, {}, limits)
    assert stream_rate == TARGET_RATE and opened == [1]
    expected = soxr.resample(seeking, rate, TARGET_RATE, quality="HQ")
    assert abs(len(streamed) - len(expected)) <= 2
    n = min(len(streamed), len(expected))
    np.testing.assert_allclose(streamed[100 : n - 100], expected[100 : n - 100], atol=2e-3)
