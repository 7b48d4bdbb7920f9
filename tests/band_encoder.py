"""A CLAP stand-in whose vectors are a known acoustic feature: energy in the mel band of one frequency.

Audio goes through the real encoder path (repeat-pad, the indexer's log-mel features); the "audio tower"
then reads the band's share of the power. A text mentioning "tone" points at that band, anything else away
from it, so a window's cosine with "tone" is how much of its power sits at the tone's frequency.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.model import ClapEncoder

TONE_HZ = 1000.0


class BandEncoder(ClapEncoder):
    """Built from a loaded (tiny) CLAP: its tokenizer, extractor and features; vectors from band energy."""

    def __init__(self, base: ClapEncoder, tone_hz: float = TONE_HZ):
        super().__init__(base.model, base.tokenizer, base.extractor, base.identity, base.device, "fp32")
        filters = self.features._filters.cpu().numpy()  # (fft bins, mels)
        fft_bin = int(round(tone_hz / (self.sample_rate / self.features.n_fft)))
        self.band = int(np.argmax(filters[fft_bin]))

    @torch.inference_mode()
    def embed_waveforms(self, waveforms: torch.Tensor) -> np.ndarray:
        log_mel = self.features(waveforms)[:, 0]  # (batch, frames, mels): the first of the four identical views
        # the features' floor (1e-10, i.e. -100 dB) taken off: silence is a zero vector, no band at all
        power = torch.clamp(torch.pow(10.0, log_mel.double() / 10.0) - 1e-10, min=0.0).mean(dim=1)  # (batch, mels)
        band = power[:, self.band]
        rest = power.sum(dim=1) - band
        out = np.zeros((len(power), self.embedding_dim), np.float32)
        out[:, 0], out[:, 1] = band.numpy(), rest.numpy()
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.embedding_dim), np.float32)
        for i, text in enumerate(texts):
            out[i, 0 if "tone" in text.lower() else 1] = 1.0
        return out


def burst_in_noise(
    seconds: float, burst_at: float, burst_s: float, rate: int = 48_000, seed: int = 0, tone_hz: float = TONE_HZ
) -> np.ndarray:
    """Quiet broadband noise with a tone burst of ``burst_s`` seconds at ``burst_at``."""
    rng = np.random.default_rng(seed)
    audio = 0.05 * rng.standard_normal(int(seconds * rate))
    a, b = int(burst_at * rate), int((burst_at + burst_s) * rate)
    t = np.arange(b - a) / rate
    audio[a:b] += 0.5 * np.sin(2 * np.pi * tone_hz * t)
    return audio.astype(np.float32)
