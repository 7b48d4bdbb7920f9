"""Query segmentation: Traditional to Simplified, jieba over the vocabulary, tokens tagged with their role."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field

from .dictionary import GeneralDictionary, get_dictionary
from .vocabulary import HEARD_KINDS, Vocabulary, get_vocabulary

#: Han, kana and Hangul: text with none of these is not ours to translate.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN = re.compile(r"^[A-Za-z0-9\s\-.'&+#%]+$")
_PUNCT = re.compile(r"^[，,；;。！!？?、/|:：\n\r\t()（）\[\]【】「」『』“”\"《》…~～]+$")
_ENGLISH_NEGATION = re.compile(r"\b(?:but not|and not|not|except|without|excluding|no)\b", re.IGNORECASE)
#: jieba weights: a sound term beats a general word over the same span, but one general word beats two
#: sound terms (紧急 "emergency" before 紧 + 急 "tight rapid"), and anything beats an unknown character.
_WORD_FREQ = 2000
_GENERAL_FREQ = 100
#: A one-character modifier (紧 "tight", 急 "rapid") is the most ambiguous sound term: general words outrank
#: it; and one-character general words come last.
_CHAR_FREQ = 50
_GENERAL_CHAR_FREQ = 10
#: Kinds that make a sound-term split of a general word compositional: 铁门 -> 铁 + 门 "metal door",
#: 风声 -> 风 + 声 "wind sound"; a split into modifiers only (紧 + 急) is not, and the general word stays.
_COMPOSING_KINDS = frozenset({"thing", "sound", "fault", "event", "suffix", "call", "place"})


@dataclass
class Token:
    """One segment of a query: its surface text, role and English phrasings.

    ``role`` is thing, heard (sound/fault/event), action (a general-dictionary verb, English as "-ing"),
    modifier, suffix, place, conj, neg, stop, punct, english (a Latin run kept as typed) or unknown
    (no English found). ``source`` says where the English came from: ``vocab``, ``dict`` or empty.
    """

    text: str
    role: str
    english: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    kind: str = ""
    start: int = 0
    end: int = 0
    source: str = ""


class Segmenter:
    """A private jieba tokenizer over the sound vocabulary and the general dictionary, plus OpenCC t2s."""

    def __init__(self, vocabulary: Vocabulary, general: GeneralDictionary | None = None):
        import jieba
        from opencc import OpenCC

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self.vocabulary = vocabulary
        self.general = general if general is not None else GeneralDictionary({})
        self._t2s = OpenCC("t2s")
        self._jieba = jieba.Tokenizer()
        # Built in memory from both word lists: no jieba cache file, nothing printed.
        words = [w for w in vocabulary.entries if CJK.search(w)]
        freq = {
            w: _CHAR_FREQ if len(w) == 1 and vocabulary.entries[w].kind == "modifier" else _WORD_FREQ for w in words
        }
        longest = max((len(w) for w in words), default=1)
        for w in self.general.entries:
            if w not in freq and not self._composes(w, longest):
                freq[w] = _GENERAL_FREQ if len(w) > 1 else _GENERAL_CHAR_FREQ
        self._jieba.FREQ, self._jieba.total = _prefix_dict(freq)
        self._jieba.initialized = True

    def _composes(self, word: str, longest: int) -> bool:
        """True when sound terms cover ``word`` whole and one of them is a thing or a sound (see _COMPOSING_KINDS)."""
        if len(word) < 2:
            return False
        # best[i]: can word[:i] be covered, and does the cover hold a composing kind
        reach: list[bool | None] = [None] * (len(word) + 1)
        reach[0] = False
        for i in range(len(word)):
            if reach[i] is None:
                continue
            for j in range(i + 1, min(len(word), i + longest) + 1):
                if j - i == len(word):
                    continue  # the whole word is not in the vocabulary (checked by the caller)
                entry = self.vocabulary.entries.get(word[i:j])
                if entry is not None:
                    composing = bool(reach[i]) or entry.kind in _COMPOSING_KINDS
                    reach[j] = composing if reach[j] is None else (reach[j] or composing)
        return bool(reach[len(word)])

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
            if word.isspace():
                return Token(word, "stop", start=start, end=end)
            return self._general(word, start, end)
        kind = entry.kind
        role = "heard" if kind in HEARD_KINDS else kind
        return Token(
            word,
            role,
            self._with_general(word, kind, list(entry.english)),
            list(entry.calls),
            kind,
            start,
            end,
            "vocab",
        )

    def _with_general(self, word: str, kind: str, english: list[str]) -> list[str]:
        """A sound term's English, plus the general dictionary's sense when it names something the term's
        English does not (推土机: "construction noise", then "bulldozer"; 跳水: "swimming", then "diving"):
        the term's own phrasing stays first."""
        if kind not in ("thing", *HEARD_KINDS) or len(word) < 2:
            return english
        general = self.general.get(word)
        if general is None or general.pos == "adj" or (general.pos == "verb" and kind not in HEARD_KINDS):
            return english
        sense = gerund(general.senses[0]) if general.pos == "verb" else general.senses[0]
        known = {w for en in english for w in re.findall(r"[a-z]+", en.lower())}
        # Any shared word with any of the general senses: the two already agree (压缩机 compressor).
        if any(w in known or w.rstrip("s") in known for g in general.senses for w in re.findall(r"[a-z]+", g.lower())):
            return english
        return [english[0], sense, *english[1:]]

    def _general(self, word: str, start: int, end: int) -> Token:
        """A word only the general dictionary knows: verbs act ("scolding"), adjectives modify, the rest are things."""
        entry = self.general.get(word)
        if entry is None:
            return Token(word, "unknown", start=start, end=end)
        if entry.pos == "verb":
            return Token(
                word, "action", [gerund(s) for s in entry.senses], kind="action", start=start, end=end, source="dict"
            )
        role = "modifier" if entry.pos == "adj" else "thing"
        return Token(word, role, list(entry.senses), kind=role, start=start, end=end, source="dict")

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


def _prefix_dict(freq: dict[str, int]) -> tuple[dict[str, int], int]:
    """jieba's prefix dictionary (every word, and each of its prefixes at 0) and the total count."""
    pfdict = dict(freq)
    for word in freq:
        for i in range(1, len(word)):
            pfdict.setdefault(word[:i], 0)
    return pfdict, sum(freq.values())


_VOWELS = "aeiou"


def gerund(verb: str) -> str:
    """The "-ing" form of a verb phrase's first word: scold -> scolding, make soy milk -> making soy milk."""
    first, _, rest = verb.partition(" ")
    w = first.lower()
    if w == "be":
        ing = "being"
    elif w.endswith("ie"):
        ing = first[:-2] + "ying"
    elif w.endswith("e") and not w.endswith(("ee", "ye", "oe")) and len(w) > 2:
        ing = first[:-1] + "ing"
    elif (
        len(w) >= 3
        and w[-1] not in _VOWELS + "wxy"
        and w[-2] in _VOWELS
        and w[-3] not in _VOWELS
        and sum(1 for a, b in zip(" " + w, w) if b in _VOWELS and a not in _VOWELS) == 1
    ):
        ing = first + first[-1] + "ing"  # one syllable ending consonant-vowel-consonant: stop -> stopping
    else:
        ing = first + "ing"
    return f"{ing} {rest}".strip()


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
    return Segmenter(get_vocabulary(), get_dictionary())
