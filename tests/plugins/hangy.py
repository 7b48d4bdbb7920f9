"""Test plugin: a decoder for *.hang files that never returns, as a decoder stuck on hostile input would."""

from __future__ import annotations

import time

from plugins.contract import Decoder
from plugins.hookspecs import hookimpl


def open_and_hang(path, settings):
    time.sleep(3600)


@hookimpl
def register_decoders(register):
    register(Decoder(name="hangy", open=open_and_hang, extensions=("hang",)))
