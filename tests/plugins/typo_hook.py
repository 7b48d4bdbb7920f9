"""Test plugin: implements a hook that does not exist (a typo of register_decoders)."""

from __future__ import annotations

from plugins.hookspecs import hookimpl


@hookimpl
def register_decoder(register):
    raise AssertionError("never called")
