"""Test plugin: registers a policy, then raises while registering decoders; none of it may be used."""

from __future__ import annotations

from plugins.contract import ScoringPolicy
from plugins.hookspecs import hookimpl


@hookimpl
def register_scoring_policies(register):
    register(ScoringPolicy("half_registered", lambda *args: None))


@hookimpl
def register_decoders(register):
    raise RuntimeError("the codec library is not initialised")
