"""Schemathesis hooks for tests/test_schemathesis.py: the 422s that tests/schemathesis.toml allows, narrowed to
the data-dependent refusals they are allowed for.

The config can only allow a status per operation; this check fails a schema-valid request refused with 422 for
any reason other than the ones listed here, so an allowance cannot hide a real mismatch of schema and server.
"""

from __future__ import annotations

import re

import schemathesis

# A policy's options and per-label thresholds depend on other fields of the same request: the options a policy
# reads belong to that policy (a plugin; GET /stats lists them), and {label: number} or [number, ...] must name
# the labels of this request's label set, one number each.
LABELS_AND_POLICY = (
    r"policy has no option ",
    r" names labels that are not in the label set: ",
    r" has \d+ values for \d+ labels",
    r" must be a number, \{label: number\} or a list of numbers, not ",
)

# Probes and examples name what the index holds: a probe trained here and its classes, windows and files in it.
TEACH_TARGETS = (
    r"^no probe named ",
    r"^probe \S+ has no class ",
    r"^a probe filter reads ",
    r" is not in the index",
    r"^no window \d+ in the index",
    r" has no window at ",
    r" has no windows in the index",
    r" has no stored vector",
    r"^the examples cancel out",
)

# Which fields go together: a probe ranks alone (no queries or examples beside it), `label_names` name the texts
# given as `labels`, `fuse` fuses with `filters.said`, something must be searched for. Each field alone matches the schema; the combination rule
# is in the fields' descriptions, which a fuzzer does not read.
FIELD_COMBINATIONS = (
    r"`probe` ranks by the probe alone",
    r"give `probe` alone",
    r"`label_names` goes with `labels`",
    r"give `labels` or `label_set`",
    r"give at least 1 query",
    r"^\d+ label names for \d+ label texts",
    r"fuses the sound ranking with what is said",
)

# `strict: true` asks for a refusal when part of a query has no English translation: which words the translators
# know is their vocabulary, not something a schema can state.
STRICT_TRANSLATION = (r"^no English found for: ",)

# What is said: `filters.said` is a full-text query (words, "phrases", prefix*, AND/OR/NOT, parentheses), a grammar
# no JSON schema expresses, and it searches the transcripts of this index (none until one is transcribed).
SAID_QUERY = (r"^the --said query ", r"^cannot read the --said query ", r"^no transcripts in ")

# (method, path) -> what a 422 to a schema-valid request may say there; every entry is data the schema cannot
# describe. Keep in step with tests/schemathesis.toml.
DATA_DEPENDENT_422 = {
    # Any bytes match `format: binary`; only bytes some decoder reads are audio.
    ("POST", "/classify-file"): (r"^cannot decode the audio: ", *LABELS_AND_POLICY),
    # A cursor is opaque: only the ones this server handed out name a page.
    ("POST", "/classify"): (
        r"^cursor is not one this server handed out",
        r"^no model tagged this index as ",
        r"^no label set named ",  # a label set stored in the index, by name
        *LABELS_AND_POLICY,
        *TEACH_TARGETS,
        *SAID_QUERY,
        *FIELD_COMBINATIONS,
        *STRICT_TRANSLATION,
    ),
    # A MODEL:LABEL tag filter only filters by a model that tagged this index (GET /stats `tags`); a probe, a
    # like/unlike target (a window id, an indexed file, a time in it) only name what the index holds.
    ("POST", "/search"): (
        r"^no model tagged this index as ",
        *TEACH_TARGETS,
        *SAID_QUERY,
        *FIELD_COMBINATIONS,
        *STRICT_TRANSLATION,
    ),
    # Alert pages: a cursor is opaque, only the ones this server handed out name a page.
    ("GET", "/alerts"): (r"^cursor is not one this server handed out",),
}


@schemathesis.check
def refusals_are_data_dependent(ctx, response, case) -> bool | None:
    """A schema-valid request answered 422 must be one of the data-dependent refusals of its operation."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    allowed = DATA_DEPENDENT_422.get((case.operation.method.upper(), case.operation.path))
    if allowed is None:  # not allowed at all: positive_data_acceptance reports it
        return None
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        detail = response.text[:200]
    if not any(re.search(pattern, detail) for pattern in allowed):
        raise AssertionError(f"schema-valid request refused for a reason the schema could express: {detail!r}")
    return None


@schemathesis.check
def refusals_say_why(ctx, response, case) -> bool | None:
    """Every 422 carries a `detail` line saying what is wrong (the one-line error a client shows)."""
    if response.status_code != 422:
        return None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if not (isinstance(detail, str) and detail.strip()):
        raise AssertionError(f"a 422 without a detail line: {response.text[:300]!r}")
    return None
