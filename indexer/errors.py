"""Domain errors a user can cause, each with a message that says what to do. The CLI prints them in one line."""

from __future__ import annotations

from plugins.contract import DecodeError

__all__ = [
    "BadInput",
    "DecodeError",
    "DiskFull",
    "IndexCorrupt",
    "IndexLocked",
    "IndexMissing",
    "ModelMismatch",
    "ModelNotFound",
    "SoundsiftError",
    "UnknownPolicy",
]


class SoundsiftError(Exception):
    """Base of every error soundsift reports to a user without a traceback."""

    exit_code = 2


class ModelNotFound(SoundsiftError):
    """CLAP weights are not in the given directory, the HF cache, or reachable."""


class ModelMismatch(SoundsiftError):
    """The index was written by another model or feature configuration."""


class IndexLocked(SoundsiftError):
    """Another process owns the index."""


class IndexMissing(SoundsiftError):
    """No index at the given directory."""


class IndexCorrupt(SoundsiftError):
    """The index database cannot be opened."""


class DiskFull(SoundsiftError):
    """A write to the index failed for lack of space; the last commit keeps serving."""


class BadInput(SoundsiftError):
    """A path, label list, query or option the user gave is unusable."""


class UnknownPolicy(BadInput):
    """No scoring policy of that name is registered."""
