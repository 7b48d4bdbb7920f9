"""The CLAP model: loading (local dir, HF cache, hub), audio-window and text embeddings, L2-normalised once."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from indexer.errors import ModelNotFound
from indexer.features import LogMelFeatures


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that wrote it."""

    model_id: str
    revision: str
    fingerprint: str
    embedding_dim: int
    feature_config: dict

    def describe(self) -> str:
        return f"{self.model_id}@{self.revision} ({self.fingerprint[:12]})"


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; anything else is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _not_found(model: str, reason: str) -> ModelNotFound:
    return ModelNotFound(
        f"CLAP weights for '{model}' are not available ({reason}). Download them where a network exists with "
        f"`huggingface-cli download {model}` (they land in the Hugging Face cache), or pass --model DIR "
        "pointing at a directory saved with save_pretrained."
    )


class ClapEncoder:
    """A loaded CLAP checkpoint: embeds 10 s windows and texts into one L2-normalised space."""

    def __init__(self, model, tokenizer, extractor, identity: ModelIdentity, device: torch.device, precision: str, cache_size: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.extractor = extractor
        self.identity = identity
        self.device = device
        self.features = LogMelFeatures.from_extractor(extractor, device)
        self.window_samples = int(extractor.nb_max_samples)
        self.sample_rate = int(extractor.sampling_rate)
        self.logit_scale = float(model.logit_scale_a.exp().item())
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one forward at a time: torch modules are not re-entrant-safe under autocast
        # The text cache has its own lock: a cached query never waits behind a job's audio batch.
        self._cache_lock = threading.Lock()

    @property
    def embedding_dim(self) -> int:
        return self.identity.embedding_dim

    def _autocast(self):
        if self._autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    @torch.inference_mode()
    def embed_waveforms(self, waveforms: torch.Tensor) -> np.ndarray:
        """(batch, window_samples) 48 kHz mono (already repeat-padded) -> (batch, dim) float32 unit vectors."""
        if self.device.type == "cuda" and not waveforms.is_cuda:
            waveforms = waveforms.pin_memory()  # page-locked: the copy to the GPU is asynchronous (non_blocking)
        features = self.features(waveforms)
        is_longer = torch.ones((features.shape[0], 1), dtype=torch.bool, device=self.device)
        with self._lock, self._autocast():
            pooled = self.model.audio_model(input_features=features, is_longer=is_longer).pooler_output
            vectors = self.model.audio_projection(pooled)
        vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
        return vectors.cpu().numpy()

    def embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """Embed windows of at most window_samples each (short ones are repeat-padded)."""
        padded = np.stack([self.features.repeat_pad(np.asarray(w, dtype=np.float32)) for w in windows])
        return self.embed_waveforms(torch.from_numpy(padded))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors for ``texts``, served from an LRU cache where possible."""
        with self._cache_lock:
            found = {t: self._text_cache[t] for t in dict.fromkeys(texts) if t in self._text_cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            tokens = self.tokenizer(missing, padding=True, truncation=True, return_tensors="pt").to(self.device)
            with self._lock:
                pooled = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
                vectors = torch.nn.functional.normalize(self.model.text_projection(pooled).float(), dim=-1).cpu().numpy()
            with self._cache_lock:
                for text, vector in zip(missing, vectors):
                    self._text_cache[text] = found[text] = vector
                while len(self._text_cache) > self._cache_size:
                    self._text_cache.popitem(last=False)
        return np.stack([found[t] for t in texts]).astype(np.float32)


def _fingerprint(model, config) -> str:
    cfg = json.loads(config.to_json_string())
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"):
        cfg.pop(volatile, None)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    # A few weights pin the checkpoint itself, not only its shape.
    for tensor in (model.audio_projection.linear1.weight, model.text_projection.linear1.weight, model.logit_scale_a):
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:65536])
    return digest.hexdigest()


def feature_config_of(extractor, window_s: float, hop_s: float) -> dict:
    """The settings that decide what a stored vector means (compared on every open)."""
    return {
        "sampling_rate": int(extractor.sampling_rate),
        "n_fft": int(extractor.fft_window_size),
        "hop_length": int(extractor.hop_length),
        "mels": int(extractor.feature_size),
        "fmin": float(extractor.frequency_min),
        "fmax": float(extractor.frequency_max),
        "max_samples": int(extractor.nb_max_samples),
        "window_s": float(window_s),
        "hop_s": float(hop_s),
        "fusion": "is_longer=True, 4 identical views",
    }


def _hub_reachable_or_cached(model: str, revision: str | None) -> bool:
    """Avoid the hub client's minute of retries when the weights are not cached and there is no network."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json", revision=revision)
    if isinstance(cached, str):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return True
    except OSError:
        return False


def load_clap(model: str, revision: str | None = None, device: str = "auto", precision: str = "auto",
              window_s: float = 10.0, hop_s: float = 10.0, cache_size: int = 4096) -> ClapEncoder:
    """Load any CLAP checkpoint transformers reads: a local directory, the HF cache, or the hub where reachable."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # one progress bar per shard is noise on a CLI's stderr
    target = Path(model).expanduser()
    source = str(target.resolve()) if target.is_dir() else model
    if target.is_dir() and not (target / "config.json").exists():
        raise _not_found(model, f"{target} has no config.json")
    if not target.is_dir() and (model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1)):
        raise _not_found(model, "no such directory")
    if not target.is_dir() and not _hub_reachable_or_cached(model, revision):
        raise _not_found(model, "not in the Hugging Face cache and huggingface.co cannot be reached")
    try:
        clap = ClapModel.from_pretrained(source, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        extractor = ClapFeatureExtractor.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_found(model, first_line[:200]) from None
    dev = pick_device(device)
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    clap = clap.to(dev).eval()
    rev = revision or getattr(clap.config, "_commit_hash", None) or ("local" if target.is_dir() else "main")
    dim = int(clap.config.projection_dim)
    identity = ModelIdentity(
        model_id=source, revision=str(rev), fingerprint=_fingerprint(clap, clap.config), embedding_dim=dim,
        feature_config=feature_config_of(extractor, window_s, hop_s),
    )
    return ClapEncoder(clap, tokenizer, extractor, identity, dev, precision, cache_size)
