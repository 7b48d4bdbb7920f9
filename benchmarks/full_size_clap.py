"""The full-size `laion/clap-htsat-fused` architecture with random weights, saved where `--model DIR` and the pipeline read it.

Random weights compute exactly as fast as the real ones, so speed measured on this checkpoint is the speed
of the real model; its scores mean nothing. transformers' default ClapConfig has ``enable_fusion=False``;
the fused checkpoint's geometry is spelled out here (HTSAT depths 2-2-6-2, hidden 768, 64 mels, spec 256,
a RoBERTa-base text tower, 512-d projections).
"""

from __future__ import annotations

import json
from pathlib import Path

FUSED_AUDIO = dict(
    enable_fusion=True,
    fusion_type="aff_2d",
    depths=[2, 2, 6, 2],
    num_attention_heads=[4, 8, 16, 32],
    hidden_size=768,
    patch_embeds_hidden_size=96,
    window_size=8,
    spec_size=256,
    num_mel_bins=64,
    patch_size=4,
    patch_stride=[4, 4],
    projection_dim=512,
    projection_hidden_act="relu",
)
ROBERTA_BASE_TEXT = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    projection_dim=512,
    projection_hidden_act="relu",
)


def build_full_size_clap(target: Path, seed: int = 0) -> Path:
    """Write the full-size fused CLAP (random weights, fixed seed) with a byte-level BPE tokenizer to ``target``."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    from indexer.tiny_clap import SENTENCES

    target = Path(target)
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    config = ClapConfig(text_config=ROBERTA_BASE_TEXT, audio_config=FUSED_AUDIO, projection_dim=512)
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    model.save_pretrained(str(target))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer).save_pretrained(str(target))
    (target / "SOUNDSIFT_FULL_SIZE_RANDOM.json").write_text(json.dumps({"seed": seed, "sentences": len(SENTENCES)}))
    return target


def _tokenizer():
    """A byte-level BPE in RoBERTa's format; prompts tokenize to about as many tokens as RoBERTa's own."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    from indexer.tiny_clap import SENTENCES

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [s.format("x") for s in SENTENCES] * 4,
        vocab_size=2000,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe._tokenizer.post_processor = RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    return RobertaTokenizerFast(
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


if __name__ == "__main__":
    import sys

    print(build_full_size_clap(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/.cache/clap-full-size")))
