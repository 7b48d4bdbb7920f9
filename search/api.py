"""Older name of the Python API module, kept so ``from search.api import SoundIndex`` keeps working.

New code imports from ``search.sound_index`` (the Python API) and ``search.core.topk`` (the search algorithm).
"""

from search.core.topk import EXACT_FILTERED_MAX, exact_search  # noqa: F401
from search.sound_index import *  # noqa: F401,F403
from search.sound_index import (  # noqa: F401
    FilePaths,
    SoundIndex,
    classify_array,
    classify_audio,
    classify_audio_result,
    classify_file,
    classify_windows,
    dumps,
    label_matrix,
    load_encoder,
    prepare_all,
    stored_model_id,
    warn_if_tiny,
)
