"""Test plugin: hands register_window_taggers something that is not a WindowTagger."""

from __future__ import annotations

from plugins.hookspecs import hookimpl


@hookimpl
def register_window_taggers(register):
    register({"name": "loudness"})
