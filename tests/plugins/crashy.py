"""Test plugin: a decoder for *.crash files that segfaults its process, as a buggy native decoder would."""

from __future__ import annotations

import ctypes

from plugins.contract import Decoder
from plugins.hookspecs import hookimpl


def open_and_segfault(path, settings):
    ctypes.string_at(0)  # reads address 0: SIGSEGV in the decode worker


@hookimpl
def register_decoders(register):
    register(Decoder(name="crashy", open=open_and_segfault, extensions=("crash",)))
