"""What is said: ``--said`` queries over transcripts (parsing, the full-text search, highlights, rank fusion).

A query is words, ``"quoted phrases"``, ``prefix*`` words and ``AND`` / ``OR`` / ``NOT`` (upper case) with
parentheses; words side by side must all be said (AND). Chinese is segmented with the jieba dictionary the
query translator uses, each word matched as its run of characters (so 投诉 finds 客户投诉); English and other
scripts are case- and accent-folded. Stop words (the, a, 的, 了...) are dropped outside phrases. The query is
searched in the transcripts as typed, never translated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from indexer import transcript_store
from indexer.errors import BadInput
from indexer.fulltext import _CJK, FullTextIndex, fold_tokens, phrase_expression

RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al. 2009)
FUSE_DEPTH = 200  # how deep each ranking is read before fusing
STOP_WORDS = frozenset(
    "a an the and or of to in on at is are was were be been it this that these those i you he she we they "
    "me my your his her our their for with as by from but not no do does did so if then than there here "
    "的 了 是 在 和 与 也 就 都 而 及 着 吗 呢 吧 啊 呀 哦 嗯 么 之 其 这 那 个 我 你 他 她 它 们".split()
)
_LEX = re.compile(r'\s*(?:(?P<quote>")|(?P<open>\()|(?P<close>\))|(?P<word>[^\s"()]+))')
OPERATORS = ("AND", "OR", "NOT")


@dataclass
class Leaf:
    """One thing that must be said: tokens in a row (a phrase) or a prefix of one token."""

    tokens: list[str]
    prefix: bool = False

    def fts(self) -> str:
        return phrase_expression(self.tokens, self.prefix)


@dataclass
class SaidQuery:
    """A parsed ``--said`` query: the FTS5 expression and the leaves that highlight a match."""

    text: str
    expression: str
    leaves: list[Leaf] = field(default_factory=list)


@lru_cache(maxsize=1)
def _segmenter():
    from plugins.builtin.translate_zh.segment import get_segmenter

    return get_segmenter()


def _words(text: str) -> list[str]:
    """A term split into words: CJK runs segmented with jieba (the translator's dictionary), the rest as it is."""
    out: list[str] = []
    for part in re.split(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)", text):
        if not part:
            continue
        if _CJK.match(part):
            _, tokens = _segmenter().segment(part)
            out += [t.text for t in tokens]
        else:
            out += [t for t, _, _ in fold_tokens(part)]
    return out


def _term(word: str, leaves: list[Leaf], negated: bool) -> str | None:
    prefix = word.endswith("*") and len(word) > 1
    words = [w for w in _words(word.rstrip("*")) if w]
    kept = [w for w in words if w.casefold() not in STOP_WORDS]
    if not kept:
        return None
    parts = []
    for i, w in enumerate(kept):
        leaf = Leaf([t for t, _, _ in fold_tokens(w)], prefix=prefix and i == len(kept) - 1 and not _CJK.search(w))
        if not leaf.tokens:
            continue
        if not negated:
            leaves.append(leaf)
        parts.append(leaf.fts())
    return " AND ".join(parts) if parts else None


def _phrase(text: str, leaves: list[Leaf], negated: bool) -> str | None:
    tokens = [t for t, _, _ in fold_tokens(text)]
    if not tokens:
        return None
    leaf = Leaf(tokens)
    if not negated:
        leaves.append(leaf)
    return leaf.fts()


class _Parser:
    """or := and (OR and)*;  and := unit ((AND)? unit | NOT unit)*;  unit := phrase | word | ( or )."""

    def __init__(self, text: str):
        self.text = text
        self.items = self._lex(text)
        self.i = 0
        self.leaves: list[Leaf] = []

    def _lex(self, text: str) -> list[tuple[str, str]]:
        items, pos = [], 0
        while pos < len(text):
            m = _LEX.match(text, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            if m.group("quote"):
                end = text.find('"', pos)
                if end < 0:
                    raise BadInput(
                        f'the --said query {text!r} has an unbalanced quote: close the phrase with a second " '
                        "or drop the quote (e.g. --said '\"wrong number\" OR 退款')"
                    )
                items.append(("phrase", text[pos:end]))
                pos = end + 1
            elif m.group("open"):
                items.append(("(", "("))
            elif m.group("close"):
                items.append((")", ")"))
            elif m.group("word"):
                w = m.group("word")
                items.append(("op", w) if w in OPERATORS else ("word", w))
        return items

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def parse(self) -> str | None:
        expr = self._or()
        if self.peek() is not None:
            raise BadInput(f"cannot read the --said query {self.text!r} at {self.peek()[1]!r}: check the parentheses")  # type: ignore[index]
        return expr

    def _or(self, negated: bool = False) -> str | None:
        parts = [self._and(negated)]
        while self.peek() == ("op", "OR"):
            self.i += 1
            self._needs_more("OR")
            parts.append(self._and(negated))
        kept = [p for p in parts if p]
        return None if not kept else kept[0] if len(kept) == 1 else "(" + " OR ".join(kept) + ")"

    def _and(self, negated: bool) -> str | None:
        positive: list[str] = []
        negative: list[str] = []
        while True:
            item = self.peek()
            if item is None or item in (("op", "OR"), (")", ")")):
                break
            if item == ("op", "AND"):
                self.i += 1
                self._needs_more("AND")
                continue
            if item == ("op", "NOT"):
                self.i += 1
                unit = self._unit(not negated)
                if unit:
                    negative.append(unit)
                continue
            unit = self._unit(negated)
            if unit:
                positive.append(unit)
        if negative and not positive:
            raise BadInput(
                f"the --said query {self.text!r} only says what must not be said: "
                "put NOT after something that must be (e.g. --said '退款 NOT 投诉')"
            )
        if not positive:
            return None
        expr = " AND ".join(positive)
        for n in negative:
            expr = f"({expr}) NOT {n}"
        return expr if len(positive) == 1 and not negative else f"({expr})"

    def _needs_more(self, operator: str) -> None:
        if self.peek() in (None, (")", ")"), ("op", "OR"), ("op", "AND")):
            raise BadInput(f"the --said query {self.text!r} has {operator} with nothing after it: add a word after it")

    def _unit(self, negated: bool) -> str | None:
        item = self.peek()
        if item is None:
            raise BadInput(f"the --said query {self.text!r} ends with an operator: add a word after it")
        self.i += 1
        kind, value = item
        if kind == "phrase":
            return _phrase(value, self.leaves, negated)
        if kind == "word":
            return _term(value, self.leaves, negated)
        if kind == "(":
            inner = self._or(negated)
            if self.peek() != (")", ")"):
                raise BadInput(f"the --said query {self.text!r} has an unbalanced parenthesis: close it with )")
            self.i += 1
            return inner
        raise BadInput(
            f"cannot read the --said query {self.text!r} at {value!r}: an operator needs words on both sides"
        )


def parse_said(text: str) -> SaidQuery:
    """A ``--said`` query as an FTS5 expression; BadInput in one line for unbalanced quotes or only stop words."""
    text = str(text or "").strip()
    if not text:
        raise BadInput("the --said query is empty: give words that are said, e.g. --said '退款 OR 投诉'")
    parser = _Parser(text)
    expression = parser.parse()
    if not expression or not parser.leaves:
        raise BadInput(
            f"the --said query {text!r} has only stop words (such as 'the', 'a', '的', '了'): "
            "add a word that carries meaning"
        )
    return SaidQuery(text, expression, parser.leaves)


def highlights(text: str, leaves: Sequence[Leaf]) -> list[list[int]]:
    """[[start_char, end_char], ...] of every place ``text`` says one of the leaves (merged, in order)."""
    tokens = fold_tokens(text)
    spans = []
    for leaf in leaves:
        n = len(leaf.tokens)
        for i in range(len(tokens) - n + 1):
            window = tokens[i : i + n]
            last_ok = window[-1][0].startswith(leaf.tokens[-1]) if leaf.prefix else window[-1][0] == leaf.tokens[-1]
            if last_ok and all(window[j][0] == leaf.tokens[j] for j in range(n - 1)):
                spans.append([window[0][1], window[-1][2]])
    spans.sort()
    merged: list[list[int]] = []
    for s in spans:
        if merged and s[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s[1])
        else:
            merged.append(list(s))
    return merged


# -- the index side ---------------------------------------------------------------------------
def fulltext_of(sx) -> FullTextIndex:
    """The full-text index of an open `SoundIndex`, opened once and caught up with DuckDB on every call."""
    ft = sx.__dict__.get("_fulltext")
    if ft is None:
        ft = sx.__dict__["_fulltext"] = FullTextIndex(sx.store.index_dir)
    if not transcript_store.version(sx.store.cursor())[1]:
        raise BadInput(
            f"no transcripts in {sx.store.index_dir}: transcribe it first "
            f"(`soundsift transcribe --index {sx.store.index_dir} --model openai/whisper-small`)"
        )
    ft.sync(sx.store)
    return ft


def said_window_ids(sx, text: str) -> list[int]:
    """Every window whose transcript says ``text`` (a filter)."""
    return fulltext_of(sx).window_ids(parse_said(text).expression)


def said_of(sx, window_ids: Sequence[int], query: SaidQuery) -> dict[int, dict]:
    """window id -> ``{text, highlights, start, end, model}`` (the segment that says it best, its own times)."""
    by_window: dict[int, list] = {}
    for seg in transcript_store.segments_of_windows(sx.store.cursor(), list(window_ids)):
        by_window.setdefault(seg.window_id, []).append(seg)
    out = {}
    for wid, segs in by_window.items():
        scored = [(highlights(s.text, query.leaves), s) for s in segs]
        marks, seg = max(scored, key=lambda x: len(x[0]))
        out[wid] = {
            "text": seg.text,
            "highlights": marks,
            "start": round(seg.start, 4),
            "end": round(seg.end, 4),
            "model": seg.alias,
        }
    return out


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: (id, sum of 1 / (k + rank)) over the rankings, best first (ties by first seen)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda x: -x[1])


def said_allowed(sx, allowed, text: str):
    """The window ids of ``allowed`` (None: every window) whose transcript says ``text``, as an int64 array."""
    import numpy as np

    ids = np.asarray(sorted(said_window_ids(sx, text)), dtype=np.int64)
    return ids if allowed is None else np.intersect1d(np.asarray(allowed, dtype=np.int64), ids)


def attach_said(sx, results, text: str) -> None:
    """Give every hit whose window says ``text`` its `SaidHit` (text, highlights, the segment's times)."""
    from search.core.results import SaidHit

    query = parse_said(text)
    ids = sorted({h.window_id for r in results for h in r.hits})
    found = said_of(sx, ids, query)
    for r in results:
        for h in r.hits:
            said = found.get(h.window_id)
            if said is not None and said["highlights"]:
                h.said = SaidHit(**{k: said[k] for k in ("text", "highlights", "start", "end")})


def _hits(sx, ranked: list[tuple[int, float]]):
    from search.core.results import SearchHit

    rows = sx.store.window_rows([wid for wid, _ in ranked])
    return [
        SearchHit(
            path=rows[w][0], start=rows[w][1], end=rows[w][2], score=round(score, 6), window_id=w, file_id=rows[w][3]
        )
        for w, score in ranked
        if w in rows
    ]


def said_search(sx, queries, k: int, filters, fuse: str | None, strict, prompt_template, localize):
    """``search`` when what is said ranks: no sound query (bm25 over transcripts) or ``fuse="rrf"``; else None.

    ``localize`` is not applied to such rankings (a said-only hit has no sound to place)."""
    from search.core.results import QueryResult, SearchResponse

    if fuse not in (None, "rrf"):
        raise BadInput(f"--fuse takes rrf (reciprocal rank fusion of sound and said), not {fuse!r}")
    said = filters.said if filters is not None else None
    if fuse and not said:
        raise BadInput("--fuse rrf fuses the sound ranking with what is said: give --said too")
    if queries and not fuse:
        return None  # filter by what is said, rank by sound: the ordinary search, restricted
    assert said is not None
    if k < 1:
        raise BadInput("k must be at least 1")
    query = parse_said(said)
    rest = filters.model_copy(update={"said": None})  # type: ignore[union-attr]
    allowed = None
    if not rest.is_empty():
        where, params = rest.to_sql(sx.store.tag_models())
        allowed = set(int(i) for i in sx.store.window_ids_where(where, params))
    depth = FUSE_DEPTH if fuse else k
    matches = fulltext_of(sx).search(query.expression, None if allowed is not None else depth)
    said_ranked = [(m.window_id, -m.rank) for m in matches if allowed is None or m.window_id in allowed][:depth]
    if not fuse:
        results = [QueryResult(query=said, texts=[], hits=_hits(sx, said_ranked))]
    else:
        sound = sx.search(queries, k=max(depth, k), filters=rest, strict=strict, prompt_template=prompt_template)
        results = []
        for r in sound.results:
            fused = rrf([[h.window_id for h in r.hits], [w for w, _ in said_ranked]])[:k]
            r.hits = _hits(sx, fused) if r.texts else []
            results.append(r)
    attach_said(sx, results, said)
    return SearchResponse(results=results)
