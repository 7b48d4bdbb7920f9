"""soundsift's plugin contract (hookspecs and the types they pass) and its built-in plugins.

Nothing here imports ``indexer`` or ``search``: plugin authors depend on this package alone.
"""

from plugins.contract import (
    ArchiveStats,
    AudioSource,
    DecodeError,
    Decoder,
    LabelTexts,
    PolicyResult,
    QueryTranslation,
    ScoringPolicy,
    WindowTagger,
)
from plugins.hookspecs import hookimpl

__all__ = [
    "ArchiveStats",
    "AudioSource",
    "DecodeError",
    "Decoder",
    "LabelTexts",
    "PolicyResult",
    "QueryTranslation",
    "ScoringPolicy",
    "WindowTagger",
    "hookimpl",
]
