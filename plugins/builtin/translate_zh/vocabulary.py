"""The bilingual sound vocabulary (zh_en.tsv): loading, validation and lookups, cached once per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

VOCABULARY_PATH = Path(__file__).with_name("zh_en.tsv")

#: Every kind a row may carry. sound, fault and event are all "what is heard"; they differ in how
#: they compose with a thing (events are complete phrases and take no "... from a thing" form).
KINDS = frozenset({"thing", "call", "sound", "fault", "event", "modifier", "suffix", "place", "conj", "neg", "stop"})
HEARD_KINDS = frozenset({"sound", "fault", "event"})
#: Kinds whose English column is "-" (the word is dropped or only steers the grammar).
SILENT_KINDS = frozenset({"neg", "stop"})


class VocabularyError(ValueError):
    """A malformed row in the vocabulary file; the message names the line."""


@dataclass
class Entry:
    """Everything the vocabulary says about one Chinese word: its English per kind, in file order."""

    zh: str
    by_kind: dict[str, list[str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The word's grammatical role: its first kind in the file that is not ``call``."""
        for kind in self.by_kind:
            if kind != "call":
                return kind
        return "thing"

    @property
    def english(self) -> list[str]:
        """English phrasings for the word's main kind, best first."""
        return self.by_kind.get(self.kind, [])

    @property
    def calls(self) -> list[str]:
        """The typical sound of a thing ("dog barking" for 狗), empty for most words."""
        return self.by_kind.get("call", [])


@dataclass
class Vocabulary:
    """The loaded vocabulary: Chinese entries, and an English -> entry index for mixed queries."""

    entries: dict[str, Entry]
    rows: int
    by_english: dict[str, Entry] = field(default_factory=dict)

    def get(self, word: str) -> Entry | None:
        """The entry for a Chinese (or listed Latin, e.g. "KTV") word, or None."""
        return self.entries.get(word) or self.entries.get(word.upper())

    def english_entry(self, phrase: str) -> Entry | None:
        """The entry whose English is ``phrase`` (case-insensitive), so "dog" in "dog 叫声" is a thing."""
        return self.by_english.get(phrase.strip().lower())


def parse_row(line: str, lineno: int) -> tuple[str, str, str] | None:
    """One TSV line as (zh, en, kind), None for comments and blank lines; raises VocabularyError."""
    line = line.rstrip("\r\n")
    if not line.strip() or line.startswith("#"):
        return None
    parts = line.split("\t")
    if len(parts) != 3:
        raise VocabularyError(f"zh_en.tsv line {lineno}: expected 3 tab-separated columns, got {len(parts)}")
    zh, en, kind = (p.strip() for p in parts)
    if not zh or not en or " " in zh:
        raise VocabularyError(f"zh_en.tsv line {lineno}: empty column or a space in the Chinese word")
    if kind not in KINDS:
        raise VocabularyError(f"zh_en.tsv line {lineno}: unknown kind {kind!r}")
    if (en == "-") != (kind in SILENT_KINDS):
        raise VocabularyError(f"zh_en.tsv line {lineno}: en must be '-' exactly for kinds neg and stop")
    if "{}" in en and kind not in HEARD_KINDS:
        raise VocabularyError(f"zh_en.tsv line {lineno}: only sound/fault/event rows may hold a {{}} slot")
    return zh, en, kind


def load_vocabulary(path: Path = VOCABULARY_PATH) -> Vocabulary:
    """Read and validate the vocabulary file."""
    entries: dict[str, Entry] = {}
    rows = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            row = parse_row(line, lineno)
            if row is None:
                continue
            zh, en, kind = row
            rows += 1
            phrasings = entries.setdefault(zh, Entry(zh)).by_kind.setdefault(kind, [])
            if en not in phrasings:
                phrasings.append(en)
    by_english: dict[str, Entry] = {}
    for entry in entries.values():
        if entry.kind in SILENT_KINDS or entry.kind == "conj":
            continue
        for en in entry.english:
            if "{}" not in en:
                by_english.setdefault(en.lower(), entry)
    return Vocabulary(entries=entries, rows=rows, by_english=by_english)


@functools.cache
def get_vocabulary() -> Vocabulary:
    """The shipped vocabulary, loaded on first use (a race at start-up at worst loads it twice)."""
    return load_vocabulary()
