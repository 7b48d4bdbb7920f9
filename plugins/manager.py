"""One plugin manager: built-in plugins (dotted module names) and third-party entry points, loaded alike.

``SOUNDSIFT_PLUGINS`` (comma-separated plugin names) narrows what loads, as llm's LLM_LOAD_PLUGINS;
set to the empty string it loads none. ``SOUNDSIFT_EXTRA_PLUGINS`` (comma-separated dotted module
names) loads modules that are not installed packages, e.g. a plugin under development or a test's;
it is an environment variable so that decode worker processes, which build their own manager, see
it too. A plugin that fails to import, implements an unknown hook or raises while registering is
recorded by name with the reason and skipped whole; everything else keeps working.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from plugins import hookspecs
from plugins.contract import Decoder, ScoringPolicy, Transcriber, WindowTagger

BUILTIN_PLUGINS: tuple[str, ...] = (
    "plugins.builtin.decode_soundfile",
    "plugins.builtin.decode_pyav",
    "plugins.builtin.decode_slk",
    "plugins.builtin.decode_amr",
    "plugins.builtin.decode_pcm",
    "plugins.builtin.policies",
    "plugins.builtin.taggers",
    "plugins.builtin.tag_classifier",
    "plugins.builtin.transcriber",
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
    transcribers: dict[str, Transcriber] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


# Registration hooks and the contract type each must hand over.
REGISTER_HOOKS: dict[str, tuple[str, type]] = {
    "register_decoders": ("decoders", Decoder),
    "register_scoring_policies": ("policies", ScoringPolicy),
    "register_window_taggers": ("taggers", WindowTagger),
    "register_transcribers": ("transcribers", Transcriber),
}


class PluginHost:
    """The plugin manager plus what its plugins registered."""

    def __init__(self, pm: pluggy.PluginManager, failures: list[PluginFailure]):
        self.pm = pm
        self.registry = Registry(failures=list(failures))
        for name, plugin in list(pm.list_name_plugin()):
            self._collect(name, plugin)

    def _collect(self, plugin_name: str, plugin: object) -> None:
        """Call one plugin's registration hooks; if any raises or hands over a wrong type, skip the plugin whole."""
        found: dict[str, list[Any]] = {kind: [] for kind, _ in REGISTER_HOOKS.values()}
        for hook_name, (kind, expected) in REGISTER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(obj: Any, kind: str = kind, expected: type = expected, hook_name: str = hook_name) -> None:
                    if not isinstance(obj, expected):
                        raise TypeError(f"{hook_name} was given {type(obj).__name__}, expected {expected.__name__}")
                    found[kind].append(obj)

                try:
                    # pluggy passes an implementation only the arguments it names (hooks only gain arguments).
                    arguments = {"register": register}
                    impl.function(**{arg: arguments[arg] for arg in impl.argnames})
                except Exception as exc:  # a third-party plugin's bug must not take the run down
                    message = f"{hook_name}: {type(exc).__name__}: {exc}".replace("\n", " ")
                    self.registry.failures.append(PluginFailure(plugin_name, message))
                    self.pm.unregister(plugin)
                    return
        for kind, objects in found.items():
            into: dict[str, Any] = getattr(self.registry, kind)
            for obj in objects:
                into[obj.name] = obj  # a later plugin may replace an earlier one's object of the same name

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
    def transcribers(self) -> dict[str, Transcriber]:
        return self.registry.transcribers

    @property
    def failures(self) -> list[PluginFailure]:
        return self.registry.failures

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in load order (built-ins, entry points, extra modules)."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def hooks_of(self, name: str) -> list[str]:
        """The hooks plugin ``name`` implements, sorted."""
        plugin = self.pm.get_plugin(name)
        return sorted(h.name for h in (self.pm.get_hookcallers(plugin) or []))

    def translate_query(self, text: str, settings: dict[str, Any]):
        """The first non-None `QueryTranslation` any plugin returns for ``text``, else None."""
        return self.pm.hook.translate_query(text=text, settings=settings)


def _names_from_env(variable: str) -> list[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks ``plugin`` implements that no hookspec declares (a typo, or a hook from a newer soundsift)."""
    return sorted(
        name
        for name, caller in vars(pm.hook).items()
        if not name.startswith("_")
        and not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


def _itself(obj: object) -> object:
    return obj


def build_plugin_manager(extra: list[object] | None = None) -> PluginHost:
    """Load built-in, entry-point and SOUNDSIFT_EXTRA_PLUGINS plugins (narrowed by SOUNDSIFT_PLUGINS), plus ``extra`` objects."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    wanted = _names_from_env("SOUNDSIFT_PLUGINS")
    known_hooks = ", ".join(sorted(n for n in vars(hookspecs) if hasattr(getattr(hookspecs, n), "soundsift_spec")))

    def load(name: str, loader: Callable[[], object], narrowable: bool = True) -> None:
        if narrowable and wanted is not None and name not in wanted:
            return
        try:
            plugin = loader()
            pm.register(plugin, name=name)
        except Exception as exc:  # an import error or a bad hook signature costs this plugin only
            failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}".replace("\n", " ")))
            return
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            pm.unregister(plugin)
            failures.append(
                PluginFailure(name, f"implements unknown hook(s) {', '.join(unknown)}; the hooks are: {known_hooks}")
            )

    for module in BUILTIN_PLUGINS:
        load(module.rsplit(".", 1)[-1], functools.partial(importlib.import_module, module))
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        load(ep.name, ep.load)
    for module in _names_from_env("SOUNDSIFT_EXTRA_PLUGINS") or []:
        load(module, functools.partial(importlib.import_module, module))
    for i, obj in enumerate(extra or []):
        load(getattr(obj, "__name__", f"extra-{i}"), functools.partial(_itself, obj), narrowable=False)
    pm.check_pending()  # unknown hooks were already reported and unregistered above, so this passes
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
