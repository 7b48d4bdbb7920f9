"""Result models shared by the Python API, the CLI's --json output and the HTTP API (the output contract)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_serializer


class SaidHit(BaseModel):
    """What is said in a hit's window: the transcript, where the query matches it, and the segment's own times."""

    text: str
    highlights: list[list[int]] = Field(
        default_factory=list, description="[[start_char, end_char], ...] of the matches in `text`"
    )
    start: float = Field(description="the segment's start inside the window (its first word), seconds in the file")
    end: float = Field(description="the segment's end inside the window (its last word), seconds in the file")


class SearchHit(BaseModel):
    path: str
    start: float
    end: float
    score: float
    window_id: int
    file_id: int
    localized: "Localization | None" = Field(
        None, description="where inside the window the sound is (search --localize)"
    )
    said: SaidHit | None = Field(None, description="what is said in the window (search --said)")

    @model_serializer(mode="wrap")
    def _omit_unlocalized(self, handler):
        # `localized` and `said` appear only when asked for, so a plain hit keeps exactly its documented keys.
        data = handler(self)
        for key in ("localized", "said"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class QueryResult(BaseModel):
    query: str
    texts: list[str] = Field(description="the exact strings embedded for this query")
    negatives: list[str] = Field(default_factory=list)
    untranslated: list[str] = Field(default_factory=list)
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    results: list[QueryResult]


class ClassifyRow(BaseModel):
    path: str
    start: float
    end: float
    scores: dict[str, float]
    label: str | None
    window_id: int | None = None
    file_id: int | None = None
    extras: dict[str, float] = Field(default_factory=dict)
    fired: list[str] = Field(
        default_factory=list, description="every label the policy fired for this row (multilabel, archive)"
    )
    peak_window: int | None = Field(
        None,
        description="file rows: the window where the row's label peaks (its window id in "
        "the index; for one file classified alone, its position in `windows`)",
    )
    peak_start: float | None = Field(None, description="file rows: start of the peak window, seconds")
    peak_end: float | None = Field(None, description="file rows: end of the peak window, seconds")

    @property
    def confidence(self) -> float | None:
        """The policy's confidence for this row (the margin policy's best-minus-second), None when it gives none."""
        return self.extras.get("confidence")


class ClassifyResponse(BaseModel):
    labels: list[str]
    texts: list[list[str]]
    policy: str
    by: str = "window"
    rows: list[ClassifyRow]
    untranslated: list[str] = Field(default_factory=list)
    next_cursor: str | None = None


class FileClassification(BaseModel):
    """One file (or array) classified alone: per-window rows and the file-level result."""

    path: str | None
    labels: list[str]
    texts: list[list[str]]
    policy: str
    windows: list[ClassifyRow]
    file: ClassifyRow
    info: "AudioInfo | None" = Field(
        None, description="what the decoder reported: duration, sample rate, channels, codec"
    )
    warnings: list[str] = Field(
        default_factory=list, description="acoustic warnings in words (silence, clipping, DC offset)"
    )
    start: float = Field(0.0, description="start of the classified part, seconds of the file")
    duration: float | None = Field(None, description="length of the classified part, seconds")
    envelope: "Envelope | None" = Field(None, description="waveform envelope and log-mel image (when asked for)")


class AudioInfo(BaseModel):
    """A decoded file as its decoder describes it."""

    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    decoder: str | None = None


class Envelope(BaseModel):
    """A compact picture of audio for drawing: min/max per bucket and a small log-mel image (PNG, base64)."""

    start: float = Field(description="seconds of the file where the envelope begins")
    duration: float = Field(description="seconds the envelope covers")
    points: int
    min: list[float]
    max: list[float]
    rms_db: list[float] = Field(default_factory=list, description="RMS level per bucket, dBFS")
    mel_png: str | None = Field(None, description="log-mel spectrogram, PNG as base64 (low frequencies at the bottom)")
    mel_width: int = 0
    mel_bands: int = 0
    mel_fmax: float = 0.0
    sample_rate: int = 0


class SubWindowScore(BaseModel):
    start: float
    end: float
    score: float


class Localization(BaseModel):
    """Where inside a window the sound is: the best short sub-window, in seconds of the file."""

    query: str = ""
    texts: list[str] = Field(default_factory=list, description="the exact strings embedded for the query")
    start: float
    end: float
    score: float = Field(description="cosine of the best sub-window with the query")
    window_id: int | None = None
    window_start: float
    window_end: float
    sub_s: float
    hop_s: float
    steps: list[SubWindowScore] = Field(default_factory=list, description="every sub-window's score, in time order")


SearchHit.model_rebuild()
FileClassification.model_rebuild()
