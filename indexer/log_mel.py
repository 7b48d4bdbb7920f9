"""CLAP's log-mel window features in numpy (float64 STFT, no torch): what the ONNX Runtime audio tower is fed.

The same computation as ``indexer/features.py`` (torch, for the torch tower) and as transformers'
``ClapFeatureExtractor`` for one clip of at most a window: a periodic Hann window, a centred STFT with
reflect padding, power, the checkpoint's mel filter bank, ``10 * log10(max(mel, 1e-10))``, and four identical
views with ``is_longer=True``.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits


def repeat_pad(waveform: np.ndarray, window_samples: int) -> np.ndarray:
    """ClapFeatureExtractor's ``repeatpad``: tile a short clip whole times, then zero-pad to the window."""
    n = len(waveform)
    if n >= window_samples:
        return waveform[:window_samples]
    if n == 0:
        return np.zeros(window_samples, dtype=np.float32)
    tiled = np.tile(waveform, window_samples // n)
    return np.pad(tiled, (0, window_samples - len(tiled)))


class NumpyLogMel:
    """(batch, window_samples) 48 kHz waveforms -> (batch, 4, frames, mels) float32, on the CPU in numpy."""

    def __init__(self, mel_filters: np.ndarray, n_fft: int, hop_length: int, window_samples: int):
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.window_samples = int(window_samples)
        self._filters = np.asarray(mel_filters, dtype=np.float64)
        self._hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)  # periodic

    def repeat_pad(self, waveform: np.ndarray) -> np.ndarray:
        """`repeat_pad` to this extractor's window."""
        return repeat_pad(waveform, self.window_samples)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        waveforms = np.asarray(waveforms)
        half = self.n_fft // 2
        frame_count = 1 + waveforms.shape[1] // self.hop_length
        out = np.empty((len(waveforms), 4, frame_count, self._filters.shape[1]), dtype=np.float32)
        # One BLAS thread: OpenBLAS's helper threads spin for a while after a product, on the cores the tower's
        # runtime is about to use (OpenVINO's next batch of 4 ran at 0.068 s a window after a threaded product,
        # 0.052 after a single-threaded one; a batch's product takes 5 to 7 ms either way).
        with threadpool_limits(1, user_api="blas"):
            # A window at a time: 8 batches of 4 took 0.31 to 0.36 s against 0.45 to 0.62 s as whole batches,
            # most of the difference system time spent on a batch's 33 MB temporaries.
            for i, waveform in enumerate(waveforms):
                x = np.pad(waveform.astype(np.float64), (half, half), mode="reflect")
                frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop_length]
                spec = np.fft.rfft(frames * self._hann, axis=-1)  # (frames, bins)
                power = spec.real**2 + spec.imag**2
                mel = power @ self._filters  # (frames, mels)
                out[i] = (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)
        return out
