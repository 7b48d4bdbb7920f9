"""Filters on files and windows (path glob, modified time, duration, window tags) as one SQL condition."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


class Filters(BaseModel):
    """Restricts search and classification to some files or windows. Every field is optional."""

    path_glob: str | None = Field(None, description="glob on the file path, e.g. '*/line3/*.wav'")
    modified_after: float | None = Field(None, description="file mtime >= this (Unix seconds)")
    modified_before: float | None = Field(None, description="file mtime < this (Unix seconds)")
    min_duration: float | None = Field(None, ge=0, description="file duration >= this (seconds)")
    max_duration: float | None = Field(None, ge=0, description="file duration <= this (seconds)")
    tags: dict[str, bool | int | float | str] = Field(default_factory=dict, description="window tags that must equal these values, e.g. {'silence': false}")

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_defaults=True)

    def to_sql(self) -> tuple[str, dict[str, Any]]:
        """A WHERE condition over ``w`` (windows) and ``f`` (files), with its named parameters."""
        parts = ["f.status = 'indexed'"]
        params: dict[str, Any] = {}
        if self.path_glob:
            parts.append("f.path GLOB $path_glob")
            params["path_glob"] = self.path_glob
        for name, op, column in (("modified_after", ">=", "f.mtime"), ("modified_before", "<", "f.mtime"),
                                 ("min_duration", ">=", "f.duration"), ("max_duration", "<=", "f.duration")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{column} {op} ${name}")
                params[name] = value
        for i, (tag, value) in enumerate(sorted(self.tags.items())):
            parts.append(f"json_extract(w.tags, $tag_path{i}) = $tag_value{i}::JSON")
            params[f"tag_path{i}"] = "$." + json.dumps(tag)
            params[f"tag_value{i}"] = json.dumps(value)
        return " AND ".join(parts), params
