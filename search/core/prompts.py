"""Query preparation: translation hooks, "X but not Y", the prompt template, and one vector per query or label."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import BadInput
from indexer.model import TextEmbedder
from plugins.contract import LabelTexts, QueryTranslation
from plugins.manager import PluginHost

if TYPE_CHECKING:
    from indexer.settings import Settings

MAX_QUERY_CHARS = 1000
_NEGATION_CONTINUES = ("但不是", "而不是", "不是", "但", "除了", "but not", "and not", "except", "without")
_BUT_NOT = re.compile(r"\s+(?:but|and)\s+not\s+|\s+except\s+|\s+without\s+", re.IGNORECASE)
#: Words that say nothing about what is heard: a translated phrasing made only of these is not embedded
#: ("求救声" with 求救 unknown would otherwise search for "sound", and "主管训斥员工" for "people").
FILLER_WORDS = frozenset(
    {
        "sound",
        "sounds",
        "people",
        "person",
        "persons",
        "someone",
        "somebody",
        "something",
        "thing",
        "things",
        "stuff",
        "a",
        "an",
        "the",
        "of",
        "from",
        "some",
        "and",
        "or",
        "with",
        "in",
        "on",
        "at",
        "by",
        "to",
        "heard",
    }
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass
class PreparedQuery:
    """A query or label with the exact prompted strings that will be embedded."""

    query: str
    texts: list[str]
    negatives: list[str]
    untranslated: list[str]

    def as_label(self) -> LabelTexts:
        return LabelTexts(self.query, tuple(self.texts), tuple(self.negatives))


def _english(text: str) -> QueryTranslation:
    positive, *negatives = _BUT_NOT.split(text)
    return QueryTranslation(texts=[positive.strip()], negatives=[n.strip() for n in negatives if n.strip()])


def only_filler(phrase: str) -> bool:
    """True when a phrasing has no word besides filler ("sound", "people", "a sound of something")."""
    return all(w in FILLER_WORDS for w in _WORD.findall(phrase.lower()))


def prepare_query(
    text: str,
    plugins: PluginHost,
    template: str,
    plugin_settings: dict,
    strict: bool = False,
    keep_untranslated: bool = False,
) -> PreparedQuery:
    """Translate (hook ``translate_query``), split negatives, and wrap every phrasing in the prompt template.

    A translated phrasing made only of filler words is dropped. A query left with no English raises
    :class:`BadInput`, unless ``keep_untranslated``: then it comes back with no texts and its parts in
    ``untranslated`` (search gives it no hits and still runs the other queries). ``strict`` raises
    whenever anything is untranslated.
    """
    query = (text or "").strip()
    if not query:
        raise BadInput("empty query or label")
    if len(query) > MAX_QUERY_CHARS:
        raise BadInput(f"query longer than {MAX_QUERY_CHARS} characters")
    translated = plugins.translate_query(query, plugin_settings)
    translation = translated or _english(query)
    texts = [t for t in translation.texts if t.strip()]
    negatives = [t for t in translation.negatives if t.strip()]
    untranslated = list(translation.untranslated)
    if translated is not None:  # what the user typed in English is embedded as typed, filler or not
        texts = [t for t in texts if not only_filler(t)]
        negatives = [t for t in negatives if not only_filler(t)]
        if not texts and not untranslated:
            untranslated = [query]  # nothing but filler: the whole query had no English worth embedding
    if untranslated and strict:
        raise BadInput(f"no English found for: {', '.join(untranslated)} (in {query!r})")
    if not texts:
        if not keep_untranslated:
            raise BadInput(f"no English found for: {', '.join(untranslated) or query}")
        negatives = []
        untranslated = untranslated or [query]
    return PreparedQuery(
        query=query,
        texts=[template.format(t) for t in texts],
        negatives=[template.format(t) for t in negatives],
        untranslated=untranslated,
    )


def combined_vectors(encoder: TextEmbedder, groups: list[list[str]]) -> np.ndarray:
    """One unit vector per group: the mean of its texts' unit embeddings, renormalised (one text: that text's)."""
    flat = [t for g in groups for t in g]
    if not flat:
        return np.zeros((len(groups), encoder.embedding_dim), np.float32)
    vectors = encoder.embed_texts(flat)
    out = np.zeros((len(groups), vectors.shape[1]), np.float32)
    i = 0
    for row, group in enumerate(groups):
        if group:
            mean = vectors[i : i + len(group)].mean(axis=0)
            out[row] = mean / max(np.linalg.norm(mean), 1e-12)
        i += len(group)
    return out


def parse_labels(raw: list[str] | str) -> list[str]:
    """Labels from "a, b, c" strings (also ， and ;), in order, without duplicates or blanks."""
    items = [raw] if isinstance(raw, str) else list(raw)
    labels: list[str] = []
    for item in items:
        parts: list[str] = []
        for part in re.split(r"[,，;；\n]", item):
            part = part.strip()
            # "空调声，但不是压缩机启动声" is one label with a negative, not two labels.
            if parts and part.lower().startswith(_NEGATION_CONTINUES):
                parts[-1] = f"{parts[-1]}，{part}"
            elif part:
                parts.append(part)
        labels.extend(p for p in parts if p not in labels)
    if not labels:
        raise BadInput('empty label list: give labels like --labels "glass breaking, dog barking"')
    return labels


def prepare_all(
    texts: list[str], plugins: PluginHost, settings: Settings, strict: bool | None, keep_untranslated: bool = False
) -> list[PreparedQuery]:
    """Each text prepared for embedding: translated (hooks), split at "but not", put in the prompt template."""
    strict = settings.strict_translation if strict is None else strict
    return [
        prepare_query(t, plugins, settings.prompt_template, settings.plugin_view(), strict, keep_untranslated)
        for t in texts
    ]


def named_labels(names: list[str], prepared: list[PreparedQuery], label_names: list[str] | None) -> list[str]:
    """The rows' label names: ``label_names`` (a label set's classes, one per text) when given, else the labels."""
    if label_names is None:
        return names
    if len(label_names) != len(prepared):
        raise BadInput(f"{len(label_names)} label names for {len(prepared)} label texts")
    for p, name in zip(prepared, label_names):
        p.query = name
    return list(label_names)
