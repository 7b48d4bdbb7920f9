"""Built-in Chinese query translator: a bilingual sound vocabulary, jieba segmentation and composition, offline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soundsift import QueryTranslation, hookimpl

from .compose import compose
from .segment import CJK, get_segmenter

TRANSLATOR = "zh"


def translate_chinese(text: str) -> QueryTranslation | None:
    """English phrasings for a query containing Chinese; None when it has no CJK at all.

    Parts with no English are listed in ``untranslated`` (in the user's own script) and never embedded.
    """
    if not text or not CJK.search(text):
        return None
    simplified, tokens = get_segmenter().segment(text)
    result = compose(tokens)
    untranslated = result.untranslated
    if len(simplified) == len(text):  # t2s maps character for character: report what the user typed
        spans = {t.text: text[t.start : t.end] for t in tokens if t.role == "unknown"}
        untranslated = [spans.get(u, u) for u in untranslated]
    return QueryTranslation(
        texts=result.texts, negatives=result.negatives, untranslated=untranslated, translator=TRANSLATOR
    )


@hookimpl(tryfirst=True)
def translate_query(text: str, settings: Mapping[str, Any]) -> QueryTranslation | None:
    """Translate Chinese (and mixed Chinese/English) queries; pass (None) on text without CJK.

    With ``strict_translation`` the result is the same: the core turns ``untranslated`` into an error.
    """
    return translate_chinese(text)
