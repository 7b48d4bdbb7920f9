"""Older name of the Python API module, kept so ``from search.api import SoundIndex`` keeps working.

New code imports from ``search.sound_index`` (the Python API) and ``search.core.topk`` (the search algorithm).
"""

from search.core.prompts import prepare_all  # noqa: F401
from search.core.topk import EXACT_FILTERED_MAX, exact_search  # noqa: F401
from search.sound_index import *  # noqa: F401,F403
from search.sound_index import (  # noqa: F401
    FilePaths,
    SoundIndex,
    classify_audio,
    classify_audio_result,
    dumps,
    load_encoder,
    stored_model_id,
    warn_if_tiny,
)


def __getattr__(name: str):
    # label_matrix, classify_windows, classify_array, classify_file: defined with their concept, loaded on first use
    # (they bring torch), exactly as from search.sound_index.
    import search.sound_index

    return getattr(search.sound_index, name)
