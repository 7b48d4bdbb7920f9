"""Filters on files and windows (path glob, modified time, duration, window tags, model tags): the model and the tag syntax.

``said`` (what a window's transcript says) is matched in the full-text index (search/core/said.py), not in SQL:
the callers intersect the ids it allows with those of the SQL condition.

A tag filter is written ``MODEL:LABEL`` (the label is among the window's stored top-k labels of that
model), ``MODEL:LABEL>=0.5`` (its stored score compares so: ``>=``, ``>``, ``<=``, ``<``, ``=``), or
``NAME=VALUE`` for a flat tag of the acoustic tagger (``silence=false``; the value is read as JSON).
MODEL is the alias the model was tagged under, its id, or an unambiguous prefix of either; labels are
matched case-insensitively. A window without a stored score for the label (not in its top-k) matches
no comparison.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from indexer.errors import BadInput
from indexer.filter_sql import FILE_BOUNDS, TagFilter, filter_condition, resolve_model

__all__ = ["Filters", "TagFilter", "filter_condition", "parse_tag_filter", "resolve_model"]

_OPS = (">=", "<=", "==", ">", "<", "=")
_COMPARISON = re.compile(
    r"^(?P<rest>.*?)\s*(?P<op>>=|<=|==|>|<|=)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def parse_tag_filter(text: str) -> TagFilter:
    """``'emotion:angry>=0.5'``, ``'ast:Speech'`` or ``'silence=false'`` -> TagFilter; BadInput says the syntax."""
    raw = str(text).strip()
    model, colon, rest = raw.partition(":")
    eq = raw.find("=")
    if colon and (eq < 0 or raw.find(":") < eq) and model.strip():
        m = _COMPARISON.match(rest)
        label, op, value = (m.group("rest"), m.group("op"), float(m.group("value"))) if m else (rest, None, None)
        if label.strip():
            return TagFilter(model.strip(), label.strip(), "=" if op == "==" else op, value)
    name, sep, value_text = raw.partition("=")
    if sep and name.strip():
        try:
            value = json.loads(value_text.strip())
        except json.JSONDecodeError:
            value = value_text.strip()  # type: ignore[assignment]  # an unquoted string compares as text
        return TagFilter(None, name.strip(), "=", value)
    raise BadInput(
        f"cannot read the tag filter {text!r}: write MODEL:LABEL, MODEL:LABEL>=0.5 (>=, >, <=, <, =) "
        "or NAME=VALUE for an acoustic tag, e.g. 'emotion:angry>=0.5' or 'silence=false'"
    )


class Filters(BaseModel):
    """Restricts search and classification to some files or windows. Every field is optional."""

    path_glob: str | None = Field(None, description="glob on the file path, e.g. '*/line3/*.wav'")
    modified_after: float | None = Field(None, description="file mtime >= this (Unix seconds)")
    modified_before: float | None = Field(None, description="file mtime < this (Unix seconds)")
    min_duration: float | None = Field(None, ge=0, description="file duration >= this (seconds)")
    max_duration: float | None = Field(None, ge=0, description="file duration <= this (seconds)")
    tags: dict[str, bool | int | float | str] | list[str] = Field(
        default_factory=dict,
        description="window tags: {'silence': false} (flat tags equal these values), or model tags as "
        "'MODEL:LABEL' keys ({'emotion:angry': 0.5} means score >= 0.5, a string value such as '<0.2' "
        "compares, true/false = among the stored top-k or not), or a list in the CLI's --tag syntax "
        "(['emotion:angry>=0.5', 'silence=false'])",
    )

    said: str | None = Field(
        None,
        max_length=1000,
        description='only windows whose transcript says this (words, "phrases", prefix*, AND/OR/NOT), '
        "e.g. '退款 OR 投诉'; searched as typed, never translated",
    )

    def tag_filters(self) -> list[TagFilter]:
        """Every tag condition, parsed (dict and list forms alike)."""
        if isinstance(self.tags, list):
            return [parse_tag_filter(t) for t in self.tags]
        out = []
        for key, value in sorted(self.tags.items()):
            model, colon, label = key.partition(":")
            if not colon:
                out.append(TagFilter(None, key, "=", value))
            elif isinstance(value, bool):
                out.append(TagFilter(model, label, None, value))
            elif isinstance(value, (int, float)):
                out.append(TagFilter(model, label, ">=", float(value)))
            else:
                parsed = parse_tag_filter(f"{key}{value}")
                if parsed.op is None:
                    raise BadInput(
                        f"the model tag filter {key!r} takes a number (score >= it), true/false or a comparison such as '>=0.5'"
                    )
                out.append(parsed)
        return out

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_defaults=True)

    def to_sql(self, tag_models: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """A WHERE condition over ``w`` (windows) and ``f`` (files), with its named parameters.

        ``tag_models`` (model id -> stored record, `IndexStore.tag_models`) resolves model tag filters
        to one model and a known label, with a clear error otherwise; without it they match by SQL."""
        return filter_condition(
            self.path_glob,
            {name: getattr(self, name) for name in FILE_BOUNDS},
            self.tag_filters(),
            tag_models,
        )
