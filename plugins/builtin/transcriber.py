"""Built-in transcriber: any transformers automatic-speech-recognition checkpoint (Whisper, wav2vec2/HuBERT CTC...).

Each window is transcribed on its own, exactly as ``pipeline("automatic-speech-recognition")`` transcribes
that window's audio: resampled (soxr, HQ) to the feature extractor's ``sampling_rate`` and handed to the
pipeline, so a window's text equals the pipeline's text for it. Windows of equal length are batched (no
padding, so a window's text never depends on its batch-mates). Word times come from the pipeline's
``return_timestamps="word"`` where the model has them (CTC models; Whisper checkpoints whose generation
config carries alignment heads); otherwise the text spans the window.

Settings (``[plugin.transcriber]``): ``models`` (hub ids or local directories, ``alias=id`` or
``{id, alias, revision}``), ``language`` (e.g. ``zh``; Whisper is asked for it, other models record it),
``batch_size`` (default 8), ``word_timestamps`` (default true), ``max_new_tokens`` (sequence-to-sequence
models), ``speech_gate_db`` (off by default: windows quieter than this RMS level in dBFS are stored with
no text, without running the model). transformers is imported only when a model is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from soundsift import SpeechTranscriber, SpokenWord, Transcriber, TranscriberLoadError, WindowTranscript, hookimpl

from . import hf_checkpoint
from .hf_checkpoint import (
    checkpoint_revision,
    default_alias,
    load_checked_config,
    one_line,
    parse_model_ref,
    resample_to,
    resolve_device,
)

NAME = "transcriber"
DEFAULT_BATCH = 8


def asr_architectures() -> dict[str, str]:
    """model_type -> the architecture transformers' ASR pipeline runs for it (CTC and speech seq2seq)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CTC_MAPPING_NAMES,
        MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
    )

    return {**dict(MODEL_FOR_CTC_MAPPING_NAMES), **dict(MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES)}


class TransformersTranscriber:
    """One automatic-speech-recognition checkpoint, loaded once into its pipeline (see the module docstring)."""

    def __init__(
        self,
        model_id: str,
        alias: str | None = None,
        revision: str | None = None,
        language: str | None = None,
        device: str | None = "cpu",
        batch_size: int = DEFAULT_BATCH,
        word_timestamps: bool = True,
        max_new_tokens: int | None = None,
        speech_gate_db: float | None = None,
    ):
        self.model_id = str(model_id)
        self.alias = alias or default_alias(self.model_id)
        self.alias_explicit = bool(alias)
        self.language = str(language) if language else None
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens else None
        self.speech_gate_db = None if speech_gate_db is None else float(speech_gate_db)
        self._lock = threading.Lock()
        config = self._check_config(revision)
        self._load(revision)
        self.is_seq2seq = getattr(config, "is_encoder_decoder", False)
        self.sample_rate = int(self.pipe.feature_extractor.sampling_rate)
        self.timestamps: str | None = "word" if word_timestamps and self._has_word_times(config) else None
        self.revision = checkpoint_revision(self.model_id, config, revision)

    # -- loading -------------------------------------------------------------------------------
    def _check_config(self, revision: str | None):
        return load_checked_config(
            self.model_id,
            revision,
            error=TranscriberLoadError,
            noun="speech model",
            architectures_by_type=asr_architectures(),
            refusal="a speech-recognition checkpoint ({what}); give one transformers' automatic-speech-recognition "
            "pipeline runs (a Whisper model or a wav2vec2/HuBERT CTC fine-tune)",
        )

    def _load(self, revision: str | None) -> None:
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.pipe = pipeline(
                "automatic-speech-recognition", model=self.model_id, revision=revision, device=self.device
            )
        except (OSError, ValueError, KeyError) as exc:
            raise TranscriberLoadError(f"cannot load the speech model {self.model_id}: {one_line(exc)}") from None

    def _has_word_times(self, config) -> bool:
        if not self.is_seq2seq:
            return True  # CTC: each character's frame is known
        generation = getattr(self.pipe.model, "generation_config", None)
        return getattr(config, "model_type", "") == "whisper" and bool(getattr(generation, "alignment_heads", None))

    # -- running -------------------------------------------------------------------------------
    def prepare(self, window: np.ndarray, sample_rate: int) -> np.ndarray:
        """One window as the pipeline takes it: mono float32 at the extractor's sampling rate (soxr HQ)."""
        return resample_to(window, sample_rate, self.sample_rate)

    def call_options(self) -> dict[str, Any]:
        """The keyword arguments given to the pipeline (language and token limit for sequence-to-sequence models)."""
        options: dict[str, Any] = {}
        if self.timestamps:
            options["return_timestamps"] = self.timestamps
        generate: dict[str, Any] = {}
        if self.is_seq2seq and self.language:
            generate.update(language=self.language, task="transcribe")
        if self.is_seq2seq and self.max_new_tokens:
            generate["max_new_tokens"] = self.max_new_tokens
        if generate:
            options["generate_kwargs"] = generate
        return options

    def _gated(self, audio: np.ndarray) -> bool:
        if self.speech_gate_db is None:
            return False
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
        return 20 * np.log10(max(rms, 1e-12)) < self.speech_gate_db

    def _result(self, out: Mapping[str, Any]) -> WindowTranscript:
        words = []
        for chunk in out.get("chunks") or []:
            start, end = chunk.get("timestamp") or (None, None)
            if start is None:
                continue
            end = start if end is None else end
            words.append(SpokenWord(str(chunk.get("text", "")).strip(), float(start), float(end)))
        return WindowTranscript(text=str(out.get("text", "")), words=words, language=self.language)

    def transcribe(self, windows: Sequence[np.ndarray], sample_rate: int) -> list[WindowTranscript]:
        """One `WindowTranscript` per window, each window transcribed alone (equal lengths batched)."""
        results: list[WindowTranscript | None] = [None] * len(windows)
        audio = [self.prepare(w, sample_rate) for w in windows]
        by_length: dict[int, list[int]] = {}
        for i, a in enumerate(audio):
            if len(a) == 0 or self._gated(a):
                results[i] = WindowTranscript(text="", language=self.language)
            else:
                by_length.setdefault(len(a), []).append(i)
        options = self.call_options()
        with self._lock:
            for indices in by_length.values():
                outs = self.pipe([audio[i] for i in indices], batch_size=self.batch_size, **options)
                for i, out in zip(indices, outs):
                    results[i] = self._result(out)
        return results  # type: ignore[return-value]


def model_entries(settings: Mapping[str, Any]) -> list:
    """The ``transcriber.models`` entries of the plugin settings view, as a list (a JSON list in an env variable too)."""
    return hf_checkpoint.model_entries(settings, f"{NAME}.models", TranscriberLoadError)


def load_transcribers(settings: Mapping[str, Any]) -> list[SpeechTranscriber]:
    """The speech models ``transcriber.models`` names, loaded with the ``transcriber.*`` options on ``device``."""
    models: list[SpeechTranscriber] = []
    gate = settings.get(f"{NAME}.speech_gate_db")
    for entry in model_entries(settings):
        model_id, alias, revision = parse_model_ref(entry, TranscriberLoadError, kind="transcriber")
        models.append(
            TransformersTranscriber(
                model_id,
                alias=alias,
                revision=revision,
                language=settings.get(f"{NAME}.language") or None,
                device=settings.get("device"),
                batch_size=int(settings.get(f"{NAME}.batch_size", DEFAULT_BATCH) or DEFAULT_BATCH),
                word_timestamps=bool(settings.get(f"{NAME}.word_timestamps", True)),
                max_new_tokens=settings.get(f"{NAME}.max_new_tokens"),
                speech_gate_db=None if gate is None else float(gate),
            )
        )
    return models


@hookimpl
def register_transcribers(register):
    register(
        Transcriber(
            name=NAME,
            load=load_transcribers,
            description="transformers automatic-speech-recognition models (Whisper, wav2vec2/HuBERT CTC): "
            "[plugin.transcriber] models, language, batch_size, word_timestamps, max_new_tokens, speech_gate_db",
        )
    )
