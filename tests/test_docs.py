"""docs/plugins.md documents every hook's signature, every contract type's fields and every policy option; its examples run."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from plugins import contract, hookspecs
from plugins.manager import build_plugin_manager

DOC = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKS = [name for name, fn in vars(hookspecs).items() if hasattr(fn, f"{hookspecs.PROJECT}_spec")]
CONTRACT_TYPES = [
    obj for obj in vars(contract).values() if inspect.isclass(obj) and obj.__module__ == contract.__name__
]


def section(heading: str) -> str:
    """The text under a markdown heading line, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md has no heading {heading!r}"
    return match.group(1)


def test_the_hooks_are_the_public_five():
    assert sorted(HOOKS) == [
        "register_decoders",
        "register_scoring_policies",
        "register_transcribers",
        "register_window_taggers",
        "translate_query",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    spec = getattr(hookspecs, hook)
    signature = f"{hook}({', '.join(inspect.signature(spec).parameters)})"
    assert f"### `{signature}`" in DOC
    assert spec.__doc__ and "\n" not in spec.__doc__.strip(), f"{hook} needs a one-line docstring"


@pytest.mark.parametrize("cls", CONTRACT_TYPES, ids=lambda c: c.__name__)
def test_every_contract_type_and_field_is_documented(cls):
    text = section(f"`{cls.__name__}`")
    if dataclasses.is_dataclass(cls):
        fields = [f.name for f in dataclasses.fields(cls)]
    elif issubclass(cls, Exception):
        fields = []
    else:  # a Protocol: its attributes and methods
        fields = [
            *cls.__annotations__,
            *(n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")),
        ]
    missing = [f for f in fields if f"`{f}`" not in text and f"`{f}(" not in text]
    assert not missing, f"{cls.__name__} fields not documented: {missing}"


def test_every_builtin_policy_and_option_is_documented():
    policies = build_plugin_manager().policies
    for name in ("softmax", "multilabel", "margin", "contrast", "archive"):
        text = section(f"`{name}`")
        missing = [o for o in policies[name].option_help if f"`{o}`" not in text]
        assert not missing, f"options of {name} not documented: {missing}"


def test_the_environment_variables_are_documented():
    for variable in ("SOUNDSIFT_PLUGINS", "SOUNDSIFT_EXTRA_PLUGINS"):
        assert f"`{variable}=" in DOC


def documented_tests() -> list[str]:
    """The python examples of docs/plugins.md that are a plugin's tests (they open with a tests/ path)."""
    return [code for code in re.findall(r"```python\n(.*?)```", DOC, re.DOTALL) if code.startswith('"""tests/')]


def documented_plugins() -> list[types.ModuleType]:
    """Each python example in docs/plugins.md that is a plugin, loaded as a module."""
    modules = []
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", DOC, re.DOTALL)):
        if code in documented_tests():
            continue
        module = types.ModuleType(f"docs_example_{i}")
        exec(compile(code, f"docs/plugins.md example {i}", "exec"), module.__dict__)
        modules.append(module)
    return modules


def test_the_worked_examples_register_and_work(tmp_path):
    host = build_plugin_manager(extra=documented_plugins())
    assert [f for f in host.failures if f.name.startswith("docs_example")] == []
    assert {"ulaw"} <= set(host.decoders) and "lead" in host.policies and "zcr" in host.taggers
    (loud,) = host.transcribers["loud-words"].load({})
    heard = loud.transcribe([np.zeros(1600, np.float32), np.ones(1600, np.float32)], 16_000)
    assert [h.text for h in heard] == ["", "very loud"] and [w.text for w in heard[1].words] == ["very", "loud"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the reference G.711 decoder (Python < 3.13)
    encoded = bytes(range(256))
    path = tmp_path / "all-codes.ulaw"
    path.write_bytes(encoded)
    source = host.decoders["ulaw"].open(path, {})
    decoded = np.concatenate(list(source.blocks()))
    source.close()
    expected = np.frombuffer(audioop.ulaw2lin(encoded, 2), dtype=np.int16) / 32768.0
    np.testing.assert_array_equal(decoded[:, 0], expected.astype(np.float32))
    assert source.duration_s == 256 / 8000

    labels = [contract.LabelTexts(n, (n,)) for n in "abc"]
    logits = np.array([[10.0, 6.0, 1.0], [5.0, 4.0, 1.0]], np.float32)
    result = host.policies["lead"].score(
        logits, np.full_like(logits, -np.inf), labels, None, {"threshold": None, "logit_scale": 10.0}
    )
    np.testing.assert_array_equal(result.scores, [[4.0, 0.0, -5.0], [1.0, 0.0, -3.0]])
    assert result.fired.tolist() == [[True, False, False], [False, False, False]]

    translated = host.translate_query("Glasbruch", {})
    assert translated.texts == ["glass breaking"] and translated.translator == "german-glossary"

    t = np.arange(48_000) / 48_000
    tags = host.taggers["zcr"].tag(
        np.stack([np.sin(2 * np.pi * 100 * t + 0.1), np.sin(2 * np.pi * 5000 * t + 0.1)]), 48_000
    )
    np.testing.assert_allclose(tags["zcr_hz"], [200.0, 10_000.0], atol=1.0)
    assert tags["noisy"].tolist() == [False, True]


def test_the_testing_example_passes_against_the_documented_policy(monkeypatch):
    (code,) = documented_tests()
    lead = next(m for m in documented_plugins() if hasattr(m, "score_lead"))
    monkeypatch.setitem(sys.modules, "lead_policy", lead)
    module = types.ModuleType("docs_testing_example")
    exec(compile(code, "docs/plugins.md testing example", "exec"), module.__dict__)
    tests = [fn for name, fn in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 1
    for test in tests:
        test()


def test_the_documented_translator_order_holds():
    """tryfirst before plain implementations, the plugin loaded last first, a wrapper around them all."""
    from soundsift import QueryTranslation, hookimpl

    calls: list[str] = []

    def plugin(name: str, answer: bool, **marks):
        module = types.ModuleType(name)

        @hookimpl(**marks)
        def translate_query(text, settings):
            calls.append(name)
            return QueryTranslation(texts=[name], translator=name) if answer else None

        module.translate_query = translate_query
        return module

    wrapper = types.ModuleType("wrapping")

    @hookimpl(wrapper=True)
    def wrap(text, settings):
        result = yield
        return QueryTranslation(texts=[*result.texts, "wrapped"], translator=result.translator)

    wrapper.translate_query = wrap
    host = build_plugin_manager(
        extra=[
            plugin("early", False),
            plugin("late", True),
            plugin("first", False, tryfirst=True),
            plugin("last", True, trylast=True),
            wrapper,
        ]
    )
    result = host.translate_query("bark", {})
    assert calls == ["first", "late"]  # zh (tryfirst) passed on non-Chinese text; late answered before early ran
    assert result.texts == ["late", "wrapped"] and result.translator == "late"
    assert host.translate_query("狗叫", {}).translator.startswith(
        "zh"
    )  # the built-in tryfirst translator answers Chinese
