"""What each read operation takes, as one options object, and the one Protocol both readers of an index share.

`search.sound_index.SoundIndex` (the index opened here) and `search.cli.client.RemoteIndex` (the server that owns
it) take the same options objects, so a command builds its options once and makes one call, whichever answers.
The options are split once, where a front end reads them (CLI flags, a request body, a form), and passed down whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from search.core.options import DEFAULT_POLICY
from search.core.results import ClassifyResponse, ClassifyRow, FileClassification, SearchResponse
from search.filters import Filters


@dataclass(frozen=True)
class SearchOptions:
    """Top-k search: hits per query, filters, strict translation, a prompt template, and localisation of hits."""

    k: int = 10
    filters: Filters | None = None
    strict: bool | None = None
    prompt_template: str | None = None
    localize: bool = False
    like: Any = None  # a search.core.like.LikeQuery: examples mixed into the query (Rocchio)
    probe: str | None = None  # PROBE:CLASS: rank by a stored probe's probability
    fuse: str | None = None  # "rrf": the sound ranking fused with the ranking by what is said (filters.said)


@dataclass(frozen=True)
class ClassifyArchiveOptions:
    """Classification of the index: scoring policy and its options, rows per window or file, which rows to keep."""

    policy: str = DEFAULT_POLICY
    by: str = "window"
    top: int | None = None
    threshold: float | None = None
    filters: Filters | None = None
    policy_options: dict[str, Any] = field(default_factory=dict)
    strict: bool | None = None
    prompt_template: str | None = None
    after: int | None = None  # resume after this window or file id (the API's cursor)
    probe: str | None = None  # a stored probe scores the windows in place of a label set
    label_names: list[str] | None = None  # names of the rows' labels (a label set's classes), one per label text


@dataclass(frozen=True)
class ClassifyFileOptions:
    """One file classified alone: policy and its options, threshold, prompt template, a segment, the envelope."""

    policy: str = DEFAULT_POLICY
    policy_options: dict[str, Any] = field(default_factory=dict)
    threshold: float | dict | list | None = None
    prompt_template: str | None = None
    start: float | None = None  # seconds
    duration: float | None = None  # seconds
    envelope_points: int = 0
    mel_width: int = 600
    strict: bool | None = None
    label_names: list[str] | None = None  # names of the rows' labels (a label set's classes), one per label text

    def scoring_options(self) -> dict[str, Any]:
        """The policy's options with the threshold folded in (as the policies read it)."""
        options = dict(self.policy_options or {})
        if self.threshold is not None:
            options["threshold"] = self.threshold
        return options


class IndexReader(Protocol):
    """What a command asks of an index, whether it is open here or owned by a running server."""

    def search(self, queries: list[str], *, options: SearchOptions) -> SearchResponse:
        """Top-k hits per query."""
        ...

    def iter_classify(
        self, labels: list[str] | str, *, options: ClassifyArchiveOptions
    ) -> tuple[ClassifyResponse, Iterator[ClassifyRow]]:
        """The response header and a stream of rows."""
        ...

    def stats(self) -> dict:
        """Files, windows, hours of audio, model and settings."""
        ...


class FileClassifier(Protocol):
    """What `classify-file` asks of whoever classifies the file: the server (an upload) or this process."""

    def classify_file(self, path: Path, labels: str, options: ClassifyFileOptions) -> FileClassification:
        """One file scored per window and as a whole."""
        ...
