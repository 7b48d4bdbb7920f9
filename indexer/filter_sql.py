"""Filters on files and windows as one SQL condition over ``w`` (windows) and ``f`` (files), with its parameters.

`search.filters.Filters` is the user-facing model (path glob, times, durations, tags) and parses the tag syntax;
the SQL it stands for is written here, beside the tables it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from indexer.errors import BadInput

#: filter field -> (comparison, file column): the file-level bounds a filter may set
FILE_BOUNDS = {
    "modified_after": (">=", "f.mtime"),
    "modified_before": ("<", "f.mtime"),
    "min_duration": (">=", "f.duration"),
    "max_duration": ("<=", "f.duration"),
}


@dataclass(frozen=True)
class TagFilter:
    """One parsed tag filter: a model tag (``model``, ``label``, ``op``, ``value``; op None = present) or a flat one."""

    model: str | None
    label: str
    op: str | None = None
    value: Any = None

    @property
    def is_model_tag(self) -> bool:
        return self.model is not None


def resolve_model(name: str, models: Mapping[str, Any]) -> Any:
    """The stored tag model a filter names: its alias, its id, else the one whose alias or id starts so."""
    found = (
        [m for m in models.values() if m.alias == name]
        or [m for m in models.values() if m.model == name]
        or [m for m in models.values() if m.alias.startswith(name) or m.model.startswith(name)]
    )
    if len(found) == 1:
        return found[0]
    known = (
        ", ".join(f"{m.alias} ({m.model})" for m in models.values())
        or "none: tag it first with `soundsift tag --model ID`"
    )
    if not found:
        raise BadInput(f"no model tagged this index as {name!r}; models: {known}")
    raise BadInput(
        f"{name!r} names several models ({', '.join(m.alias for m in found)}): use an alias or a longer prefix"
    )


def filter_condition(
    path_glob: str | None,
    bounds: Mapping[str, float | None],
    tag_filters: Iterable[TagFilter],
    tag_models: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """A WHERE condition over ``w`` (windows) and ``f`` (files), with its named parameters.

    ``bounds``: values for `FILE_BOUNDS` (None: unbounded). ``tag_models`` (model id -> stored record,
    `IndexStore.tag_models`) resolves model tag filters to one model and a known label, with a clear error
    otherwise; without it they match by SQL."""
    parts = ["f.status = 'indexed'"]
    params: dict[str, Any] = {}
    if path_glob:
        parts.append("f.path GLOB $path_glob")
        params["path_glob"] = path_glob
    for name, (op, column) in FILE_BOUNDS.items():
        value = bounds.get(name)
        if value is not None:
            parts.append(f"{column} {op} ${name}")
            params[name] = value
    for i, t in enumerate(tag_filters):
        if not t.is_model_tag:
            parts.append(f"json_extract(w.tags, $tag_path{i}) = $tag_value{i}::JSON")
            params[f"tag_path{i}"] = "$." + json.dumps(t.label)
            params[f"tag_value{i}"] = json.dumps(t.value)
            continue
        parts.append(_model_tag_sql(t, i, params, tag_models))
    return " AND ".join(parts), params


def _model_tag_sql(t: TagFilter, i: int, params: dict[str, Any], tag_models: Mapping[str, Any] | None) -> str:
    if tag_models is not None:
        model = resolve_model(t.model, tag_models)  # type: ignore[arg-type]  # model tag filters always name one
        label = next((x for x in model.labels if x.lower() == t.label.lower()), None)
        if label is None:
            raise BadInput(
                f"model {model.alias} has no label {t.label!r}; its labels include "
                f"{', '.join(repr(x) for x in model.labels[:8])}"
            )
        params[f"tm{i}"], params[f"tl{i}"] = model.model, label
        cond = f"t.model = $tm{i} AND t.label = $tl{i}"
    else:
        params[f"tm{i}"], params[f"tl{i}"] = t.model, t.label
        cond = (
            f"t.model IN (SELECT model FROM tag_models WHERE alias = $tm{i} OR model = $tm{i} "
            f"OR starts_with(alias, $tm{i}) OR starts_with(model, $tm{i})) AND lower(t.label) = lower($tl{i})"
        )
    if t.op is not None:
        params[f"tv{i}"] = float(t.value)
        cond += f" AND t.score {'=' if t.op == '=' else t.op} $tv{i}"
    exists = f"EXISTS (SELECT 1 FROM window_tags t WHERE t.window_id = w.id AND {cond})"
    return f"NOT {exists}" if t.op is None and t.value is False else exists
