"""The full-text index over transcripts: SQLite FTS5, derived from DuckDB like FAISS is, rebuilt or caught up on open.

Why FTS5: Python's own sqlite3 ships it (no dependency, no native wheel to match), it is a real inverted index
with phrase, prefix, boolean queries and bm25 ranking, and a query over a million segments takes milliseconds.
What FTS5 lacks (a Chinese word breaker) is done here before the text reaches it: every text is folded into
tokens by `fold_tokens` (CJK: one token per character, Traditional folded to Simplified; other scripts: runs
of letters and digits, case- and accent-folded), stored as two columns (`index_tokens`): ``body``, each run
of CJK characters as its overlapping bigrams beside the other words, and ``chars``, the CJK characters alone.
A query is segmented into words with jieba and each word matched as its run of characters, i.e. the phrase
of its bigrams (one character: in ``chars``; `search.core.said`), so 投诉 finds 客户投诉 with one selective
token and a phrase stays a phrase.

The file ``transcripts.fts.sqlite`` beside the DuckDB file records the highest transcript ``seq`` it holds and
its row count; on open, newer transcripts are added, and a count that still differs (transcripts of windows
that left the index) rebuilds it into a new file renamed over the old one. Deleting the file loses nothing.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from indexer import transcript_store

FTS_NAME = "transcripts.fts.sqlite"
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SINGLE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
FORMAT = "2"  # body = CJK bigrams + other words, chars = CJK characters; another format is rebuilt
_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS seg USING fts5(body, chars, tokenize='unicode61 remove_diacritics 2')",
    "CREATE TABLE IF NOT EXISTS keys (rowid INTEGER PRIMARY KEY, window_id INTEGER NOT NULL, model TEXT NOT NULL, "
    "UNIQUE (window_id, model))",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=65536)
def _fold_word(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _simplified(text: str) -> str:
    """Traditional Chinese as Simplified, character for character (the text as it is when a conversion would not be)."""
    if not _CJK.search(text):
        return text
    simplified = _t2s().convert(text)
    return simplified if len(simplified) == len(text) else text


def fold(word: str) -> str:
    """Case- and accent-folded (NFKD without combining marks, casefolded); Traditional Chinese as Simplified."""
    return _fold_word(_simplified(word))


def fold_tokens(text: str) -> list[tuple[str, int, int]]:
    """(folded token, start char, end char) for every token of ``text``: CJK one per character, else letter runs."""
    simplified = _simplified(text)
    out = []
    for m in _TOKEN.finditer(simplified):
        token = m.group(0)
        out.append((token if len(token) == 1 and _CJK.match(token) else _fold_word(token), m.start(), m.end()))
    return out


def is_cjk(token: str) -> bool:
    """True for a one-character CJK (Han, kana, hangul) token."""
    return len(token) == 1 and bool(_SINGLE.match(token))


def index_tokens(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(body, chars) tokens as FTS5 stores them: each run of CJK characters as its overlapping bigrams (one
    character alone as itself) beside the other words, in order; and every CJK character on its own.

    Bigrams make a Chinese word one selective token (投诉) instead of a phrase of very common characters,
    and keep substring semantics: a word of two or more characters is found inside any longer run."""
    body: list[str] = []
    chars: list[str] = []
    run: list[str] = []

    def flush() -> None:
        body.extend(run if len(run) == 1 else [run[i] + run[i + 1] for i in range(len(run) - 1)])
        run.clear()

    for token in tokens:
        if is_cjk(token):
            run.append(token)
            chars.append(token)
            continue
        if run:
            flush()
        body.append(token)
    if run:
        flush()
    return body, chars


def columns_of(text: str) -> tuple[str, str]:
    """The text's (body, chars) columns for FTS5."""
    body, chars = index_tokens([t for t, _, _ in fold_tokens(text)])
    return " ".join(body), " ".join(chars)


def phrase_expression(tokens: list[str], prefix: bool = False) -> str:
    """The FTS5 expression for folded ``tokens`` said in a row (``prefix``: the last one a prefix)."""
    if len(tokens) == 1 and is_cjk(tokens[0]):
        return f'chars : "{tokens[0]}"'
    body, _ = index_tokens(tokens)
    return f'body : "{" ".join(body)}"' + (" *" if prefix else "")


@dataclass(frozen=True)
class Match:
    """A window whose transcript matches, with its bm25 rank (lower is better) and the model that heard it."""

    window_id: int
    model: str
    rank: float


class FullTextIndex:
    """The FTS5 file of one index directory; thread-safe, caught up with DuckDB by `sync`."""

    def __init__(self, index_dir: Path):
        self.path = Path(index_dir) / FTS_NAME
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
            for statement in _SCHEMA:
                self._con.execute(statement)
            self._con.commit()
        return self._con

    def _meta(self, con: sqlite3.Connection) -> tuple[int, int]:
        values = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if values and values.get("format") != FORMAT:
            raise sqlite3.DatabaseError(f"full-text format {values.get('format')}, not {FORMAT}")
        return int(values.get("seq", 0)), int(values.get("count", 0))

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def sync(self, store) -> None:
        """Bring the file up to the transcripts DuckDB holds now (add what is new; rebuild after deletions)."""
        cur = store.cursor()
        seq, count = transcript_store.version(cur)
        with self._lock:
            try:
                con = self._connect()
                have_seq, have_count = self._meta(con)
            except sqlite3.DatabaseError:  # a damaged derived file: rebuilt from DuckDB
                self.close()
                have_seq, have_count = -1, -1
            if (have_seq, have_count) == (seq, count):
                return
            if 0 <= have_seq <= seq:
                self._add(self._connect(), transcript_store.rows_since(cur, have_seq), seq)
                if self._meta(self._connect())[1] == count:
                    return
            self._rebuild(store)

    def _add(self, con: sqlite3.Connection, rows: list[tuple[int, str, str]], seq: int) -> None:
        """Insert (window id, model, text) rows, replacing what the file holds for the same window and model."""
        con.execute("BEGIN IMMEDIATE")
        try:
            before: dict[tuple[int, str], int] = {}
            ids = sorted({int(r[0]) for r in rows})
            for i in range(0, len(ids), 500):  # the rows already there for these windows (none in a fresh file)
                part = ids[i : i + 500]
                found = con.execute(
                    f"SELECT rowid, window_id, model FROM keys WHERE window_id IN ({','.join('?' * len(part))})", part
                )
                before.update({(int(w), str(m)): int(r) for r, w, m in found})
            next_id = int(con.execute("SELECT coalesce(max(rowid), 0) + 1 FROM keys").fetchone()[0])
            latest: dict[tuple[int, str], str] = {}
            for wid, model, text in rows:  # oldest first: the last text of a window and model wins
                latest[(int(wid), str(model))] = text
            new_keys, bodies = [], []
            for key, text in latest.items():
                rowid = before.get(key)
                if rowid is None:
                    rowid, next_id = next_id, next_id + 1
                    new_keys.append((rowid, *key))
                bodies.append((rowid, *columns_of(text)))
            con.executemany("DELETE FROM seg WHERE rowid = ?", [(before[k],) for k in latest if k in before])
            con.executemany("INSERT INTO keys (rowid, window_id, model) VALUES (?, ?, ?)", new_keys)
            con.executemany("INSERT INTO seg (rowid, body, chars) VALUES (?, ?, ?)", bodies)
            count = con.execute("SELECT count(*) FROM keys").fetchone()[0]
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('seq', ?), ('count', ?), ('format', ?)",
                (str(seq), str(count), FORMAT),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _rebuild(self, store) -> None:
        """Write a fresh file from every stored transcript, fsync it, and rename it over the old one."""
        self.close()
        tmp = self.path.with_name(f"{FTS_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(str(tmp))
        try:
            for statement in _SCHEMA:
                con.execute(statement)
            con.commit()
            seq, _ = transcript_store.version(store.cursor())
            self._add(con, transcript_store.rows_since(store.cursor(), 0), seq)
            con.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            con.close()
            tmp.unlink(missing_ok=True)

    def search(self, expression: str, limit: int | None = None) -> list[Match]:
        """Windows matching an FTS5 ``expression``, best bm25 first (a window heard by two models appears once)."""
        sql = "SELECT rowid, rank FROM seg WHERE seg MATCH ? ORDER BY rank"
        with self._lock:
            con = self._connect()
            if limit is None:
                ranked = con.execute(sql, (expression,)).fetchall()
            else:  # a few spare rows for windows two models heard
                ranked = con.execute(sql + " LIMIT ?", (expression, int(limit) * 2 + 8)).fetchall()
            keys = {}
            for i in range(0, len(ranked), 500):
                part = [r[0] for r in ranked[i : i + 500]]
                marks = ",".join("?" * len(part))
                keys.update(
                    {
                        r[0]: (r[1], r[2])
                        for r in con.execute(f"SELECT rowid, window_id, model FROM keys WHERE rowid IN ({marks})", part)
                    }
                )
        rows = [(*keys[rowid], rank) for rowid, rank in ranked if rowid in keys]
        seen: set[int] = set()
        out = []
        for wid, model, rank in rows:
            if wid not in seen:
                seen.add(wid)
                out.append(Match(int(wid), str(model), float(rank)))
        return out if limit is None else out[:limit]

    def window_ids(self, expression: str) -> list[int]:
        """Every window whose transcript matches ``expression`` (any order)."""
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT DISTINCT k.window_id FROM seg s JOIN keys k ON k.rowid = s.rowid WHERE seg MATCH ?",
                    (expression,),
                )
                .fetchall()
            )
        return [int(r[0]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT count(*) FROM keys").fetchone()[0])
