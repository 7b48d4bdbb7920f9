"""Composition: tagged tokens to English noun phrases, split into positive and negative clauses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .segment import Token

MAX_TEXTS = 4
MAX_NEGATIVES = 4
_CONTENT = frozenset({"thing", "heard", "action", "modifier", "suffix", "place", "english"})
_IRREGULAR_PLURALS = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "foot": "feet",
    "mouse": "mice",
    "goose": "geese",
    "tooth": "teeth",
    "sheep": "sheep",
    "fish": "fish",
    "staff": "staff",
    "police": "police",
    "people": "people",
    "crowd": "crowd",
}


@dataclass
class Composition:
    """English phrasings for the positive part, the negated parts, and what had no English."""

    texts: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)


def compose(tokens: list[Token]) -> Composition:
    """Split tokens into clauses and negated parts, and phrase each in English."""
    positives: list[list[str]] = []
    negatives: list[list[str]] = []
    untranslated = [t.text for t in tokens if t.role == "unknown"]
    for clause in _clauses(tokens):
        positive, negated = _split_negation(clause)
        for part, into in ((positive, positives), (negated, negatives)):
            phrasings = _phrase_group(part)
            if phrasings:
                into.append(phrasings)
    texts = _combine(positives, MAX_TEXTS)
    negative_texts = _dedupe([p for group in negatives for p in group[:2]])[:MAX_NEGATIVES]
    if not texts and negative_texts:  # "没有异响": only a negated part was given
        texts = [f"no {negative_texts[0]}"]
    return Composition(texts, negative_texts, _dedupe(untranslated))


def _clauses(tokens: list[Token]) -> list[list[Token]]:
    clauses: list[list[Token]] = [[]]
    for token in tokens:
        if token.role == "punct":
            clauses.append([])
        else:
            clauses[-1].append(token)
    return [c for c in clauses if c]


def _split_negation(clause: list[Token]) -> tuple[list[Token], list[Token]]:
    """Tokens after a negation marker are negated up to the clause end, or up to a 的 that closes
    a negated modifier ("没有人声的机器噪音": 人声 negated, 机器噪音 positive)."""
    positive: list[Token] = []
    negated: list[Token] = []
    negating = False
    for token in clause:
        if token.role == "neg":
            negating = True
        elif negating and token.text == "的" and any(t.role in _CONTENT for t in negated):
            negating = False
        elif token.role != "unknown":
            (negated if negating else positive).append(token)
    return positive, negated


def _phrase_group(tokens: list[Token]) -> list[str]:
    """Phrasings for one clause part; conjunctions join sub-phrases with "and"/"or"."""
    parts: list[list[Token]] = [[]]
    joiners: list[str] = []
    for token in tokens:
        if token.role == "conj":
            if parts[-1]:
                parts.append([])
                joiners.append(token.english[0] if token.english else "and")
        elif token.role != "stop":
            parts[-1].append(token)
    if not parts[-1]:
        parts.pop()
        joiners = joiners[: max(len(parts) - 1, 0)]
    if not parts:
        return []
    if len(parts) == 1:
        return _phrase(parts[0])
    heads = [p for p in parts[:-1]]
    if all(_only_things(p) for p in heads) and _has_heard_or_suffix(parts[-1]):
        # "轴承和齿轮异响": the things share the last part's sound.
        joined = _thing_phrase([t for p in heads for t in p if t.role in ("thing", "english")])
        for joiner, part in zip(joiners, parts[1:]):
            things = [t for t in part if t.role in ("thing", "english")]
            if things:
                joined = f"{joined} {joiner} {_thing_phrase(things)}"
        return _phrase(parts[-1], thing_override=joined, modifiers_from=[t for p in heads for t in p])
    each = [_phrase(p) for p in parts]
    each = [e for e in each if e]
    if not each:
        return []
    joined = each[0][0]
    for joiner, phrasings in zip(joiners, each[1:]):
        joined = f"{joined} {joiner} {phrasings[0]}"
    return _dedupe([joined] + [e[0] for e in each])


def _only_things(part: list[Token]) -> bool:
    return any(t.role in ("thing", "english") for t in part) and all(
        t.role in ("thing", "english", "modifier") for t in part
    )


def _has_heard_or_suffix(part: list[Token]) -> bool:
    return any(t.role in ("heard", "suffix") for t in part)


def _thing_phrase(things: list[Token], synonym: int = 0) -> str:
    """Things in order, each once: 空调 + 外机 -> "air conditioner outdoor unit", not both in full."""
    names = [
        t.english[min(synonym, len(t.english) - 1)] if i == len(things) - 1 else t.english[0]
        for i, t in enumerate(things)
        if t.english
    ]
    kept = [
        n
        for i, n in enumerate(names)
        if not any(n.lower() in m.lower() for j, m in enumerate(names) if j != i and m != n)
    ]
    return " ".join(_dedupe(kept))


def _fill(heard: str, thing: str) -> str:
    """Put a thing into a heard phrase: "abnormal {} noise" + bearing, or "squeal" -> "bearing squeal"."""
    if "{}" in heard:
        return " ".join(heard.replace("{}", thing).split())
    if not thing or thing.lower() in heard.lower():
        return heard
    return f"{thing} {heard}"


def _bare(heard: str) -> str:
    return " ".join(heard.replace("{}", "").split())


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def plural(noun: str) -> str:
    """The plural of a noun phrase's last word: tourist -> tourists, person -> people, bus -> buses."""
    head, _, last = noun.rpartition(" ")
    low = last.lower()
    if low in _IRREGULAR_PLURALS:
        word = _IRREGULAR_PLURALS[low]
    elif low.endswith("s") and not low.endswith("ss"):
        word = last  # already plural
    elif low.endswith(("ss", "x", "ch", "sh", "z")):
        word = last + "es"
    elif low.endswith("y") and low[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}".strip()


def _acting(tokens: list[Token]) -> list[str] | None:
    """Subject + action + object for a part with a verb ("主管训斥员工" -> "manager scolding employees").

    The verb is a general-dictionary action, or a heard event with a thing after it. Things before it
    are the subject (plural when the general dictionary named them: "tourists cheering"), things after
    it the object. None when the part has no such verb.
    """
    index = next((i for i, t in enumerate(tokens) if t.role == "action"), None)
    if index is None:
        index = next(
            (
                i
                for i, t in enumerate(tokens)
                if t.role == "heard"
                and t.kind == "event"
                and "{}" not in t.english[0]
                and any(u.role in ("thing", "english") for u in tokens[i + 1 :])
            ),
            None,
        )
    if index is None:
        return None
    verb = tokens[index]
    before = [t for t in tokens[:index] if t.role in ("thing", "english")]
    after = [t for t in tokens[index + 1 :] if t.role in ("thing", "english", "action")]
    subject = _thing_phrase(before)
    obj = " ".join(t.english[0] for t in after if t.english)
    if before and before[-1].source == "dict" and subject and not obj:
        subject = plural(subject)
    out = [" ".join(p for p in (subject, en, obj) if p) for en in verb.english[:3]]
    heard = [t for t in tokens if t.role == "heard" and t is not verb]
    if heard:
        out = [_fill(h, o) for o in out[:1] for h in heard[-1].english[:2]] + out
    return _dedupe(out)


def _phrase(tokens: list[Token], thing_override: str | None = None, modifiers_from: Sequence[Token] = ()) -> list[str]:
    """Phrasings for one simple part: [modifiers] + things + heard/suffix (+ place)."""
    acting = _acting(tokens) if thing_override is None else None
    if acting:
        return _finish(acting, tokens, modifiers_from)
    things = [t for t in tokens if t.role in ("thing", "english")]
    heard = [t for t in tokens if t.role == "heard"]
    suffixes = [t for t in tokens if t.role == "suffix"]
    places = [t.english[0] for t in tokens if t.role == "place" and t.english]
    modifiers = _dedupe([t.english[0] for t in [*modifiers_from, *tokens] if t.role == "modifier" and t.english])
    thing = thing_override if thing_override is not None else _thing_phrase(things)
    thing_alt = _thing_phrase(things, synonym=1) if thing_override is None and things else thing
    events = [t for t in heard if t.kind == "event"]
    if events and heard[-1].kind == "event" and things and things[-1].source == "dict" and thing_override is None:
        thing = plural(thing)  # what the general dictionary names, doing something: "tourists cheering"
    if events and len(events) < len(heard):
        # An event before a fault is what the fault is heard in: 通话 + 断断续续 -> "phone call dropout".
        heard = [t for t in heard if t.kind != "event"]
        context = " ".join(e.english[0] for e in events)
        thing, thing_alt = (f"{thing} {context}".strip(), f"{thing_alt} {context}".strip())
    phrasings: list[str] = []
    if len(events) > 1 and len(events) == len(heard):
        # Several complete events: 打雷 + 下雨 -> "thunder and rain", then each on its own.
        phrasings.append(" and ".join(_fill(e.english[0], thing if i == 0 else "") for i, e in enumerate(events)))
        phrasings += [_fill(e.english[0], thing) for e in events]
    elif heard:
        if len(heard) > 1:  # the last sound is the head: 风扇转动有摩擦声 -> "fan grinding" before "fan running"
            heard = heard[::-1]
        variants = [en for t in heard for en in t.english]
        if thing:
            phrasings.append(_fill(variants[0], thing))
            if len(variants) > 1:
                phrasings.append(_fill(variants[1], thing))
            if heard[0].kind != "event" and variants[0] in heard[0].english:
                phrasings.append(f"{_bare(variants[0])} from {_article(thing)}")
            phrasings += [_fill(v, thing) for v in variants[2:]]
            if thing_alt != thing:
                phrasings.append(_fill(variants[0], thing_alt))
        else:
            phrasings += [_bare(v) for v in variants]
    elif thing:
        calls = things[-1].calls if thing_override is None else []
        if len(things) > 1 and calls:
            # 紧急 + 刹车: words before a sound term qualify its typical sound: "emergency braking".
            prefix = " ".join(t.english[0] for t in things[:-1] if t.english)
            calls = [f"{prefix} {c}" for c in calls] if all(t.source == "dict" for t in things[:-1]) else []
        phrasings += calls[:2]
        if suffixes:
            for en in suffixes[-1].english:
                phrasings.append(f"{thing} {en}")
            if thing_alt != thing:
                phrasings.append(f"{thing_alt} {suffixes[-1].english[0]}")
        else:
            phrasings.append(thing)
            if thing_alt != thing:
                phrasings.append(thing_alt)
    elif suffixes or modifiers or places:
        phrasings += suffixes[-1].english[:1] if suffixes else ["sound"]
    return _finish(phrasings, tokens, modifiers_from)


def _finish(phrasings: list[str], tokens: list[Token], modifiers_from: Sequence[Token] = ()) -> list[str]:
    """Modifiers in front and the place after every phrasing."""
    places = [t.english[0] for t in tokens if t.role == "place" and t.english]
    modifiers = _dedupe([t.english[0] for t in [*modifiers_from, *tokens] if t.role == "modifier" and t.english])
    phrasings = _dedupe(phrasings)
    if modifiers:
        phrasings = [_with_modifiers(p, modifiers) for p in phrasings]
    if places:
        phrasings = [f"{p} {places[0]}" for p in phrasings]
    return phrasings


def _with_modifiers(phrase: str, modifiers: list[str]) -> str:
    words = phrase.lower().split()
    missing = [m for m in modifiers if m.lower() not in words and m.lower() not in phrase.lower()]
    return " ".join([*missing, phrase])


def _combine(groups: list[list[str]], limit: int) -> list[str]:
    """One clause: its phrasings. Several: all clauses joined with "and", then each clause's best."""
    if not groups:
        return []
    if len(groups) == 1:
        return _dedupe(groups[0])[:limit]
    joined = " and ".join(g[0] for g in groups)
    return _dedupe([joined] + [g[0] for g in groups])[:limit]


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(item.strip())
    return out
