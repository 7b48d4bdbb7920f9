"""Query segmentation: Traditional to Simplified, jieba over the vocabulary, tokens tagged with their role."""
from __future__ import annotations

import functools
import io
import logging
import re
from dataclasses import dataclass, field

from plugins.builtin.translate_zh.vocabulary import HEARD_KINDS, Vocabulary, get_vocabulary

#: Han, kana and Hangul: text with none of these is not ours to translate.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN = re.compile(r"^[A-Za-z0-9\s\-.'&+#%]+$")
_PUNCT = re.compile(r"^[，,；;。！!？?、/|:：\n\r\t()（）\[\]【】「」『』“”\"《》…~～]+$")
_ENGLISH_NEGATION = re.compile(r"\b(?:but not|and not|not|except|without|excluding|no)\b", re.IGNORECASE)
_WORD_FREQ = 1000


@dataclass
class Token:
    """One segment of a query: its surface text, role and English phrasings.

    ``role`` is thing, heard (sound/fault/event), modifier, suffix, place, conj, neg, stop, punct,
    english (a Latin run kept as typed) or unknown (no English found).
    """

    text: str
    role: str
    english: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    kind: str = ""
    start: int = 0
    end: int = 0


class Segmenter:
    """A private jieba tokenizer whose dictionary is the sound vocabulary, plus OpenCC t2s."""

    def __init__(self, vocabulary: Vocabulary):
        import jieba
        from opencc import OpenCC

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self.vocabulary = vocabulary
        self._t2s = OpenCC("t2s")
        self._jieba = jieba.Tokenizer()
        # The vocabulary is the whole dictionary: built in memory, no cache file, nothing printed.
        words = [w for w in vocabulary.entries if CJK.search(w)]
        lines = "".join(f"{w} {_WORD_FREQ}\n" for w in words).encode("utf-8")
        self._jieba.FREQ, self._jieba.total = self._jieba.gen_pfdict(io.BytesIO(lines))
        self._jieba.initialized = True

    def to_simplified(self, text: str) -> str:
        """Traditional Chinese converted to Simplified (Simplified text is left as it is)."""
        return self._t2s.convert(text)

    def segment(self, text: str) -> tuple[str, list[Token]]:
        """The simplified text and its tokens, with offsets into that simplified text."""
        simplified = self.to_simplified(text)
        raw = list(self._jieba.tokenize(simplified, HMM=False))
        tokens: list[Token] = []
        i = 0
        while i < len(raw):
            word, start, end = raw[i]
            if _LATIN.match(word):
                while i + 1 < len(raw) and _LATIN.match(raw[i + 1][0]):
                    i += 1
                    end = raw[i][2]
                tokens.extend(self._latin(simplified[start:end], start))
            elif _PUNCT.match(word):
                tokens.append(Token(word, "punct", start=start, end=end))
            else:
                tokens.append(self._word(word, start, end))
            i += 1
        return simplified, _merge_unknown(tokens, simplified)

    def _word(self, word: str, start: int, end: int) -> Token:
        entry = self.vocabulary.get(word)
        if entry is None:
            role = "stop" if word.isspace() else "unknown"
            return Token(word, role, start=start, end=end)
        kind = entry.kind
        role = "heard" if kind in HEARD_KINDS else kind
        return Token(word, role, list(entry.english), list(entry.calls), kind, start, end)

    def _latin(self, run: str, offset: int) -> list[Token]:
        """A Latin run: English kept in place (known words take their vocabulary role), negations split out."""
        tokens: list[Token] = []
        pos = 0
        for match in [*_ENGLISH_NEGATION.finditer(run), None]:
            stop = match.start() if match else len(run)
            piece = run[pos:stop].strip(" -.'&")
            if piece:
                start = offset + run.index(piece, pos)
                tokens.append(self._english(piece, start))
            if match:
                tokens.append(Token(match.group(), "neg", start=offset + match.start(), end=offset + match.end()))
                pos = match.end()
        return tokens

    def _english(self, phrase: str, start: int) -> Token:
        end = start + len(phrase)
        listed = self.vocabulary.get(phrase) if " " not in phrase else None
        if listed is not None:  # Latin words in the vocabulary: KTV, CNC, BGM...
            return self._word(phrase, start, end)
        entry = self.vocabulary.english_entry(phrase)
        if entry is None or entry.kind in ("stop", "neg", "conj"):
            return Token(phrase, "english", [phrase], kind="thing", start=start, end=end)
        role = "heard" if entry.kind in HEARD_KINDS else entry.kind
        return Token(phrase, role, [phrase], list(entry.calls), entry.kind, start, end)


def _merge_unknown(tokens: list[Token], text: str) -> list[Token]:
    """Adjacent unknown pieces become one span ("某某"), reported whole."""
    merged: list[Token] = []
    for token in tokens:
        if token.role == "unknown" and merged and merged[-1].role == "unknown" and merged[-1].end == token.start:
            merged[-1].end = token.end
            merged[-1].text = text[merged[-1].start : token.end]
        else:
            merged.append(token)
    return merged


@functools.cache
def get_segmenter() -> Segmenter:
    """The process-wide segmenter, built on first use (a race at start-up at worst builds it twice)."""
    return Segmenter(get_vocabulary())
