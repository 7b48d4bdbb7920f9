"""Coverage of the built-in Chinese translator: share of queries translated acceptably, per query set.

Run: .venv/bin/python benchmarks/zh_coverage.py [--set main|heldout|blind|all] [--quick] [--verbose]
Three sets, all by default: zh_queries.tsv (written with the sound vocabulary), zh_queries_heldout.tsv
(written apart from it, from ESC-50/UrbanSound8K/AudioSet classes and everyday complaints, then used for
tuning) and zh_queries_blind.tsv (written after tuning and never tuned on).
A query passes when every keyword (a/b = either) appears in one English phrasing, every negative
keyword in one negative phrasing, nothing is reported untranslated and no Chinese is left in a text.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from plugins.builtin.translate_zh import translate_chinese  # noqa: E402

QUERIES_PATH = Path(__file__).with_name("zh_queries.tsv")
HELDOUT_PATH = Path(__file__).with_name("zh_queries_heldout.tsv")
BLIND_PATH = Path(__file__).with_name("zh_queries_blind.tsv")
SETS = {"main": QUERIES_PATH, "heldout": HELDOUT_PATH, "blind": BLIND_PATH}
_HAN = re.compile(r"[\u3400-\u9fff]")


@dataclass
class BenchmarkQuery:
    """One benchmark row: a query and the English keywords an acceptable translation contains."""

    query: str
    keywords: list[list[str]]
    negative_keywords: list[list[str]]


@dataclass
class Outcome:
    """How one query fared: passed or the reason it did not, and the translation seen."""

    query: BenchmarkQuery
    passed: bool
    reason: str
    texts: list[str]
    negatives: list[str]


def _keywords(column: str) -> list[list[str]]:
    return [[alt.strip().lower() for alt in kw.split("/") if alt.strip()] for kw in column.split("|") if kw.strip()]


def load_queries(path: Path = QUERIES_PATH) -> list[BenchmarkQuery]:
    """The benchmark rows (comment lines start with #)."""
    rows: list[BenchmarkQuery] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        query, keywords, *rest = line.split("\t")
        rows.append(BenchmarkQuery(query.strip(), _keywords(keywords), _keywords(rest[0]) if rest else []))
    return rows


def _matches(phrasings: list[str], keywords: list[list[str]]) -> bool:
    if not keywords:
        return True
    return any(all(any(alt in p.lower() for alt in kw) for kw in keywords) for p in phrasings)


def evaluate(query: BenchmarkQuery) -> Outcome:
    """Translate one query and judge it."""
    result = translate_chinese(query.query)
    if result is None:
        return Outcome(query, False, "translator passed (no CJK?)", [], [])
    texts, negatives = result.texts, result.negatives
    if result.untranslated:
        reason = f"untranslated: {result.untranslated}"
    elif any(_HAN.search(t) for t in texts + negatives):
        reason = "Chinese left in a phrasing"
    elif not _matches(texts, query.keywords):
        reason = "keywords missing"
    elif not _matches(negatives, query.negative_keywords):
        reason = "negative keywords missing"
    else:
        return Outcome(query, True, "", texts, negatives)
    return Outcome(query, False, reason, texts, negatives)


def run(quick: bool = False, path: Path = QUERIES_PATH) -> tuple[float, list[Outcome]]:
    """Coverage (share passed) and every outcome for one query set; ``quick`` evaluates every fourth query."""
    queries = load_queries(path)
    if quick:
        queries = queries[::4]
    outcomes = [evaluate(q) for q in queries]
    return sum(o.passed for o in outcomes) / max(len(outcomes), 1), outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every fourth query only")
    parser.add_argument("--verbose", action="store_true", help="print every translation")
    parser.add_argument("--set", choices=[*SETS, "all"], default="all", help="which query set (default: all)")
    args = parser.parse_args(argv)
    names = list(SETS) if args.set == "all" else [args.set]
    started = time.perf_counter()
    translate_chinese("声")  # load the dictionaries once, outside the per-set timings
    load_s = time.perf_counter() - started
    lines = []
    for name in names:
        started = time.perf_counter()
        coverage, outcomes = run(args.quick, SETS[name])
        elapsed = time.perf_counter() - started
        for o in outcomes:
            if args.verbose or not o.passed:
                mark = "ok  " if o.passed else "FAIL"
                extra = f"  [{o.reason}]" if o.reason else ""
                print(f"{mark} [{name}] {o.query.query} -> {o.texts} neg={o.negatives}{extra}")
        failed = [o for o in outcomes if not o.passed]
        lines.append(f"{name}: {coverage:.1%} ({len(outcomes) - len(failed)}/{len(outcomes)} queries, {elapsed:.2f} s)")
    print(f"load: {load_s:.2f} s")
    for line in lines:
        print(f"coverage {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
