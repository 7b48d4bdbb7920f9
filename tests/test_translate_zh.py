"""The built-in Chinese translator: vocabulary, segmentation, composition, negation, mixes, honesty, coverage."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from plugins.builtin.translate_zh import translate_chinese, translate_query
from plugins.builtin.translate_zh.vocabulary import KINDS, VOCABULARY_PATH, get_vocabulary, load_vocabulary, parse_row
from plugins.contract import QueryTranslation
from plugins.manager import build_plugin_manager

REPO = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3400-\u9fff]")
ACHIEVED_COVERAGE = 1.0


def test_vocabulary_is_large_and_every_row_well_formed():
    rows = 0
    for lineno, line in enumerate(VOCABULARY_PATH.read_text(encoding="utf-8").splitlines(), 1):
        row = parse_row(line, lineno)  # raises on any malformed row
        if row is None:
            continue
        rows += 1
        zh, en, kind = row
        assert kind in KINDS
        assert en == "-" or (en.isascii() and not CJK.search(en)), f"line {lineno}: English column not English"
        assert en.count("{}") <= 1
    vocabulary = load_vocabulary()
    assert rows == vocabulary.rows >= 1500
    assert len(vocabulary.entries) >= 1500  # distinct Chinese words, not just synonym rows
    assert VOCABULARY_PATH.read_text(encoding="utf-8").startswith("# ")  # the format is documented in the file


def test_vocabulary_covers_the_issue_areas():
    vocabulary = get_vocabulary()
    for zh, english in {"轴承": "bearing", "齿轮": "gear", "皮带": "belt", "电机": "electric motor", "水泵": "pump",
                        "风扇": "fan", "压缩机": "compressor", "阀门": "valve", "继电器": "relay", "漏气": "air leak",
                        "啸叫": "squeal", "敲击声": "knocking", "嗡嗡声": "hum", "嘶嘶声": "hiss", "咔哒声": "clicking",
                        "投诉": "customer complaint", "忙音": "busy tone", "等待音乐": "hold music", "掉线": "dropped call",
                        "湿啰音": "crackles", "哮鸣音": "wheeze", "狗叫": "dog barking", "玻璃破碎": "glass breaking",
                        "警笛": "siren", "钢琴": "piano", "雷声": "thunder", "尖锐": "sharp", "持续": "continuous"}.items():
        assert vocabulary.get(zh).english[0] == english, zh


@pytest.mark.parametrize(("query", "first"), [
    ("轴承异响", "abnormal bearing noise"),
    ("空调外机异响", "abnormal air conditioner outdoor unit noise"),
    ("尖锐的轴承啸叫", "sharp bearing squeal"),
    ("电机轻微嗡嗡声", "faint electric motor hum"),
    ("间歇性咔哒声", "intermittent clicking"),
    ("持续的风机噪音", "continuous fan noise"),
    ("轴承和齿轮异响", "abnormal bearing and gear noise"),
    ("客户投诉", "customer complaint"),
    ("狗叫", "dog barking"),
    ("打雷下雨", "thunder and rain"),
    ("请帮我找一下工厂里电机的异常声音", "abnormal electric motor noise in a factory"),
])
def test_composition_best_phrasing(query, first):
    result = translate_chinese(query)
    assert result.texts[0] == first
    assert result.untranslated == [] and result.negatives == []
    assert result.translator == "zh"


def test_several_phrasings_best_first_at_most_four():
    assert translate_chinese("轴承异响").texts == [
        "abnormal bearing noise", "unusual bearing sound", "abnormal noise from a bearing", "strange bearing noise"]
    assert translate_chinese("狗的声音").texts == ["dog barking", "dog bark", "dog sound"]
    assert all(len(translate_chinese(q).texts) <= 4 for q in ["空调外机异响", "狗叫和猫叫", "电机持续嗡嗡声"])


def test_negation_gives_positive_and_negative_texts():
    result = translate_chinese("空调声，但不是压缩机启动声")
    assert result.texts == ["air conditioner sound"]
    assert result.negatives == ["compressor starting up", "compressor start-up"]
    result = translate_chinese("狗叫，不是猫叫")
    assert result.texts[0] == "dog barking" and result.negatives[0] == "cat meowing"
    result = translate_chinese("没有人声的机器噪音")
    assert result.texts == ["machine noise", "machinery noise"] and result.negatives[0] == "speech"
    assert translate_chinese("没有异响").texts == ["no abnormal noise"]


def test_mixed_chinese_and_english():
    assert translate_chinese("dog 叫声").texts[:3] == ["dog barking", "dog bark", "dog sound"]
    assert translate_chinese("bearing 异响").texts[0] == "abnormal bearing noise"
    assert translate_chinese("motor 啸叫").texts[0] == "motor squeal"
    result = translate_chinese("空调 but not 压缩机")
    assert result.texts == ["air conditioner"] and result.negatives == ["compressor", "air compressor"]


def test_traditional_is_converted_first():
    assert translate_chinese("軸承異響").texts == translate_chinese("轴承异响").texts
    assert translate_chinese("空調外機異響").texts[0] == "abnormal air conditioner outdoor unit noise"


def test_untranslatable_parts_are_reported_never_embedded():
    result = translate_chinese("某某")
    assert result == QueryTranslation(texts=[], negatives=[], untranslated=["某某"], translator="zh")
    result = translate_chinese("某某电机异响")
    assert result.untranslated == ["某某"]
    assert result.texts[0] == "abnormal electric motor noise"
    assert not any(CJK.search(t) for t in result.texts + result.negatives)


def test_strict_mode_still_returns_the_result_with_untranslated():
    result = translate_query("某某电机异响", {"strict_translation": True})
    assert result.untranslated == ["某某"] and result.texts


def test_text_without_cjk_passes():
    assert translate_chinese("glass breaking") is None
    assert translate_query("dog barking, but not cat", {"strict_translation": False}) is None
    assert translate_chinese("") is None


def test_through_the_real_plugin_manager():
    host = build_plugin_manager()
    assert "translate_zh" in host.plugin_names()
    assert "translate_zh" not in [f.name for f in host.failures]
    result = host.translate_query("轴承异响", {"strict_translation": False})
    assert any("bearing" in t for t in result.texts)
    assert host.translate_query("bearing squeal", {"strict_translation": False}) is None


def test_loading_is_thread_safe_and_quiet():
    code = ("import threading\nfrom plugins.builtin.translate_zh import translate_chinese\n"
            "out = []\nts = [threading.Thread(target=lambda: out.append(translate_chinese('轴承异响').texts[0])) for _ in range(8)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\nassert out == ['abnormal bearing noise'] * 8, out\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # jieba prints nothing


def test_coverage_quick_mode():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import zh_coverage
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert len(zh_coverage.load_queries()) >= 200
    coverage, outcomes = zh_coverage.run(quick=False)  # every query: the README's figure (0.1 s)
    assert len(outcomes) == len(zh_coverage.load_queries()) >= 200
    assert coverage >= ACHIEVED_COVERAGE, [(o.query.query, o.reason, o.texts) for o in outcomes if not o.passed]


def test_coverage_script_runs():
    done = subprocess.run([sys.executable, "benchmarks/zh_coverage.py", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("coverage: 100.0%")
