"""Uploaded files are classified under the server's upload caps: seconds of audio, and a time budget.

The file is decoded in a decode worker process (never in the server process) and embedded a batch at
a time (`search.core.one_file`): the model lock is held for one batch, never for the whole upload. Its
duration is checked from the header as soon as the worker has opened it, and again as the audio
arrives, so a small file that decodes to hours of audio is refused after a few seconds of work.
"""

from __future__ import annotations

from pathlib import Path

from indexer.model import ClapEncoder
from indexer.settings import Settings
from plugins.manager import PluginHost
from search.core.one_file import UploadCaps, UploadTooLong, classify_file
from search.core.requests import ClassifyFileOptions
from search.core.results import FileClassification

__all__ = ["UploadCaps", "UploadTooLong", "classify_upload"]


def classify_upload(
    path: str | Path,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings,
    plugins: PluginHost,
    options: ClassifyFileOptions,
) -> FileClassification:
    """`search.core.one_file.classify_file` under ``settings.max_upload_duration_s`` and ``settings.upload_time_budget_s``.

    Raises UploadTooLong (413) past either cap, DecodeError (422) for audio that does not decode.
    """
    return classify_file(
        path,
        labels,
        encoder,
        settings,
        plugins,
        timeout_s=settings.decode_timeout_s,
        max_audio_s=settings.max_upload_duration_s,
        budget_s=settings.upload_time_budget_s,
        options=options,
    )
