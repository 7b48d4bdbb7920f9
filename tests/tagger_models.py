"""Tiny random audio-classification checkpoints (AST, wav2vec2) built at test time with save_pretrained."""

from __future__ import annotations

from pathlib import Path

LABELS = ("angry", "calm", "dial tone", "speech", "music", "silence")


def _labels(labels=LABELS) -> dict:
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
        "num_labels": len(labels),
    }


def build_tiny_ast(target: Path, seed: int = 0, labels=LABELS, max_length: int = 128) -> Path:
    """A 2-layer AST whose feature extractor cuts/pads to ``max_length`` frames (1.28 s at 16 kHz)."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    target = Path(target)
    torch.manual_seed(seed)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
        **_labels(labels),
    )
    ASTForAudioClassification(config).eval().save_pretrained(target)
    ASTFeatureExtractor(max_length=max_length, num_mel_bins=128, sampling_rate=16_000).save_pretrained(target)
    return target


def build_tiny_wav2vec2(target: Path, seed: int = 0, labels=LABELS, sampling_rate: int = 16_000) -> Path:
    """A 2-layer wav2vec2 sequence classifier at ``sampling_rate`` with a normalising feature extractor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    target = Path(target)
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        vocab_size=8,
        **_labels(labels),
    )
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(target)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(target)
    return target
