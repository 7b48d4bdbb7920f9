"""Uploaded files are classified under the server's upload caps: seconds of audio, and a time budget.

The file is decoded in a decode worker process (never in the server process) and embedded a batch at
a time (`search.core.one_file`): the model lock is held for one batch, never for the whole upload. Its
duration is checked from the header as soon as the worker has opened it, and again as the audio
arrives, so a small file that decodes to hours of audio is refused after a few seconds of work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from indexer.errors import SoundsiftError
from indexer.model import ClapEncoder
from indexer.settings import Settings
from plugins.manager import PluginHost
from search.core.results import FileClassification


class UploadTooLong(SoundsiftError):
    """An upload holds more audio than ``max_upload_duration_s`` or needs more than ``upload_time_budget_s`` (HTTP 413)."""


@dataclass
class UploadCaps:
    """Seconds of audio one upload may decode and seconds it may take; None: no cap."""

    max_audio_s: float | None = None
    budget_s: float | None = None
    started: float = field(default_factory=time.monotonic)

    def check_audio(self, seconds: float) -> None:
        """Raise UploadTooLong when ``seconds`` of audio (from the header, or decoded so far) pass the cap."""
        if self.max_audio_s is not None and seconds > self.max_audio_s + 1e-6:
            raise UploadTooLong(
                f"the upload holds {seconds:.0f} s of audio, over the limit of {self.max_audio_s:.0f} s per upload "
                "(max_upload_duration_s); send a shorter part (start, duration) or index it with `soundsift index`"
            )

    def check_time(self) -> None:
        """Raise UploadTooLong once the upload has taken longer than its budget."""
        if self.budget_s is not None and time.monotonic() - self.started > self.budget_s:
            raise UploadTooLong(
                f"the upload took more than {self.budget_s:.0f} s to decode and classify (upload_time_budget_s); "
                "send a shorter file, or index it with `soundsift index`"
            )


def classify_upload(
    path: str | Path,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings,
    plugins: PluginHost,
    policy: str = "softmax",
    policy_options: dict | None = None,
    **options,
) -> FileClassification:
    """`search.core.one_file.classify_file` under ``settings.max_upload_duration_s`` and ``settings.upload_time_budget_s``.

    Raises UploadTooLong (413) past either cap, DecodeError (422) for audio that does not decode.
    """
    from search.core.one_file import classify_file

    return classify_file(
        path,
        labels,
        encoder,
        settings,
        plugins,
        policy,
        settings.decode_timeout_s,
        policy_options,
        max_audio_s=settings.max_upload_duration_s,
        budget_s=settings.upload_time_budget_s,
        **options,
    )
