"""CLAP's log-mel window features in numpy (float64 STFT, no torch): what the ONNX Runtime audio tower is fed.

The same computation as ``indexer/features.py`` (torch, for the torch tower) and as transformers'
``ClapFeatureExtractor`` for one clip of at most a window: a periodic Hann window, a centred STFT with
reflect padding, power, the checkpoint's mel filter bank, ``10 * log10(max(mel, 1e-10))``, and four identical
views with ``is_longer=True``.
"""

from __future__ import annotations

import numpy as np


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
        x = np.asarray(waveforms, dtype=np.float64)
        half = self.n_fft // 2
        x = np.pad(x, ((0, 0), (half, half)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=1)[:, :: self.hop_length]
        spec = np.fft.rfft(frames * self._hann, axis=-1)  # (batch, frames, bins)
        power = spec.real**2 + spec.imag**2
        mel = power @ self._filters  # (batch, frames, mels)
        log_mel = (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)
        return np.ascontiguousarray(np.broadcast_to(log_mel[:, None], (log_mel.shape[0], 4, *log_mel.shape[1:])))
