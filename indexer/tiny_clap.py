"""A tiny random CLAP (small config, fixed seed, a byte-level BPE tokenizer trained on the spot).

Tests and the offline demo load it through the same code as real weights. Its scores mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "This is a sound of {}.",
    "a dog barking",
    "glass breaking",
    "a bell ringing",
    "abnormal bearing noise",
    "a customer complaint",
    "engine idling",
    "rain on a roof",
    "a baby crying",
    "a siren wailing",
    "birds chirping",
    "a pure tone",
    "white noise hiss",
    "a motor humming",
    "knocking and rattling",
    "speech and talking",
    "music playing",
    "silence",
    "clicking relay",
    "a squealing belt",
    "water leaking",
    "footsteps on a wooden floor",
]
TINY_MARKER = "soundsift-tiny-clap"


def build_tiny_clap(target: Path, seed: int = 0, projection_dim: int = 512) -> Path:
    """Write a tiny CLAP checkpoint (model, tokenizer, feature extractor) to ``target`` and return it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    target = Path(target)
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)

    bpe = ByteLevelBPETokenizer()
    corpus = [s.format("x") for s in SENTENCES] * 4
    bpe.train_from_iterator(
        corpus, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe._tokenizer.post_processor = RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=77,
    )

    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer) + 8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=80,
            projection_dim=projection_dim,
        ),
        audio_config=dict(
            patch_embeds_hidden_size=16,
            hidden_size=128,
            depths=[1, 1, 1, 1],
            num_attention_heads=[1, 1, 2, 2],
            window_size=8,
            enable_fusion=True,
            projection_dim=projection_dim,
            spec_size=256,
            num_mel_bins=64,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    # Default init (std 0.02) makes every text embed to nearly the same vector; wider weights keep
    # texts apart so rankings in tests and the demo differ by query.
    with torch.no_grad():
        for param in model.text_model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.4)
    model.save_pretrained(str(target))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer).save_pretrained(str(target))
    (target / "SOUNDSIFT_TINY.json").write_text(json.dumps({"marker": TINY_MARKER, "seed": seed}))
    return target


def is_tiny(model_dir: Path) -> bool:
    """True when ``model_dir`` holds the tiny random CLAP."""
    return (Path(model_dir) / "SOUNDSIFT_TINY.json").exists()
