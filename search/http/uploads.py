"""Uploaded files are classified under the server's upload caps: seconds of audio, and a time budget.

The file is decoded in a decode worker process (never in the server process) and embedded a batch at
a time (`search.core.one_file`): the model lock is held for one batch, never for the whole upload. Its
duration is checked from the header as soon as the worker has opened it, and again as the audio
arrives, so a small file that decodes to hours of audio is refused after a few seconds of work.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import UploadFile

from indexer.errors import BadInput
from indexer.model import ClapEncoder
from indexer.settings import Settings
from plugins.manager import PluginHost
from search.core.one_file import UploadCaps, UploadTooLong, classify_file
from search.core.requests import ClassifyFileOptions
from search.core.results import FileClassification

__all__ = ["UploadCaps", "UploadTooLong", "classify_upload", "saved_upload"]

UPLOAD_CHUNK = 1 << 20


@contextlib.asynccontextmanager
async def saved_upload(file: UploadFile, upload_dir: str | Path) -> AsyncIterator[Path]:
    """The upload streamed to a temporary file in ``upload_dir``, refused (422) when empty; deleted, and the upload
    closed, when the block ends. The name keeps the upload's suffix when it is a plain extension (decoders read it)."""
    suffix = Path(file.filename or "").suffix.lower()
    suffix = suffix if suffix[1:].isalnum() and suffix.isascii() and len(suffix) <= 9 else ""
    with tempfile.NamedTemporaryFile(dir=upload_dir, suffix=suffix, delete=False) as fh:
        saved = Path(fh.name)
    try:
        with open(saved, "wb") as out:
            while chunk := await file.read(UPLOAD_CHUNK):
                out.write(chunk)
        if saved.stat().st_size == 0:
            raise BadInput("the upload is empty")
        yield saved
    finally:
        saved.unlink(missing_ok=True)
        await file.close()


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
