"""The speed paths keep results: bf16 autocast within 1e-2 cosine of fp32, batch size by device, batch independence."""

from __future__ import annotations

import numpy as np
import torch

from indexer.model import load_clap
from indexer.runner import auto_batch_size
from search.demo_audio import synthesize


def _windows(encoder, kinds=("bearing", "bell", "bark", "glass", "noise", "chirp")) -> torch.Tensor:
    return torch.from_numpy(np.stack([synthesize(k, 10.0, encoder.sample_rate, seed=i) for i, k in enumerate(kinds)]))


def test_bf16_autocast_vectors_within_1e2_cosine_of_fp32(tiny_model_dir, tiny_encoder):
    # CUDA runs bf16 by default (precision "auto"); where no GPU is present the same autocast runs on the CPU.
    bf16 = load_clap(str(tiny_model_dir), device="cpu", precision="bf16")
    assert bf16._autocast_dtype is torch.bfloat16 and tiny_encoder._autocast_dtype is None
    audio = _windows(tiny_encoder)
    v32 = tiny_encoder.embed_waveforms(audio)
    v16 = bf16.embed_waveforms(audio)
    assert v16.dtype == np.float32 and np.allclose(np.linalg.norm(v16, axis=1), 1.0, atol=1e-5)
    cosine = (v32 * v16).sum(axis=1)
    assert cosine.min() >= 1 - 1e-2
    assert not np.array_equal(v32, v16)  # bf16 really ran


def test_precision_auto_is_fp32_on_cpu_and_batches_are_independent(tiny_model_dir, tiny_encoder):
    assert tiny_encoder._autocast_dtype is None  # "auto" on the CPU: fp32, the pipeline's own numbers
    assert auto_batch_size(tiny_encoder) == 4
    audio = _windows(tiny_encoder)
    whole = tiny_encoder.embed_waveforms(audio)
    halves = np.concatenate([tiny_encoder.embed_waveforms(audio[:2]), tiny_encoder.embed_waveforms(audio[2:])])
    np.testing.assert_allclose(whole, halves, atol=2e-6)
