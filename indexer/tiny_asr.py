"""Random speech-recognition checkpoints built locally (tests and benchmarks): no download, loaded by the real code.

`build_tiny_ctc`: a character-level wav2vec2 CTC (tiny config, a Wav2Vec2CTCTokenizer vocabulary, the feature
extractor). `build_random_whisper`: a Whisper with a byte-level tokenizer, its special tokens and a generation
config, in a tiny geometry or whisper-tiny's (4 + 4 layers, width 384, 51865 tokens). Weights are random with a
fixed seed: the text they produce means nothing, but it is what the transformers pipeline produces too.
"""

from __future__ import annotations

import json
from pathlib import Path

CTC_VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d", "e", "o", "s", "t", "投", "诉", "退", "款")
WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|zh|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
WHISPER_TINY = {  # openai/whisper-tiny's geometry
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
    "max_target_positions": 448,
    "vocab_size": 51865,
}
TINY = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_target_positions": 64,
    "vocab_size": 266,
}


def build_tiny_ctc(target: Path, seed: int = 0, vocab: tuple[str, ...] = CTC_VOCAB) -> Path:
    """A 2-layer wav2vec2 CTC over ``vocab`` characters at 16 kHz (its logits scaled so it emits many of them)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    (target / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(vocab)}, ensure_ascii=False))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(target / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
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
        vocab_size=len(vocab),
        pad_token_id=0,
    )
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # random logits near zero would emit blanks only
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    extractor.save_pretrained(target)
    return target


def _whisper_vocab(size: int) -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    fillers = size - len(WHISPER_SPECIALS) - len(chars)
    for i in range(max(0, fillers)):  # two-character pieces as stand-ins for BPE merges (never produced by encoding)
        vocab.setdefault(chars[i // 256 % 256] + chars[i % 256] + chars[i // 65536], len(vocab))
    for s in WHISPER_SPECIALS:
        vocab[s] = len(vocab)
    return vocab


def build_random_whisper(target: Path, geometry: str = "tiny", seed: int = 0, max_new_tokens: int = 24) -> Path:
    """A Whisper with random weights in the ``tiny`` or ``whisper-tiny`` geometry, its tokenizer and generation config."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    target = Path(target)
    if (target / "config.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    shape = dict(WHISPER_TINY if geometry == "whisper-tiny" else TINY)
    vocab = _whisper_vocab(shape.pop("vocab_size"))
    (target / "vocab.json").write_text(json.dumps(vocab))
    (target / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        str(target / "vocab.json"),
        str(target / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
        additional_special_tokens=list(WHISPER_SPECIALS[1:]),
    )
    tokenizer.save_pretrained(target)
    ids = {s: vocab[s] for s in WHISPER_SPECIALS}
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        max_source_positions=1500,
        pad_token_id=ids[end],
        bos_token_id=ids[end],
        eos_token_id=ids[end],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        **shape,
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids[end],
        pad_token_id=ids[end],
        bos_token_id=ids[end],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        max_length=max_new_tokens + 4,
        begin_suppress_tokens=[ids[end]],
        suppress_tokens=[],
    )
    model.save_pretrained(target)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(target)
    return target
