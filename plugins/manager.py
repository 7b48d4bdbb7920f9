"""One plugin manager: built-in plugins (dotted module names) and third-party entry points, loaded alike.

``SOUNDSIFT_PLUGINS`` (comma-separated plugin names) narrows what loads, as llm's LLM_LOAD_PLUGINS.
A plugin that fails to import or to register is recorded by name with the reason and skipped.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from plugins import hookspecs
from plugins.contract import Decoder, ScoringPolicy, WindowTagger

BUILTIN_PLUGINS: tuple[str, ...] = (
    "plugins.builtin.decode_soundfile",
    "plugins.builtin.decode_pyav",
    "plugins.builtin.decode_slk",
    "plugins.builtin.decode_amr",
    "plugins.builtin.decode_pcm",
    "plugins.builtin.policies",
    "plugins.builtin.taggers",
    "plugins.builtin.translate_zh",
    "plugins.builtin.translate_marian",
)

T = TypeVar("T")


@dataclass
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    name: str
    error: str


@dataclass
class Registry:
    """What the loaded plugins registered, by kind and name."""

    decoders: dict[str, Decoder] = field(default_factory=dict)
    policies: dict[str, ScoringPolicy] = field(default_factory=dict)
    taggers: dict[str, WindowTagger] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


class PluginHost:
    """The plugin manager plus what its plugins registered."""

    def __init__(self, pm: pluggy.PluginManager, failures: list[PluginFailure]):
        self.pm = pm
        self.registry = Registry(failures=list(failures))
        self._collect("register_decoders", self.registry.decoders)
        self._collect("register_scoring_policies", self.registry.policies)
        self._collect("register_window_taggers", self.registry.taggers)

    def _collect(self, hook_name: str, into: dict[str, Any]) -> None:
        # Call each implementation on its own so one that raises costs only itself.
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            found: list[Any] = []
            try:
                impl.function(found.append)
            except Exception as exc:  # a third-party plugin's bug must not take the run down
                self.registry.failures.append(PluginFailure(plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}"))
                continue
            for obj in found:
                into[obj.name] = obj

    @property
    def decoders(self) -> dict[str, Decoder]:
        return self.registry.decoders

    @property
    def policies(self) -> dict[str, ScoringPolicy]:
        return self.registry.policies

    @property
    def taggers(self) -> dict[str, WindowTagger]:
        return self.registry.taggers

    @property
    def failures(self) -> list[PluginFailure]:
        return self.registry.failures

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        return sorted(h.name for h in (self.pm.get_hookcallers(plugin) or []))

    def translate_query(self, text: str, settings: dict[str, Any]):
        return self.pm.hook.translate_query(text=text, settings=settings)


def _wanted() -> set[str] | None:
    raw = os.environ.get("SOUNDSIFT_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def build_plugin_manager(extra: list[object] | None = None) -> PluginHost:
    """Load built-in and entry-point plugins (narrowed by SOUNDSIFT_PLUGINS), plus ``extra`` objects."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    wanted = _wanted()

    def load(name: str, loader: Callable[[], object]) -> None:
        if wanted is not None and name not in wanted:
            return
        try:
            pm.register(loader(), name=name)
        except Exception as exc:
            failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))

    for module in BUILTIN_PLUGINS:
        load(module.rsplit(".", 1)[-1], lambda module=module: importlib.import_module(module))
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        load(ep.name, ep.load)
    for i, obj in enumerate(extra or []):
        pm.register(obj, name=getattr(obj, "__name__", f"extra-{i}"))
    pm.check_pending()
    return PluginHost(pm, failures)


_default: PluginHost | None = None
_lock = threading.Lock()


def default_plugins() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = build_plugin_manager()
        return _default


def reset_default_plugins() -> None:
    """Forget the process-wide host (tests that change SOUNDSIFT_PLUGINS or install plugins)."""
    global _default
    with _lock:
        _default = None
