"""One file classified alone (the upload form, `classify-file`, `classify_audio`): decoded in a worker process,
cropped to a segment, cut into windows and embedded batch by batch, with acoustic warnings and an envelope
gathered on the way. The file is never held whole at 48 kHz: at most a batch of windows and one block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.decode import TARGET_RATE, DecodeLimits
from indexer.decode_workers import DecodeJob, DecodePool, FileFailed, FileOpened, WindowsDecoded
from indexer.errors import BadInput, DecodeError, SoundsiftError
from indexer.model import ClapEncoder
from indexer.settings import Settings, load_settings
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
from search.core.options import check_segment, with_prompt_template
from search.core.prompts import parse_labels, prepare_all
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
    policy: str = "softmax",
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
) -> FileClassification:
    """Classify one file (or its part from ``start`` for ``duration`` seconds) without an index.

    Per-window rows and the file row (each label's max over the windows, with the window where it peaks),
    what the decoder reported (``info``), acoustic ``warnings`` in words, and with ``envelope_points`` the
    waveform envelope and log-mel image of the classified part.

    ``max_audio_s`` and ``budget_s`` are an upload's caps (see `search.http.uploads`): more audio to decode than
    that (from the header, else as it decodes), or more time than that, raises UploadTooLong at once.
    """
    settings = with_prompt_template(settings or load_settings(), prompt_template)
    plugins = plugins or default_plugins()
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    parse_labels(labels)
    if policy_named(plugins.policies, policy).needs_archive_stats:
        raise BadInput(f"the {policy} policy needs an index (archive statistics); use it with `soundsift classify`")
    start_s, duration_s = check_segment(start, duration)
    options = dict(policy_options or {})
    if threshold is not None:
        options["threshold"] = threshold
    window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
    # The worker sends the stream as back-to-back blocks (window = hop); windows are cut here, after the crop.
    job = DecodeJob(
        window=window,
        hop=window,
        plugin_settings=settings.plugin_view(),
        limits=DecodeLimits(
            settings.min_sample_rate, settings.max_sample_rate, settings.max_channels, settings.max_duration_s
        ),
    )
    first = int(round(start_s * TARGET_RATE))
    last = None if duration_s is None else first + int(round(duration_s * TARGET_RATE))
    cutter = WindowCutter(window, hop)
    tagger = plugins.taggers.get("acoustic")
    batch = settings.batch_size or EMBED_BATCH
    pending: list = []
    vectors: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    flags: dict[str, list] = {}
    info = AudioInfo()
    builder: EnvelopeBuilder | None = None
    covered = 0  # samples of the stream passed on so far

    def flush() -> None:
        if not pending:
            return
        audio = [w for _, w in pending]
        vectors.append(encoder.embed_windows(audio))
        spans.extend(
            (sp.start / TARGET_RATE + start_s, (sp.start + sp.length) / TARGET_RATE + start_s) for sp, _ in pending
        )
        if tagger is not None:
            for w in audio:  # one at a time: a short file's only window is shorter than the rest would be
                try:
                    for key, values in tagger.tag(w[None, :], TARGET_RATE).items():
                        flags.setdefault(key, []).append(values[0])
                except Exception:  # a tagger's bug costs the warnings, not the classification
                    pass
        pending.clear()

    caps = UploadCaps(max_audio_s, budget_s)
    timeout_s = timeout_s or settings.decode_timeout_s
    for event in DecodePool(job, workers=1, timeout_s=min(timeout_s, budget_s or timeout_s)).run([str(path)]):
        caps.check_time()
        if isinstance(event, FileFailed):
            raise DecodeError(f"{path}: {event.reason}")
        if isinstance(event, FileOpened):
            info = AudioInfo(
                duration=event.duration_s,
                sample_rate=event.sample_rate,
                channels=event.channels,
                codec=event.codec,
                decoder=event.decoder,
            )
            if event.duration_s is not None:  # what the worker would decode: up to the segment's end
                caps.check_audio(
                    event.duration_s if duration_s is None else min(event.duration_s, start_s + duration_s)
                )
            if envelope_points:
                span = (
                    None
                    if event.duration_s is None
                    else max(
                        0.0,
                        (event.duration_s if duration_s is None else min(event.duration_s, start_s + duration_s))
                        - start_s,
                    )
                )
                builder = EnvelopeBuilder(TARGET_RATE, start_s=start_s, expected_s=span)
            flags["decoder"] = list(getattr(event, "warnings", []) or [])
            continue
        if not isinstance(event, WindowsDecoded):
            continue
        for s, length, audio in zip(event.starts, event.lengths, event.audio):
            s, length = int(s), int(length)
            fresh = audio[max(covered - s, 0) : length]  # the end-aligned last block repeats what was sent
            at = max(covered, s)
            covered = max(covered, s + length)
            caps.check_audio(covered / TARGET_RATE)
            lo, hi = max(first - at, 0), len(fresh) if last is None else min(last - at, len(fresh))
            if hi <= lo:
                continue
            seg = fresh[lo:hi]
            if builder is not None:
                builder.feed(seg)
            for item in cutter.feed(seg):
                pending.append(item)
                if len(pending) >= batch:
                    flush()
        if last is not None and covered >= last:
            break  # the rest of the file is not needed (the pool stops its worker)
    total_s = covered / TARGET_RATE
    if info.duration is None:
        info.duration = total_s
    if cutter.total == 0:
        raise BadInput(f"start {start_s:g} s is at or past the end of the file ({total_s:.2f} s)")
    pending.extend(cutter.finish())
    flush()
    decoder_notes = flags.pop("decoder", [])
    result = classify_windows(
        [],
        spans,
        labels,
        encoder,
        settings,
        plugins,
        policy,
        path=str(path),
        strict=strict,
        policy_options=options,
        vectors=np.concatenate(vectors),
    )
    result.info = info
    result.warnings = [*acoustic_warnings(flags, spans), *(f"decoder: {n}" for n in decoder_notes)]
    result.start = start_s
    result.duration = cutter.total / TARGET_RATE
    if builder is not None:
        result.envelope = builder.build(envelope_points, mel_width)
    return result


def classify_windows(
    audio_windows: list[np.ndarray],
    spans: list[tuple[float, float]],
    labels: list[str] | str,
    encoder: ClapEncoder,
    settings: Settings,
    plugins: PluginHost,
    policy: str = "softmax",
    path: str | None = None,
    strict: bool | None = None,
    policy_options: dict | None = None,
    vectors: np.ndarray | None = None,
) -> FileClassification:
    """Score windows held in memory against ``labels``: per-window rows and the file row (max per label).

    ``vectors``: the windows' embeddings when already computed (then ``audio_windows`` is not read).
    """
    names = parse_labels(labels)
    scoring = policy_named(plugins.policies, policy)
    if scoring.needs_archive_stats:
        raise BadInput(f"the {policy} policy needs an index (archive statistics); use it with `soundsift classify`")
    prepared = prepare_all(names, plugins, settings, strict)
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
    policy: str = "softmax",
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
