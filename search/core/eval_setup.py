"""What an evaluation compares, from the command line's words: class names mapped to label texts
(``dog="dog barking", bearing=轴承异响``), alternative phrasings (``--variant``), prompt templates and policies,
each combination a `Variant` whose label-set scorer is built exactly as `classify` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.errors import BadInput
from search.core.classify import ClassifyOptions, check_policy_options, label_matrix, policy_named
from search.core.evaluate import Variant
from search.core.label_set import LabelSet
from search.core.options import DEFAULT_POLICY, check_prompt_template, with_prompt_template
from search.core.prompts import named_labels, parse_labels, prepare_all

_SEPARATORS = ",，;；\n"


def _split_items(raw: str) -> list[str]:
    """Items of ``a=b, c="d, e"``: split at commas and semicolons outside quotes."""
    items, buf, quote = [], [], None
    for ch in raw:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch in _SEPARATORS:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    return [i.strip() for i in items if i.strip()]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def parse_label_map(raw: list[str] | str | None) -> dict[str, str]:
    """Class name -> label text from ``--labels``: ``dog, cat`` (each name its own text) or
    ``dog="dog barking", bearing=轴承异响``; in order, a class named twice is refused."""
    items = [raw] if isinstance(raw, str) else list(raw or [])
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item and '"' not in item and "'" not in item:
            parts = [(p, p) for p in parse_labels(item)]  # plain labels, "X but not Y" kept whole
        else:
            parts = []
            for piece in _split_items(item):
                name, sep, text = piece.partition("=")
                name, text = _unquote(name), _unquote(text) if sep else _unquote(name)
                if not name or not text:
                    raise BadInput(f'--labels takes NAME or NAME="label text", not {piece!r}')
                parts.append((name, text))
        for name, text in parts:
            if name in out:
                raise BadInput(f"the class {name!r} is given twice in --labels")
            out[name] = text
    return out


@dataclass
class VariantPlan:
    """The combinations to score: prompt templates x phrasings x policies."""

    labels: dict[str, str]  # class -> text, in label order
    templates: list[str]
    phrasings: list[dict[str, str]]  # overrides; {} is the labels as given
    policies: list[str]
    policy_options: dict

    def label_sets(self) -> list[tuple[str, LabelSet]]:
        """(name, label set) per combination, the labels as given first."""
        out = []
        for template in self.templates:
            for change in self.phrasings:
                for policy in self.policies:
                    texts = {**self.labels, **change}
                    said = ", ".join(f"{k}={v}" for k, v in change.items()) or "labels as given"
                    name = f"{policy} · {template} · {said}"
                    out.append(
                        (
                            name,
                            LabelSet(
                                labels=list(self.labels),
                                texts=texts,
                                template=template,
                                policy=policy,
                                options=dict(self.policy_options),
                            ),
                        )
                    )
        return out


def plan_variants(
    labels: dict[str, str],
    templates: list[str] | None,
    variants: list[str] | None,
    policies: list[str] | None,
    policy_options: dict | None,
    default_template: str,
) -> VariantPlan:
    """Check and combine the options: every ``--variant`` names known classes; templates hold ``{}`` once."""
    phrasings: list[dict[str, str]] = [{}]
    for raw in variants or []:
        change = parse_label_map(raw)
        strangers = [k for k in change if k not in labels]
        if strangers:
            raise BadInput(
                f"--variant names classes that are not labels: {', '.join(strangers)} (labels: {', '.join(labels)})"
            )
        if change not in phrasings:
            phrasings.append(change)
    chosen = [check_prompt_template(t) for t in (templates or [default_template])]
    return VariantPlan(
        labels=labels,
        templates=list(dict.fromkeys(chosen)),
        phrasings=phrasings,
        policies=list(dict.fromkeys(policies or [DEFAULT_POLICY])),
        policy_options=dict(policy_options or {}),
    )


def label_set_variant(
    name: str, label_set: LabelSet, encoder, settings, plugins, strict: bool | None = None
) -> Variant:
    """A label set as a variant: its texts translated and templated as `classify` does, rows named by class."""

    policy = policy_named(plugins.policies, label_set.policy)
    if policy.needs_archive_stats:
        raise BadInput(f"the {label_set.policy} policy needs archive statistics; evaluate with another policy")
    texts = label_set.label_texts()
    prepared = prepare_all(texts, plugins, with_prompt_template(settings, label_set.template), strict)
    named_labels(texts, prepared, list(label_set.labels))
    scorer = label_matrix(prepared, encoder)
    options = label_set.policy_options()
    check_policy_options(policy, scorer, ClassifyOptions(policy_options=options, threshold=options.get("threshold")))
    return Variant(
        name=name,
        scorer=scorer,
        policy=policy,
        policy_name=label_set.policy,
        policy_options=options,
        template=label_set.template,
        texts={k: label_set.text_of(k) for k in label_set.labels},
    )


def run_evaluation(
    sample,
    plan: VariantPlan,
    encoder,
    settings,
    plugins,
    *,
    store=None,
    workers: int | None = None,
    strict: bool | None = None,
    target_precision: float | None = None,
    max_variants: int | None = None,
):
    """(report, best label set): every variant of ``plan`` built, the sample embedded once (cached in ``store``
    when given) and evaluated; the best-ranked variant's label set comes back with its thresholds set."""
    from search.core.eval_clips import embed_sample
    from search.core.evaluate import evaluate

    sets = plan.label_sets()
    if max_variants is not None and len(sets) > max_variants:
        raise BadInput(f"{len(sets)} variants (templates x phrasings x policies): at most {max_variants}")
    variants = [label_set_variant(name, ls, encoder, settings, plugins, strict) for name, ls in sets]
    embedded = embed_sample(sample, getattr(encoder, "full", lambda: encoder)(), settings, plugins, store, workers)
    report = evaluate(
        embedded, variants, source=str(sample.source), layout=sample.layout, target_precision=target_precision
    )
    best = dict(sets)[report.variant]
    best.thresholds = {p.label: p.threshold for p in report.per_label if p.threshold is not None}
    return report, best
