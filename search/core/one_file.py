"""One file classified alone (the upload form, `classify-file`, `classify_audio`): decoded in a worker process,
cropped to a segment, cut into windows and embedded batch by batch, with acoustic warnings and an envelope
gathered on the way. The file is never held whole at 48 kHz: at most a batch of windows and one block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.decode import TARGET_RATE
from indexer.decode_workers import DecodeJob, DecodePool, FileFailed, FileOpened, WindowsDecoded
from indexer.errors import BadInput, DecodeError, SoundsiftError
from indexer.model import ClapEncoder
from indexer.settings import Settings, load_settings
from indexer.window_stream import StreamWindow, WindowsBatch, WindowStream
from indexer.windows import WindowCutter
from plugins.manager import PluginHost, default_plugins
from search.core.classify import (
    ClassifyOptions,
    check_policy_options,
    in_memory_chunks,
    label_matrix,
    policy_named,
    score_chunks,
)
from search.core.envelope import EnvelopeBuilder
from search.core.options import DEFAULT_POLICY, check_segment, with_prompt_template
from search.core.prompts import named_labels, parse_labels, prepare_all
from search.core.requests import ClassifyFileOptions
from search.core.results import AudioInfo, FileClassification

EMBED_BATCH = 8


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


def _fmt(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


def acoustic_warnings(flags: dict[str, list], spans: list[tuple[float, float]]) -> list[str]:
    """Sentences for the silence, clipping and DC flags of the acoustic tagger (one per kind that fired)."""
    out = []
    n = len(spans)
    words = {
        "silence": "silent (below -60 dBFS)",
        "clipping": "clipped (samples at full scale)",
        "dc": "off-centre (DC offset above 0.05)",
    }
    for key, what in words.items():
        hit = [i for i, v in enumerate(flags.get(key, [])) if bool(v)]
        if not hit:
            continue
        where = ", ".join(f"{_fmt(spans[i][0])}–{_fmt(spans[i][1])}" for i in hit[:4]) + (" …" if len(hit) > 4 else "")
        whole = "the whole recording is" if len(hit) == n else f"{len(hit)} of {n} windows are"
        out.append(f"{key}: {whole} {what}: {where}")
    return out


def classify_file(
    path: str | Path,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings | None = None,
    plugins: PluginHost | None = None,
    policy: str = DEFAULT_POLICY,
    timeout_s: float | None = None,
    policy_options: dict | None = None,
    *,
    threshold: float | dict | list | None = None,
    prompt_template: str | None = None,
    start: float | None = None,
    duration: float | None = None,
    envelope_points: int = 0,
    mel_width: int = 600,
    strict: bool | None = None,
    max_audio_s: float | None = None,
    budget_s: float | None = None,
    label_names: list[str] | None = None,
    options: ClassifyFileOptions | None = None,
) -> FileClassification:
    """Classify one file (or its part from ``start`` for ``duration`` seconds) without an index.

    Per-window rows and the file row (each label's max over the windows, with the window where it peaks),
    what the decoder reported (``info``), acoustic ``warnings`` in words, and with ``envelope_points`` the
    waveform envelope and log-mel image of the classified part.

    ``max_audio_s`` and ``budget_s`` are an upload's caps (see `search.http.uploads`): more audio to decode than
    that (from the header, else as it decodes), or more time than that, raises UploadTooLong at once.
    ``label_names`` names the rows' labels (a label set's class names) when ``labels`` are the texts to embed.

    ``options`` (a `ClassifyFileOptions`, as the CLI, the server client and the upload route pass it) replaces
    the policy, policy_options, threshold, prompt_template, start, duration, envelope_points, mel_width, strict
    and label_names arguments.
    """
    o = options or ClassifyFileOptions(
        policy,
        policy_options or {},
        threshold,
        prompt_template,
        start,
        duration,
        envelope_points,
        mel_width,
        strict,
        label_names,
    )
    policy, prompt_template, strict = o.policy, o.prompt_template, o.strict
    envelope_points, mel_width, label_names = o.envelope_points, o.mel_width, o.label_names
    settings = with_prompt_template(settings or load_settings(), prompt_template)
    plugins = plugins or default_plugins()
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    parse_labels(labels)
    if policy_named(plugins.policies, policy).needs_archive_stats:
        raise BadInput(f"the {policy} policy needs an index (archive statistics); use it with `soundsift classify`")
    start_s, duration_s = check_segment(o.start, o.duration)
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    caps = UploadCaps(max_audio_s, budget_s)
    segment = _Segment(window, hop, start_s, duration_s, caps)
    embedded = _Embedded(encoder, plugins.taggers.get("acoustic"), start_s)
    info, decoder_notes = AudioInfo(), list[str]()
    timeout_s = timeout_s or settings.decode_timeout_s
    # The worker sends the stream as back-to-back blocks (window = hop); windows are cut here, after the crop.
    pool = DecodePool(
        DecodeJob.of(settings, window, window), workers=1, timeout_s=min(timeout_s, budget_s or timeout_s)
    )
    stream = WindowStream(
        pool.run([str(path)]), batch_size=settings.batch_size or EMBED_BATCH, files_total=1, framer=segment
    )
    for item in stream:
        caps.check_time()
        if isinstance(item, FileFailed):
            raise DecodeError(f"{path}: {item.reason}")
        if isinstance(item, WindowsBatch):
            embedded.add(item.windows)
        elif isinstance(item, FileOpened):
            info, decoder_notes = segment.opened(item, envelope_points)
    total_s = segment.covered / TARGET_RATE
    if info.duration is None:
        info.duration = total_s
    if segment.cutter.total == 0:
        raise BadInput(f"start {start_s:g} s is at or past the end of the file ({total_s:.2f} s)")
    result = classify_windows(
        [],
        embedded.spans,
        labels,
        encoder,
        settings,
        plugins,
        policy,
        path=str(path),
        strict=strict,
        policy_options=o.scoring_options(),
        vectors=np.concatenate(embedded.vectors),
        label_names=label_names,
    )
    result.info = info
    result.warnings = [*acoustic_warnings(embedded.flags, embedded.spans), *(f"decoder: {n}" for n in decoder_notes)]
    result.start = start_s
    result.duration = segment.cutter.total / TARGET_RATE
    if segment.builder is not None:
        result.envelope = segment.builder.build(envelope_points, mel_width)
    return result


class _Segment:
    """The classified part of one file: the worker's back-to-back blocks cropped to [start, start + duration),
    fed to the envelope, checked against the upload caps and cut into windows here (so they start at ``start``)."""

    def __init__(self, window: int, hop: int, start_s: float, duration_s: float | None, caps: UploadCaps):
        self.start_s, self.duration_s = start_s, duration_s
        self.first = int(round(start_s * TARGET_RATE))
        self.last = None if duration_s is None else self.first + int(round(duration_s * TARGET_RATE))
        self.cutter = WindowCutter(window, hop)
        self.caps = caps
        self.builder: EnvelopeBuilder | None = None
        self.covered = 0  # samples of the stream passed on so far

    def opened(self, event: FileOpened, envelope_points: int) -> tuple[AudioInfo, list[str]]:
        """What the decoder reports before the audio (the header and its notes); checks the cap on audio from the
        header and starts the envelope of the segment when one is asked for."""
        info = AudioInfo(
            duration=event.duration_s,
            sample_rate=event.sample_rate,
            channels=event.channels,
            codec=event.codec,
            decoder=event.decoder,
        )
        end_s = None
        if event.duration_s is not None:  # what the worker would decode: up to the segment's end
            end_s = (
                event.duration_s if self.duration_s is None else min(event.duration_s, self.start_s + self.duration_s)
            )
            self.caps.check_audio(end_s)
        if envelope_points:
            span = None if end_s is None else max(0.0, end_s - self.start_s)
            self.builder = EnvelopeBuilder(TARGET_RATE, start_s=self.start_s, expected_s=span)
        return info, list(getattr(event, "warnings", []) or [])

    def windows(self, event: WindowsDecoded) -> Iterator[StreamWindow]:
        self.caps.check_time()
        for s, length, audio in zip(event.starts, event.lengths, event.audio):
            s, length = int(s), int(length)
            fresh = audio[max(self.covered - s, 0) : length]  # the end-aligned last block repeats what was sent
            at = max(self.covered, s)
            self.covered = max(self.covered, s + length)
            self.caps.check_audio(self.covered / TARGET_RATE)
            lo, hi = max(self.first - at, 0), len(fresh) if self.last is None else min(self.last - at, len(fresh))
            if hi <= lo:
                continue
            seg = fresh[lo:hi]
            if self.builder is not None:
                self.builder.feed(seg)
            for span, samples in self.cutter.feed(seg):
                yield StreamWindow(event.file_idx, span.start, span.length, samples)

    def finish(self, file_idx: int) -> Iterator[StreamWindow]:
        for span, samples in self.cutter.finish():
            yield StreamWindow(file_idx, span.start, span.length, samples)

    def complete(self, file_idx: int) -> bool:
        return self.last is not None and self.covered >= self.last  # the rest of the file is not needed


class _Embedded:
    """Vectors, spans (seconds of the file) and acoustic flags of the windows embedded so far."""

    def __init__(self, encoder: ClapEncoder, tagger, start_s: float):
        self.encoder, self.tagger, self.start_s = encoder, tagger, start_s
        self.vectors: list[np.ndarray] = []
        self.spans: list[tuple[float, float]] = []
        self.flags: dict[str, list] = {}

    def spans_of(self, windows: list[StreamWindow]) -> list[tuple[float, float]]:
        """The windows' spans in seconds of the file."""
        return [
            (w.start / TARGET_RATE + self.start_s, (w.start + w.length) / TARGET_RATE + self.start_s) for w in windows
        ]

    def add(self, windows: list[StreamWindow]) -> None:
        audio = [w.audio for w in windows]
        self.vectors.append(self.encoder.embed_windows(audio))
        self.spans.extend(self.spans_of(windows))
        if self.tagger is None:
            return
        for samples in audio:  # one at a time: a short file's only window is shorter than the rest would be
            try:
                for key, values in self.tagger.tag(samples[None, :], TARGET_RATE).items():
                    self.flags.setdefault(key, []).append(values[0])
            except Exception:  # a tagger's bug costs the warnings, not the classification
                pass


@dataclass
class EmbeddedClip:
    """A file (or its part) cut into windows and embedded: spans in seconds of the file, unit vectors, what the
    decoder reported, acoustic flags per window and the decoder's notes."""

    vectors: np.ndarray
    spans: list[tuple[float, float]]
    info: AudioInfo
    flags: dict[str, list]
    decoder_notes: list[str]
    start_s: float
    duration_s: float  # seconds of audio cut into windows
    total_s: float  # seconds of the stream decoded
    builder: EnvelopeBuilder | None = None


def decode_job(settings: Settings) -> DecodeJob:
    """The decode job of one-file classification: the stream as back-to-back blocks (window = hop); windows are
    cut in this process, after the crop."""
    window = int(round(settings.window_s * TARGET_RATE))
    return DecodeJob.of(settings, window, window)


class ClipEmbedder:
    """One clip's decode events in (its file's part from ``start_s`` for ``duration_s`` seconds), cut and embedded
    exactly as `classify_file` cuts and embeds them, for callers that decode many clips in one pool (evaluation)."""

    def __init__(
        self,
        encoder: ClapEncoder,
        settings: Settings,
        tagger=None,
        start_s: float = 0.0,
        duration_s: float | None = None,
        caps: UploadCaps | None = None,
        envelope_points: int = 0,
        batcher: "SharedBatch | None" = None,
    ):
        window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
        self.segment = _Segment(window, hop, start_s, duration_s, caps or UploadCaps())
        self.embedded = _Embedded(encoder, tagger, start_s)
        self.batch = settings.batch_size or EMBED_BATCH
        self.envelope_points, self.batcher = envelope_points, batcher
        self.pending: list[StreamWindow] = []
        self.info, self.decoder_notes = AudioInfo(), list[str]()

    @property
    def done(self) -> bool:
        """True once the segment's end has been passed (the rest of the file is not needed)."""
        return self.segment.complete(0)

    def opened(self, event: FileOpened) -> None:
        """The header of the clip's file (see `_Segment.opened`)."""
        self.info, self.decoder_notes = self.segment.opened(event, self.envelope_points)

    def feed(self, event: WindowsDecoded) -> None:
        """A run of decoded blocks: the part inside the segment is cut into windows, embedded a batch at a time."""
        for window in self.segment.windows(event):
            self.pending.append(window)
            if len(self.pending) >= self.batch:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.batcher is not None:  # embedded later, batched with other clips' windows
            self.batcher.add(self, [w.audio for w in self.pending], self.embedded.spans_of(self.pending))
        else:
            self.embedded.add(self.pending)
        self.pending = []

    def take(self, vectors: np.ndarray, spans: list[tuple[float, float]]) -> None:
        """Embedded windows of this clip, in order (from a `SharedBatch`)."""
        self.embedded.vectors.append(vectors)
        self.embedded.spans.extend(spans)

    def end_of_audio(self) -> None:
        """The stream is over: the last (or a short file's only) window is cut and embedded (or handed to the
        batcher); BadInput when the segment starts at or past the end of the file."""
        total_s = self.segment.covered / TARGET_RATE
        if self.info.duration is None:
            self.info.duration = total_s
        if self.segment.cutter.total == 0:
            raise BadInput(f"start {self.segment.start_s:g} s is at or past the end of the file ({total_s:.2f} s)")
        self.pending.extend(self.segment.finish(0))
        self._flush()

    def finish(self) -> EmbeddedClip:
        """The embedded clip (`end_of_audio`, then `result`)."""
        self.end_of_audio()
        return self.result()

    def result(self) -> EmbeddedClip:
        """The embedded clip, once every window is embedded (with a batcher: after its last flush)."""
        total_s = self.segment.covered / TARGET_RATE
        return EmbeddedClip(
            vectors=np.concatenate(self.embedded.vectors),
            spans=self.embedded.spans,
            info=self.info,
            flags=self.embedded.flags,
            decoder_notes=self.decoder_notes,
            start_s=self.segment.start_s,
            duration_s=self.segment.cutter.total / TARGET_RATE,
            total_s=total_s,
            builder=self.segment.builder,
        )


class SharedBatch:
    """Windows of several clips embedded together (many short clips: one window each), batch by batch; each
    clip gets its vectors back in order. A window's vector does not depend on its batch-mates."""

    def __init__(self, encoder: ClapEncoder, size: int):
        self.encoder, self.size = encoder, max(1, size)
        self.items: list[tuple[ClipEmbedder, list[np.ndarray], list[tuple[float, float]]]] = []
        self.count = 0

    def add(self, clip: ClipEmbedder, audio: list[np.ndarray], spans: list[tuple[float, float]]) -> None:
        """Hold ``clip``'s windows until the batch is full."""
        self.items.append((clip, audio, spans))
        self.count += len(audio)
        if self.count >= self.size:
            self.flush()

    def flush(self) -> None:
        """Embed everything held and hand each clip its vectors."""
        if not self.items:
            return
        vectors = self.encoder.embed_windows([w for _, audio, _ in self.items for w in audio])
        at = 0
        for clip, audio, spans in self.items:
            clip.take(vectors[at : at + len(audio)], spans)
            at += len(audio)
        self.items, self.count = [], 0


def classify_windows(
    audio_windows: list[np.ndarray],
    spans: list[tuple[float, float]],
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings,
    plugins: PluginHost,
    policy: str = DEFAULT_POLICY,
    path: str | None = None,
    strict: bool | None = None,
    policy_options: dict | None = None,
    vectors: np.ndarray | None = None,
    label_names: list[str] | None = None,
) -> FileClassification:
    """Score windows held in memory against ``labels``: per-window rows and the file row (max per label).

    ``vectors``: the windows' embeddings when already computed (then ``audio_windows`` is not read);
    ``label_names``: the rows' label names when ``labels`` are a label set's texts.
    """
    names = parse_labels(labels)
    scoring = policy_named(plugins.policies, policy)
    if scoring.needs_archive_stats:
        raise BadInput(f"the {policy} policy needs an index (archive statistics); use it with `soundsift classify`")
    prepared = prepare_all(names, plugins, settings, strict)
    names = named_labels(names, prepared, label_names)
    matrix = label_matrix(prepared, encoder)
    if vectors is None:
        vectors = (
            encoder.embed_windows(audio_windows) if audio_windows else np.zeros((0, encoder.embedding_dim), np.float32)
        )
    options = ClassifyOptions(by="window", policy_options=policy_options or {})
    check_policy_options(scoring, matrix, options)
    rows = list(
        score_chunks(iter(in_memory_chunks(vectors, spans)), {0: path or "<array>"}, matrix, scoring, None, options)
    )
    file_options = ClassifyOptions(by="file", policy_options=policy_options or {})
    file_row = next(
        score_chunks(
            iter(in_memory_chunks(vectors, spans)), {0: path or "<array>"}, matrix, scoring, None, file_options
        ),
        None,
    )
    if file_row is None:
        raise BadInput("no audio to classify")
    peak = next((i for i, (a, b) in enumerate(spans) if (a, b) == (file_row.start, file_row.end)), None)
    file_row.peak_window, file_row.peak_start, file_row.peak_end = peak, file_row.start, file_row.end
    if peak is not None and not file_row.extras:
        file_row.extras = dict(rows[peak].extras)  # the file's confidence is its peak window's
    for row in rows + [file_row]:
        row.window_id = None
        row.file_id = None
    return FileClassification(
        path=path, labels=names, texts=[p.texts for p in prepared], policy=policy, windows=rows, file=file_row
    )


def classify_array(
    audio: np.ndarray,
    sample_rate: int,
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings | None = None,
    plugins: PluginHost | None = None,
    policy: str = DEFAULT_POLICY,
    policy_options: dict | None = None,
) -> FileClassification:
    """Classify an in-memory mono (or (frames, channels)) array at ``sample_rate``, window by window."""
    import soxr

    settings = settings or load_settings()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise BadInput("the audio has non-finite samples")
    if sample_rate != TARGET_RATE:
        audio = soxr.resample(audio, sample_rate, TARGET_RATE, quality="HQ").astype(np.float32)
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    cutter = WindowCutter(window, hop)
    pieces = list(cutter.feed(audio)) + list(cutter.finish())
    return classify_windows(
        [w for _, w in pieces],
        [(s.start / TARGET_RATE, (s.start + s.length) / TARGET_RATE) for s, _ in pieces],
        labels,
        encoder,
        settings,
        plugins or default_plugins(),
        policy,
        policy_options=policy_options,
    )
