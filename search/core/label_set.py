"""Label sets as data: class names, the text embedded for each, the prompt template, the policy, its options
and per-class thresholds; saved as TOML (`soundsift eval --save-label-set`) and stored in the index by name.

A file looks like::

    labels = ["dog", "bearing"]
    template = "This is a sound of {}."
    policy = "softmax"

    [texts]
    dog = "dog barking"
    bearing = "轴承异响"

    [options]

    [thresholds]
    dog = 0.41
    bearing = 0.63

Every consumer (``classify --label-set``, ``classify-file --label-set``, ``POST /classify`` with ``label_set``)
classifies with exactly these: the texts go through translation and the template as labels always do, the
rows are named by the class names, and the thresholds become the policy's per-label ``threshold`` option.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import BadInput
from search.core.options import DEFAULT_POLICY, check_prompt_template

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_TEMPLATE = "This is a sound of {}."
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


@dataclass
class LabelSet:
    """Class names (in order), the text embedded for each, the prompt template, the policy, options, thresholds."""

    labels: list[str]
    texts: dict[str, str] = field(default_factory=dict)
    template: str = DEFAULT_TEMPLATE
    policy: str = DEFAULT_POLICY
    options: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    def text_of(self, label: str) -> str:
        """What is embedded for ``label`` (its text, else the label itself)."""
        return self.texts.get(label) or label

    def label_texts(self) -> list[str]:
        """The texts in label order (what `classify` is given as labels)."""
        return [self.text_of(label) for label in self.labels]

    def policy_options(self) -> dict[str, Any]:
        """The options the policy is called with: the stored options plus the thresholds per label."""
        options = dict(self.options)
        if self.thresholds:
            key = "thresholds" if self.policy == "multilabel" else "threshold"
            base = options.get(key)
            merged = dict(base) if isinstance(base, dict) else {}
            merged.update(self.thresholds)
            options[key] = merged
        return options

    def to_dict(self) -> dict[str, Any]:
        """The TOML document as a dict (None-free: TOML has no null)."""
        return {
            "labels": list(self.labels),
            "template": self.template,
            "policy": self.policy,
            "texts": {k: self.text_of(k) for k in self.labels},
            "options": _toml_safe(self.options),
            "thresholds": {k: float(v) for k, v in self.thresholds.items() if v is not None},
        }

    def dumps(self) -> str:
        """The label set as TOML text."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> Path:
        """Write the TOML file (atomically: a reader never sees half a file)."""
        import os

        target = Path(path).expanduser()
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, target)
        return target


def _toml_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value if v is not None]
    return value


def parse_label_set(text: str, where: str = "label set") -> LabelSet:
    """A label set from TOML text; BadInput saying what is wrong (and where) otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"labels", "texts", "template", "policy", "options", "thresholds", "name"})
    if unknown:
        raise BadInput(
            f"{where}: unknown key(s) {', '.join(unknown)}; a label set has labels, texts, template, policy, options, thresholds"
        )
    labels = data.get("labels")
    texts = data.get("texts") or {}
    if labels is None and texts:
        labels = list(texts)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise BadInput(f'{where}: labels must be a non-empty list of names, e.g. labels = ["dog", "bearing"]')
    if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
        raise BadInput(f'{where}: [texts] maps each label to the text embedded for it, e.g. dog = "dog barking"')
    strangers = sorted(set(texts) - set(labels))
    if strangers:
        raise BadInput(f"{where}: [texts] names labels not in labels: {', '.join(strangers)}")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict) or not all(isinstance(v, (int, float)) for v in thresholds.values()):
        raise BadInput(f"{where}: [thresholds] maps labels to numbers, e.g. dog = 0.4")
    strangers = sorted(set(thresholds) - set(labels))
    if strangers:
        raise BadInput(f"{where}: [thresholds] names labels not in labels: {', '.join(strangers)}")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise BadInput(f"{where}: [options] must be a table of policy options")
    template = data.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str):
        raise BadInput(f"{where}: template must be a string with {{}} where the label goes")
    check_prompt_template(template)
    policy = data.get("policy", DEFAULT_POLICY)
    if not isinstance(policy, str) or not policy:
        raise BadInput(f"{where}: policy must be the name of a scoring policy, e.g. softmax")
    return LabelSet(
        labels=[x.strip() for x in labels],
        texts={k: v for k, v in texts.items()},
        template=template,
        policy=policy,
        options=options,
        thresholds={k: float(v) for k, v in thresholds.items()},
    )


def load_label_set(path: str | Path) -> LabelSet:
    """Read a label-set TOML file."""
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such label set file: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the label set {source}: {exc}") from None
    return parse_label_set(text, str(source))


def check_label_set_name(name: str) -> str:
    """A stored label set's name: letters, digits, ``_ . -`` (it travels in URLs and forms)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise BadInput(f"a label set name is letters, digits, _ . - (up to 100), not {name!r}")
    return name


def stored_label_set(store, name: str) -> LabelSet:
    """The label set stored in the index under ``name``; BadInput naming the stored ones otherwise."""
    from indexer.label_set_store import LabelSetStore

    table = LabelSetStore(store)
    found = table.get(name)
    if found is None:
        names = table.names()
        raise BadInput(
            f"no label set named {name!r} in the index"
            + (f"; stored: {', '.join(names)}" if names else "; store one with `soundsift label-set add NAME FILE`")
        )
    return parse_label_set(found.body, f"label set {name!r}")


def save_label_set_in_index(store, name: str, label_set: LabelSet) -> None:
    """Store ``label_set`` in the index under ``name`` (replacing one of that name)."""
    from indexer.label_set_store import LabelSetStore

    LabelSetStore(store).put(check_label_set_name(name), label_set.dumps())


@dataclass
class LabelSetCall:
    """What a classification is called with once a label set is applied: the texts to embed, the rows' names,
    the policy, its options (the set's thresholds included) and the prompt template."""

    labels: list[str] | str
    label_names: list[str] | None
    policy: str
    policy_options: dict[str, Any]
    prompt_template: str | None


def apply_label_set(
    label_set: LabelSet,
    policy: str | None = None,
    policy_options: dict | None = None,
    prompt_template: str | None = None,
) -> LabelSetCall:
    """The label set's labels, policy, options and template; a ``policy``, options or template the caller gives
    explicitly win over the set's (options merge, the caller's keys replacing the set's)."""
    return LabelSetCall(
        labels=label_set.label_texts(),
        label_names=list(label_set.labels),
        policy=policy or label_set.policy,
        policy_options={**label_set.policy_options(), **(policy_options or {})},
        prompt_template=prompt_template or label_set.template,
    )
