"""The index report: one pydantic model, serialised once, for ``soundsift index --json``, the runs table and HTTP jobs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, computed_field, field_serializer, model_serializer

from indexer.paths import display_path

# A file name as shown: one that is not UTF-8 shows U+FFFD for its stray bytes (JSON, DuckDB and terminals take it).
DisplayPath = Annotated[str, BeforeValidator(lambda p: display_path(str(p)))]


class FileError(BaseModel):
    """A file that failed to index, and why (one line)."""

    path: DisplayPath
    error: str


class FileWarning(BaseModel):
    """An indexed file the decoder left something out of (e.g. a partial last frame)."""

    path: DisplayPath
    warning: str


class FileSkipped(BaseModel):
    """A file the scan did not index, and why (unknown format, symlink out of the roots, unreadable, not a regular file)."""

    path: DisplayPath
    reason: str


class IndexReport(BaseModel):
    """What an indexing run did. `document()` is the JSON every surface prints: CLI, runs table and HTTP."""

    run_id: int
    files_indexed: int = 0  # added + updated
    files_failed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_removed: int = 0
    files_renamed: int = 0
    files_reused: int = 0  # added or updated by copying the windows of identical content (not embedded)
    windows: int = 0  # windows written (embedded or copied)
    windows_removed: int = 0
    runs_interrupted: int = 0  # earlier runs found killed mid-way (marked 'interrupted')
    errors: list[FileError] = Field(default_factory=list)
    warnings: list[FileWarning] = Field(default_factory=list)
    skipped: list[FileSkipped] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    stages: dict[str, Any] = Field(default_factory=dict)  # where each stage ran (a Ray run); a local run has none
    transcripts: list[dict] = Field(default_factory=list)  # the transcribe pass of each [plugin.transcriber] model

    @computed_field  # type: ignore[prop-decorator]
    @property
    def windows_per_s(self) -> float:
        """Windows written per second of the whole run."""
        total = self.timings.get("total_s", 0.0)
        return round(self.windows / total, 3) if total > 0 else 0.0

    @field_serializer("timings")
    def _round_timings(self, timings: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in timings.items()}  # 0.1 ms: finer is noise

    @model_serializer(mode="wrap")
    def _omit_local_stages(self, handler: Any) -> dict[str, Any]:
        # `stages` exists only for a Ray run, so a local run's document is the same wherever it is serialised.
        data = handler(self)
        for key in ("stages", "transcripts"):  # present only where there is something to say
            if not data.get(key):
                data.pop(key, None)
        return data

    def document(self) -> dict[str, Any]:
        """The JSON document of the run: what `--json` prints, the runs table keeps and HTTP jobs carry."""
        return self.model_dump(mode="json")

    @classmethod
    def from_document(cls, doc: dict[str, Any], run_id: int) -> IndexReport | None:
        """A report read back from the runs table (None when the stored summary is not one)."""
        try:
            return cls.model_validate({**doc, "run_id": doc.get("run_id", run_id)})
        except ValueError:
            return None


def report_summary(report: IndexReport) -> dict[str, Any]:
    """The JSON document of a run (kept for callers of the old name)."""
    return report.document()
