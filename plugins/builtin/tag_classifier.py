"""Built-in window tagger: any transformers audio-classification checkpoint (AST, wav2vec2, HuBERT, Whisper...).

Each model gets its windows exactly as its own ``audio-classification`` pipeline would prepare one
window: resampled (soxr, HQ) to the feature extractor's ``sampling_rate``, then that extractor (which
cuts or pads to the model's own length), the model, ``function_to_apply`` and the top ``top_k`` labels.
Windows of equal length are batched; the results equal the pipeline's, window by window.

Settings (``[plugin.classifier]``): ``models`` (hub ids or local directories, optionally ``alias=id``
or ``{id = ..., alias = ..., revision = ...}``), ``top_k`` (default 5, 0 = every label),
``function_to_apply`` (softmax, sigmoid or none; default: the model's own, as the pipeline picks it),
``batch_size`` (default 8). transformers is imported only when a model is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from soundsift import ClassifierLoadError, WindowTagger, hookimpl

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

NAME = "classifier"
DEFAULT_TOP_K = 5
DEFAULT_BATCH = 8
FUNCTIONS = ("softmax", "sigmoid", "none")


class TransformersClassifier:
    """One audio-classification checkpoint, loaded once and run on batches of windows (see the module docstring)."""

    def __init__(
        self,
        model_id: str,
        alias: str | None = None,
        revision: str | None = None,
        top_k: int | None = DEFAULT_TOP_K,
        function_to_apply: str | None = None,
        device: str | None = "cpu",
        batch_size: int = DEFAULT_BATCH,
    ):
        if function_to_apply is not None and function_to_apply not in FUNCTIONS:
            raise ClassifierLoadError(
                f"function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function_to_apply!r}"
            )
        if top_k is not None and int(top_k) < 0:
            raise ClassifierLoadError(f"top_k must be 0 (every label) or more, not {top_k}")
        self.model_id = str(model_id)
        self.alias = alias or default_alias(self.model_id)
        self.alias_explicit = bool(alias)  # an index keeps the alias it knows a model by unless a new one is given
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self._lock = threading.Lock()
        config = self._load_config(revision)
        self._load_model(revision, config)
        num_labels = int(self.model.config.num_labels)
        self.labels = tuple(str(self.model.config.id2label[i]) for i in range(num_labels))
        self.top_k = num_labels if not top_k else min(int(top_k), num_labels)
        problem = getattr(self.model.config, "problem_type", None)
        self.function_to_apply = function_to_apply or {
            "regression": "none",
            "multi_label_classification": "sigmoid",
        }.get(str(problem), "softmax")
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.revision = checkpoint_revision(self.model_id, self.model.config, revision)

    # -- loading -------------------------------------------------------------------------------
    def _load_config(self, revision: str | None):
        from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES

        return load_checked_config(
            self.model_id,
            revision,
            error=ClassifierLoadError,
            noun="model",
            architectures_by_type=MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
            refusal="an audio-classification checkpoint ({what}); give one transformers' audio-classification "
            "pipeline runs (e.g. an AST, wav2vec2 or HuBERT fine-tune)",
        )

    def _load_model(self, revision: str | None, config) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # as for CLAP: a progress bar per shard is noise on a CLI's stderr

        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.model_id, revision=revision)
            model = AutoModelForAudioClassification.from_pretrained(self.model_id, revision=revision, config=config)
        except (OSError, ValueError) as exc:
            raise ClassifierLoadError(f"cannot load the audio classifier {self.model_id}: {one_line(exc)}") from None
        self.model = model.to(self.device).eval()

    # -- running -------------------------------------------------------------------------------
    def prepare(self, window: np.ndarray, sample_rate: int) -> np.ndarray:
        """One window as this model's pipeline takes it: mono float32 at the extractor's sampling rate (soxr HQ)."""
        return resample_to(window, sample_rate, self.sample_rate)

    def scores(self, windows: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, labels) scores after ``function_to_apply``, for windows of one length, in batches."""
        import torch

        out = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                audio = [self.prepare(w, sample_rate) for w in windows[i : i + self.batch_size]]
                inputs = self.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
                logits = self.model(**inputs).logits.float()
                if self.function_to_apply == "softmax":
                    logits = logits.softmax(-1)
                elif self.function_to_apply == "sigmoid":
                    logits = logits.sigmoid()
                out.append(logits.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def classify(self, windows: np.ndarray, sample_rate: int) -> list[list[tuple[str, float]]]:
        """The top ``top_k`` (label, score) pairs per window, best first (ties in the pipeline's torch.topk order)."""
        import torch

        windows = list(windows)  # type: ignore[assignment]  # one array per window from here on
        if not windows:
            return []
        results: list[list[tuple[str, float]] | None] = [None] * len(windows)
        # Equal lengths batch without padding, so a window's scores never depend on its batch-mates.
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_length.setdefault(len(w), []).append(i)
        for indices in by_length.values():
            probs = torch.from_numpy(self.scores([windows[i] for i in indices], sample_rate))
            top_s, top_i = probs.topk(self.top_k, dim=-1)
            for row, i in enumerate(indices):
                results[i] = [(self.labels[j], float(s)) for s, j in zip(top_s[row].tolist(), top_i[row].tolist())]
        return results  # type: ignore[return-value]


def model_entries(settings: Mapping[str, Any]) -> list:
    """The ``classifier.models`` entries of the plugin settings view, as a list (a JSON list in an env variable too)."""
    return hf_checkpoint.model_entries(settings, f"{NAME}.models", ClassifierLoadError)


def load_classifiers(settings: Mapping[str, Any]) -> list[TransformersClassifier]:
    """The models ``classifier.models`` names, loaded with ``classifier.top_k`` / ``function_to_apply`` on ``device``."""
    entries = model_entries(settings)
    top_k = settings.get(f"{NAME}.top_k", DEFAULT_TOP_K)
    function = settings.get(f"{NAME}.function_to_apply") or None
    batch = settings.get(f"{NAME}.batch_size", DEFAULT_BATCH)
    models = []
    for entry in entries:
        model_id, alias, revision = parse_model_ref(entry, ClassifierLoadError)
        models.append(
            TransformersClassifier(
                model_id,
                alias=alias,
                revision=revision,
                top_k=top_k,
                function_to_apply=function,
                device=settings.get("device"),
                batch_size=batch,
            )
        )
    return models


def _no_flat_tags(windows: np.ndarray, sample_rate: int) -> dict:
    return {}  # this tagger's results go to their own table, keyed by model and revision


@hookimpl
def register_window_taggers(register):
    register(
        WindowTagger(
            name=NAME,
            tag=_no_flat_tags,
            classifiers=load_classifiers,
            description="fixed-label transformers audio classifiers (AST, wav2vec2, HuBERT...): "
            "[plugin.classifier] models, top_k, function_to_apply",
        )
    )
