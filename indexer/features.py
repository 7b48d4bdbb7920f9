"""Log-mel features in torch on the model's device, equal to ClapFeatureExtractor's fusion output within 1e-4.

The STFT and mel product run in float64: float32 loses up to ~1 dB in near-silent frames, where the
extractor (numpy, float64) does not.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.log_mel import repeat_pad


class LogMelFeatures:
    """Turns (batch, <=window) 48 kHz waveforms into CLAP's (batch, 4, frames, mels) fusion input."""

    def __init__(self, mel_filters: np.ndarray, n_fft: int, hop_length: int, window_samples: int, device: torch.device):
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window_samples = window_samples
        self.device = device
        # Apple's MPS has no float64: there the features are computed on the CPU and moved over.
        self._compute_on = torch.device("cpu") if device.type == "mps" else device
        self._filters = torch.as_tensor(np.asarray(mel_filters), dtype=torch.float64, device=self._compute_on)
        self._hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64, device=self._compute_on)

    @classmethod
    def from_extractor(cls, extractor, device: torch.device) -> "LogMelFeatures":
        """Take the filter bank and frame geometry from a loaded ClapFeatureExtractor."""
        return cls(
            extractor.mel_filters, extractor.fft_window_size, extractor.hop_length, extractor.nb_max_samples, device
        )

    def repeat_pad(self, waveform: np.ndarray) -> np.ndarray:
        """ClapFeatureExtractor's ``repeatpad``: tile a short clip whole times, then zero-pad to the window."""
        return repeat_pad(waveform, self.window_samples)

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, window_samples) float waveforms on any device -> (batch, 4, frames, mels) float32 on ours."""
        x = waveforms.to(self._compute_on, dtype=torch.float64, non_blocking=True)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._hann,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (batch, bins, frames)
        mel = torch.matmul(power.transpose(1, 2), self._filters)  # (batch, frames, mels)
        log_mel = (10.0 * torch.log10(torch.clamp(mel, min=1e-10))).to(torch.float32)
        # Four identical views with is_longer=True: what the pipeline computes for one clip alone.
        return log_mel.unsqueeze(1).expand(-1, 4, -1, -1).contiguous().to(self.device)
