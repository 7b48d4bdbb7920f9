"""One file classified alone (the upload form, `classify-file`, `classify_audio`): decoded in a worker process,
cropped to a segment, cut into windows and embedded batch by batch, with acoustic warnings and an envelope
gathered on the way. The file is never held whole at 48 kHz: at most a batch of windows and one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.decode import TARGET_RATE, DecodeLimits
from indexer.decode_workers import DecodeJob, DecodePool, FileFailed, FileOpened, WindowsDecoded
from indexer.errors import BadInput, DecodeError
from indexer.model import ClapEncoder
from indexer.settings import Settings, load_settings
from indexer.windows import WindowCutter
from plugins.manager import PluginHost, default_plugins
from search.core.classify import policy_named
from search.core.envelope import EnvelopeBuilder
from search.core.options import check_segment, with_prompt_template
from search.core.prompts import parse_labels
from search.core.results import AudioInfo, FileClassification

EMBED_BATCH = 8


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
    return DecodeJob(
        window=window,
        hop=window,
        plugin_settings=settings.plugin_view(),
        limits=DecodeLimits(
            settings.min_sample_rate, settings.max_sample_rate, settings.max_channels, settings.max_duration_s
        ),
    )


class ClipEmbedder:
    """One file's decode events in, its part from ``start_s`` for ``duration_s`` seconds cut into windows and
    embedded batch by batch: never the whole file at 48 kHz, at most a batch of windows and one block."""

    def __init__(
        self,
        encoder: ClapEncoder,
        settings: Settings,
        tagger=None,
        start_s: float = 0.0,
        duration_s: float | None = None,
        caps=None,
        envelope_points: int = 0,
        batcher: "SharedBatch | None" = None,
    ):
        self.encoder, self.tagger, self.caps, self.batcher = encoder, tagger, caps, batcher
        self.start_s, self.duration_s, self.envelope_points = start_s, duration_s, envelope_points
        self.first = int(round(start_s * TARGET_RATE))
        self.last = None if duration_s is None else self.first + int(round(duration_s * TARGET_RATE))
        window, hop = int(round(settings.window_s * TARGET_RATE)), int(round(settings.hop_s * TARGET_RATE))
        self.cutter = WindowCutter(window, hop)
        self.batch = settings.batch_size or EMBED_BATCH
        self.pending: list = []
        self.vectors: list[np.ndarray] = []
        self.spans: list[tuple[float, float]] = []
        self.flags: dict[str, list] = {}
        self.info = AudioInfo()
        self.builder: EnvelopeBuilder | None = None
        self.covered = 0  # samples of the stream passed on so far

    @property
    def done(self) -> bool:
        """True once the segment's end has been passed (the rest of the file is not needed)."""
        return self.last is not None and self.covered >= self.last

    def opened(self, event: FileOpened) -> None:
        """What the decoder reports before the audio: the header, the cap on audio, the envelope's span."""
        self.info = AudioInfo(
            duration=event.duration_s,
            sample_rate=event.sample_rate,
            channels=event.channels,
            codec=event.codec,
            decoder=event.decoder,
        )
        end = None
        if event.duration_s is not None:  # what the worker would decode: up to the segment's end
            end = event.duration_s if self.duration_s is None else min(event.duration_s, self.start_s + self.duration_s)
            if self.caps is not None:
                self.caps.check_audio(end)
        if self.envelope_points:
            span = None if end is None else max(0.0, end - self.start_s)
            self.builder = EnvelopeBuilder(TARGET_RATE, start_s=self.start_s, expected_s=span)
        self.flags["decoder"] = list(getattr(event, "warnings", []) or [])

    def feed(self, event: WindowsDecoded) -> None:
        """A run of decoded blocks: the part inside the segment is cut into windows, embedded a batch at a time."""
        for s, length, audio in zip(event.starts, event.lengths, event.audio):
            s, length = int(s), int(length)
            fresh = audio[max(self.covered - s, 0) : length]  # the end-aligned last block repeats what was sent
            at = max(self.covered, s)
            self.covered = max(self.covered, s + length)
            if self.caps is not None:
                self.caps.check_audio(self.covered / TARGET_RATE)
            lo, hi = max(self.first - at, 0), len(fresh) if self.last is None else min(self.last - at, len(fresh))
            if hi <= lo:
                continue
            seg = fresh[lo:hi]
            if self.builder is not None:
                self.builder.feed(seg)
            for item in self.cutter.feed(seg):
                self.pending.append(item)
                if len(self.pending) >= self.batch:
                    self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        audio = [w for _, w in self.pending]
        spans = [
            (sp.start / TARGET_RATE + self.start_s, (sp.start + sp.length) / TARGET_RATE + self.start_s)
            for sp, _ in self.pending
        ]
        if self.batcher is not None:  # embedded later, batched with other clips' windows
            self.batcher.add(self, audio, spans)
        else:
            self.take(self.encoder.embed_windows(audio), spans)
        if self.tagger is not None:
            for w in audio:  # one at a time: a short file's only window is shorter than the rest would be
                try:
                    for key, values in self.tagger.tag(w[None, :], TARGET_RATE).items():
                        self.flags.setdefault(key, []).append(values[0])
                except Exception:  # a tagger's bug costs the warnings, not the classification
                    pass
        self.pending.clear()

    def take(self, vectors: np.ndarray, spans: list[tuple[float, float]]) -> None:
        """Embedded windows of this clip, in order."""
        self.vectors.append(vectors)
        self.spans.extend(spans)

    def end_of_audio(self) -> None:
        """The stream is over: the last (or a short file's only) window is cut and embedded (or handed to the
        batcher); BadInput when the segment starts at or past the end of the file."""
        total_s = self.covered / TARGET_RATE
        if self.info.duration is None:
            self.info.duration = total_s
        if self.cutter.total == 0:
            raise BadInput(f"start {self.start_s:g} s is at or past the end of the file ({total_s:.2f} s)")
        self.pending.extend(self.cutter.finish())
        self._flush()

    def finish(self) -> EmbeddedClip:
        """The embedded clip (`end_of_audio`, then `result`)."""
        self.end_of_audio()
        return self.result()

    def result(self) -> EmbeddedClip:
        """The embedded clip, once every window is embedded (with a batcher: after its last flush)."""
        total_s = self.covered / TARGET_RATE
        notes = self.flags.pop("decoder", [])
        return EmbeddedClip(
            vectors=np.concatenate(self.vectors),
            spans=self.spans,
            info=self.info,
            flags=self.flags,
            decoder_notes=notes,
            start_s=self.start_s,
            duration_s=self.cutter.total / TARGET_RATE,
            total_s=total_s,
            builder=self.builder,
        )


class SharedBatch:
    """Windows of several clips embedded together (many short clips: one window each), batch by batch; each
    clip gets its vectors back in order. A window's vector does not depend on its batch-mates."""

    def __init__(self, encoder: ClapEncoder, size: int):
        self.encoder, self.size = encoder, max(1, size)
        self.items: list[tuple[ClipEmbedder, list[np.ndarray], list[tuple[float, float]]]] = []
        self.count = 0

    def add(self, clip: ClipEmbedder, audio: list[np.ndarray], spans: list[tuple[float, float]]) -> None:
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
    label_names: list[str] | None = None,
) -> FileClassification:
    """Classify one file (or its part from ``start`` for ``duration`` seconds) without an index.

    Per-window rows and the file row (each label's max over the windows, with the window where it peaks),
    what the decoder reported (``info``), acoustic ``warnings`` in words, and with ``envelope_points`` the
    waveform envelope and log-mel image of the classified part.

    ``max_audio_s`` and ``budget_s`` are an upload's caps (see `search.http.uploads`): more audio to decode than
    that (from the header, else as it decodes), or more time than that, raises UploadTooLong at once.
    ``label_names`` names the rows' labels (a label set's class names) when ``labels`` are the texts to embed.
    """
    from search.http.uploads import UploadCaps
    from search.sound_index import classify_windows

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
    caps = UploadCaps(max_audio_s, budget_s)
    clip = ClipEmbedder(encoder, settings, plugins.taggers.get("acoustic"), start_s, duration_s, caps, envelope_points)
    timeout_s = timeout_s or settings.decode_timeout_s
    for event in DecodePool(decode_job(settings), workers=1, timeout_s=min(timeout_s, budget_s or timeout_s)).run(
        [str(path)]
    ):
        caps.check_time()
        if isinstance(event, FileFailed):
            raise DecodeError(f"{path}: {event.reason}")
        if isinstance(event, FileOpened):
            clip.opened(event)
        elif isinstance(event, WindowsDecoded):
            clip.feed(event)
            if clip.done:
                break  # the rest of the file is not needed (the pool stops its worker)
    embedded = clip.finish()
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
        policy_options=options,
        vectors=embedded.vectors,
        label_names=label_names,
    )
    result.info = embedded.info
    result.warnings = [
        *acoustic_warnings(embedded.flags, embedded.spans),
        *(f"decoder: {n}" for n in embedded.decoder_notes),
    ]
    result.start = start_s
    result.duration = embedded.duration_s
    if embedded.builder is not None:
        result.envelope = embedded.builder.build(envelope_points, mel_width)
    return result
