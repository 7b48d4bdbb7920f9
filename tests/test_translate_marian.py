"""The optional Marian translator: a tiny random MarianMT built at test time, loaded through the plugin's code."""

from __future__ import annotations

import json
import re

import pytest

from plugins.builtin import translate_marian
from plugins.manager import build_plugin_manager

CJK = re.compile(r"[\u3400-\u9fff]")
ZH_SENTENCES = [
    "某某工厂的电机",
    "这是一个测试句子",
    "某种奇怪的声音",
    "客户在电话里说话",
    "我们听到了某某声音",
    "机器在车间里运行",
] * 4
EN_SENTENCES = [
    "the motor in the factory",
    "this is a test sentence",
    "some strange sound",
    "the customer talks on the phone",
    "we heard some noise",
    "the machine runs in the workshop",
] * 4


def _train_spm(sentences: list[str], prefix) -> str:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(prefix),
        vocab_size=60,
        character_coverage=1.0,
        model_type="unigram",
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    return f"{prefix}.model"


@pytest.fixture(scope="module")
def tiny_marian_dir(tmp_path_factory):
    """A random zh->en MarianMT (fixed seed) whose output is forced to English pieces, saved with save_pretrained."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = tmp_path_factory.mktemp("marian-src")
    source = _train_spm(ZH_SENTENCES, work / "source")
    target = _train_spm(EN_SENTENCES, work / "target")
    pieces: list[str] = ["</s>", "<unk>"]
    for model_file in (source, target):
        sp = spm.SentencePieceProcessor(model_file=model_file)
        pieces += [
            sp.id_to_piece(i)
            for i in range(sp.get_piece_size())
            if sp.id_to_piece(i) not in pieces and i != sp.unk_id()
        ]
    pieces.append("<pad>")
    vocab = {piece: i for i, piece in enumerate(pieces)}
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(source, target, str(work / "vocab.json"), source_lang="zh", target_lang="en")

    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=vocab["<pad>"],
        decoder_start_token_id=vocab["<pad>"],
        eos_token_id=0,
        forced_eos_token_id=None,
    )
    model = MarianMTModel(config).eval()
    # Random weights make garbage; bias the output towards English word pieces so the garbage is English.
    english = [i for p, i in vocab.items() if re.search(r"[a-z]", p) and not CJK.search(p)]
    bias = torch.full((1, len(vocab)), -1e4)
    bias[0, english] = 10.0
    model.final_logits_bias.copy_(bias)
    out = tmp_path_factory.mktemp("tiny-marian")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _settings(model_dir) -> dict:
    return {
        "strict_translation": False,
        "device": "cpu",
        "marian.model_dir": str(model_dir),
        "marian.max_new_tokens": 6,
    }


def test_untranslated_part_goes_through_the_model_into_texts(tiny_marian_dir):
    host = build_plugin_manager()
    result = host.translate_query("某某电机异响", _settings(tiny_marian_dir))
    expected = translate_marian.load_translator(tiny_marian_dir, "cpu", 6).translate(["某某"])[0]
    assert expected and expected.isascii() and re.search(r"[a-z]", expected)
    assert result.untranslated == []
    assert result.translator == "zh+marian"
    assert result.texts[0] == "abnormal electric motor noise"  # the vocabulary stays first for sound terms
    assert result.texts[-1] == expected
    assert len(result.texts) <= translate_marian.MAX_TEXTS
    assert not any(CJK.search(t) for t in result.texts)


def test_without_model_dir_the_wrapper_changes_nothing(tiny_marian_dir):
    host = build_plugin_manager()
    result = host.translate_query("某某电机异响", {"strict_translation": False})
    assert result.untranslated == ["某某"]
    assert result.translator == "zh"
    assert "abnormal electric motor noise" in result.texts


def test_whole_query_when_no_other_translator_answers(tiny_marian_dir, monkeypatch):
    monkeypatch.setenv("SOUNDSIFT_PLUGINS", "translate_marian")
    host = build_plugin_manager()
    assert host.plugin_names() == ["translate_marian"]
    result = host.translate_query("某种奇怪的声音", _settings(tiny_marian_dir))
    expected = translate_marian.load_translator(tiny_marian_dir, "cpu", 6).translate(["某种奇怪的声音"])[0]
    assert result.texts == [expected]
    assert result.untranslated == []
    assert result.translator == "marian"
    assert host.translate_query("dog barking", _settings(tiny_marian_dir)) is None  # no CJK: passes


def test_model_is_loaded_once_and_deterministic(tiny_marian_dir, monkeypatch):
    first = translate_marian.load_translator(tiny_marian_dir, "cpu", 6)
    assert translate_marian.load_translator(tiny_marian_dir, "cpu", 6) is first
    monkeypatch.setattr(translate_marian, "_loaded", {})  # a second, independent load gives the same English
    fresh = translate_marian.load_translator(tiny_marian_dir, "cpu", 6)
    assert fresh is not first and fresh.translate(["某某", "客户"]) == first.translate(["某某", "客户"])


def test_missing_model_dir_is_a_clear_error(tmp_path):
    host = build_plugin_manager()
    with pytest.raises(translate_marian.MarianModelMissing, match="marian.model_dir"):
        host.translate_query("某某异响", {"marian.model_dir": str(tmp_path / "nowhere")})
