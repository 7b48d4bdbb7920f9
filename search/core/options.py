"""Options a single request may set on top of the settings: the prompt template, policy options, a segment of a file."""

from __future__ import annotations

import json
import re
from typing import Any

from indexer.errors import BadInput

#: The scoring policy used when none is named: softmax over the labels, as the transformers pipeline scores them.
DEFAULT_POLICY = "softmax"

MAX_TEMPLATE_CHARS = 500
# `{}` exactly once and no other brace: the rule the HTTP schema states too (its `pattern`).
TEMPLATE_PATTERN = r"^[^{}]*\{\}[^{}]*$"


def check_prompt_template(template: str) -> str:
    """A prompt template holds the label's place as ``{}`` exactly once; BadInput naming the field otherwise."""
    try:
        ok = (
            bool(re.fullmatch(TEMPLATE_PATTERN, template))
            and len(template) <= MAX_TEMPLATE_CHARS
            and bool(template.format("x"))
        )
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise BadInput(
            f"prompt_template must contain {{}} once (where the label goes), e.g. 'This is a sound of {{}}.', "
            f"not {template[:80]!r}"
        )
    return template


def with_prompt_template(settings, template: str | None):
    """``settings`` with another prompt template for one request (checked: exactly one ``{}``)."""
    if template is None or template == settings.prompt_template:
        return settings
    check_prompt_template(template)
    return settings.model_copy(update={"prompt_template": template})


def parse_policy_options(raw: str | dict | None, field: str = "policy_options") -> dict[str, Any]:
    """Policy options given as a JSON object (or its text, as a form field sends it); BadInput naming ``field``."""
    if raw is None or raw == "":
        return {}
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadInput(
                f'{field} must be a JSON object, e.g. {{"min_margin": 0.2}}: {exc.msg} at character {exc.pos}'
            ) from None
    if not isinstance(value, dict):
        raise BadInput(f'{field} must be a JSON object, e.g. {{"min_margin": 0.2}}, not {type(value).__name__}')
    return value


def check_segment(start_s: float | None, duration_s: float | None) -> tuple[float, float | None]:
    """(start, duration) of the part of a file to classify: start >= 0, duration > 0 (None: to the end)."""
    start = 0.0 if start_s is None else float(start_s)
    if not start >= 0.0 or start != start or start == float("inf"):
        raise BadInput(f"start must be a number of seconds >= 0, not {start_s}")
    if duration_s is not None and not (0.0 < float(duration_s) < float("inf")):
        raise BadInput(f"duration must be a number of seconds > 0, not {duration_s}")
    return start, None if duration_s is None else float(duration_s)
