"""One file classified alone (the upload form, `classify-file`, `classify_audio`): decoded in a worker process,
cropped to a segment, cut into windows and embedded batch by batch, with acoustic warnings and an envelope
gathered on the way. The file is never held whole at 48 kHz: at most a batch of windows and one block.
"""

from __future__ import annotations

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
