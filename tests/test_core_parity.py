"""Parity with transformers, computed from transformers itself: features, vectors, pipeline scores, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor, pipeline

from search.demo_audio import synthesize

SR = 48_000


def _signals():
    rng = np.random.default_rng(1)
    noise = (0.1 * rng.standard_normal(10 * SR)).astype(np.float32)
    tone_with_silence = synthesize("tone", 10.0, SR).copy()
    tone_with_silence[: 3 * SR] = 0.0  # near-silent frames are where float32 STFTs drift
    short = synthesize("bell", 3.5, SR)
    tiny = synthesize("chirp", 0.2, SR)
    return {"noise": noise, "tone_with_silence": tone_with_silence, "short_3.5s": short, "tiny_0.2s": tiny}


@pytest.mark.parametrize("name", list(_signals()))
def test_features_equal_clap_feature_extractor(name, tiny_model_dir, tiny_encoder):
    audio = _signals()[name]
    extractor = ClapFeatureExtractor.from_pretrained(tiny_model_dir)
    expected = extractor(audio, sampling_rate=SR, return_tensors="pt")["input_features"][0]
    padded = tiny_encoder.features.repeat_pad(audio)
    ours = tiny_encoder.features(torch.from_numpy(padded[None]))[0]
    assert ours.shape == expected.shape == (4, 1001, 64)
    assert torch.max(torch.abs(ours - expected)).item() < 1e-4


@pytest.fixture(scope="module")
def clap_pipeline(tiny_model_dir):
    return pipeline("zero-shot-audio-classification", model=str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize("name", ["noise", "short_3.5s"])
def test_window_vector_and_scores_equal_the_pipeline(name, clap_pipeline, tiny_encoder):
    audio = _signals()[name]
    labels = ["glass breaking", "a dog barking", "a bell ringing", "engine idling", "rain on a roof"]
    inputs = clap_pipeline.feature_extractor(audio, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        model = clap_pipeline.model
        pooled = model.audio_model(input_features=inputs["input_features"], is_longer=inputs["is_longer"]).pooler_output
        expected_vector = torch.nn.functional.normalize(model.audio_projection(pooled), dim=-1)[0].numpy()
    ours = tiny_encoder.embed_windows([audio])[0]
    assert np.max(np.abs(ours - expected_vector)) < 1e-5

    expected_scores = {r["label"]: r["score"] for r in clap_pipeline(audio, candidate_labels=labels)}
    texts = tiny_encoder.embed_texts([f"This is a sound of {label}." for label in labels])
    logits = tiny_encoder.logit_scale * (ours @ texts.T)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    for label, p in zip(labels, probs):
        assert abs(p - expected_scores[label]) < 1e-5


def test_vector_does_not_depend_on_batch_mates(tiny_encoder):
    rng = np.random.default_rng(7)
    windows = [
        synthesize(kind, 10.0, SR, seed=i)
        for i, kind in enumerate(["tone", "noise", "bell", "bearing", "bark", "glass"])
    ]
    windows.append((0.2 * rng.standard_normal(4 * SR)).astype(np.float32))  # a short one among full ones
    batch = tiny_encoder.embed_windows(windows)
    assert batch.shape == (7, tiny_encoder.embedding_dim)
    for i, window in enumerate(windows):
        alone = tiny_encoder.embed_windows([window])[0]
        assert np.max(np.abs(alone - batch[i])) < 1e-5
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_repeat_pad_matches_extractor_rule(tiny_encoder):
    clip = np.arange(1, 150_001, dtype=np.float32)
    padded = tiny_encoder.features.repeat_pad(clip)
    assert len(padded) == 480_000
    assert np.array_equal(padded[:450_000], np.tile(clip, 3))  # int(480000 / 150000) = 3 whole repeats
    assert not padded[450_000:].any()
