"""The CLAP model: loading (local dir, HF cache, hub), audio-window and text embeddings, L2-normalised once.

Importing this module costs nothing heavy: torch and transformers are imported by the functions that
need them, so commands that never embed (stats, check, plugins) never load them. ``load_clap`` loads
both towers (indexing, one file); ``load_clap_text`` loads the text tower alone (search, classify).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from indexer.errors import ModelNotFound

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that wrote it."""

    model_id: str
    revision: str
    fingerprint: str
    embedding_dim: int
    feature_config: dict
    logit_scale: float | None = None  # exp(logit_scale_a): recorded so a reader needs no audio tower to score

    def describe(self) -> str:
        return f"{self.model_id}@{self.revision} ({self.fingerprint[:12]})"


def pick_device(name: str) -> "torch.device":
    """``auto`` is CUDA when present, else CPU; anything else is taken as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def light_device_name(name: str) -> str:
    """The device ``pick_device(name)`` gives, as a string, importing torch only where a GPU may be present."""
    if name != "auto":
        return name
    if "torch" not in sys.modules and not _gpu_device_nodes():
        return "cpu"  # no NVIDIA or ROCm device node: CUDA cannot be available, and torch stays unloaded
    return str(pick_device(name))


def _gpu_device_nodes() -> bool:
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))


def _not_found(model: str, reason: str) -> ModelNotFound:
    return ModelNotFound(
        f"CLAP weights for '{model}' are not available ({reason}). Download them where a network exists with "
        f"`huggingface-cli download {model}` (they land in the Hugging Face cache), or pass --model DIR "
        "pointing at a directory saved with save_pretrained."
    )


class TextEmbedder(Protocol):
    """What embedding a query or label needs: either encoder, or an open index's (which remembers texts)."""

    @property
    def embedding_dim(self) -> int: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


class TextTower:
    """Text embedding shared by both encoders: an LRU of unit vectors in front of the text model and projection."""

    def _init_text(self, tokenizer, device, cache_size: int) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one forward at a time: torch modules are not re-entrant-safe under autocast

    def _text_parts(self):
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors for ``texts``, served from an LRU cache where possible."""
        import torch

        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            text_model, projection = self._text_parts()
            # One text per forward: no padding, no batch mates, so a text's vector is the same bits however it was
            # asked for (alone, in a label set, remembered in the index from another set).
            with self._lock, torch.inference_mode():
                for text in missing:
                    tokens = self.tokenizer([text], truncation=True, return_tensors="pt").to(self.device)
                    pooled = text_model(
                        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                    ).pooler_output
                    self._text_cache[text] = (
                        torch.nn.functional.normalize(projection(pooled).float(), dim=-1)[0].cpu().numpy()
                    )
                while len(self._text_cache) > self._cache_size:
                    self._text_cache.popitem(last=False)
        with self._lock:
            return np.stack([self._text_cache[t] for t in texts]).astype(np.float32)


class ClapEncoder(TextTower):
    """A loaded CLAP checkpoint (both towers): embeds 10 s windows and texts into one L2-normalised space."""

    def __init__(
        self,
        model,
        tokenizer,
        extractor,
        identity: ModelIdentity,
        device: "torch.device",
        precision: str,
        cache_size: int = 4096,
    ):
        import torch

        from indexer.features import LogMelFeatures

        self._init_text(tokenizer, device, cache_size)
        self.model = model
        self.extractor = extractor
        self.identity = identity
        self.features = LogMelFeatures.from_extractor(extractor, device)
        self.window_samples = int(extractor.nb_max_samples)
        self.sample_rate = int(extractor.sampling_rate)
        self.logit_scale = float(model.logit_scale_a.exp().item())
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.load_s = 0.0  # seconds ``load_clap`` took, imports included (recorded in the audio export)

    @property
    def embedding_dim(self) -> int:
        return self.identity.embedding_dim

    def _text_parts(self):
        return self.model.text_model, self.model.text_projection

    def _autocast(self):
        import torch

        if self._autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def embed_waveforms(self, waveforms: "np.ndarray | torch.Tensor") -> np.ndarray:
        """(batch, window_samples) 48 kHz mono (already repeat-padded) -> (batch, dim) float32 unit vectors."""
        import torch

        if isinstance(waveforms, np.ndarray):
            waveforms = torch.from_numpy(waveforms)
        with torch.inference_mode():
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
        import torch

        padded = np.stack([self.features.repeat_pad(np.asarray(w, dtype=np.float32)) for w in windows])
        return self.embed_waveforms(torch.from_numpy(padded))


class ClapTextEncoder(TextTower):
    """The text tower of a CLAP checkpoint alone (``ClapTextModelWithProjection``): what a query or label needs."""

    def __init__(self, model, tokenizer, identity: ModelIdentity, device: "torch.device", cache_size: int = 4096):
        self._init_text(tokenizer, device, cache_size)
        self.model = model
        self.identity = identity
        self.logit_scale = float(identity.logit_scale) if identity.logit_scale is not None else 1.0

    @property
    def embedding_dim(self) -> int:
        return self.identity.embedding_dim

    def _text_parts(self):
        return self.model.text_model, self.model.text_projection


# The weights the fingerprint reads besides the config; a text-tower-only load reads these three from the
# checkpoint file directly, so both loads give the same fingerprint.
FINGERPRINT_TENSORS = ("audio_projection.linear1.weight", "text_projection.linear1.weight", "logit_scale_a")


def _fingerprint(config, tensors) -> str:
    cfg = json.loads(config.to_json_string())
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"):
        cfg.pop(volatile, None)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    # A few weights pin the checkpoint itself, not only its shape.
    for tensor in tensors:
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


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # one progress bar per shard is noise on a CLI's stderr


def _locate(model: str, revision: str | None) -> tuple[str, Path]:
    """(what from_pretrained is given, the path as typed); ModelNotFound for a missing directory or unreachable hub."""
    target = Path(model).expanduser()
    source = str(target.resolve()) if target.is_dir() else model
    if target.is_dir() and not (target / "config.json").exists():
        raise _not_found(model, f"{target} has no config.json")
    if not target.is_dir() and (model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1)):
        raise _not_found(model, "no such directory")
    if not target.is_dir() and not _hub_reachable_or_cached(model, revision):
        raise _not_found(model, "not in the Hugging Face cache and huggingface.co cannot be reached")
    return source, target


def _checkpoint_file(source: str, revision: str | None, name: str) -> Path | None:
    """A file of the checkpoint (local directory or the HF cache/hub), or None when it has none."""
    local = Path(source)
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, name, revision=revision))
    except Exception:  # not there (a .bin-only checkpoint) or not reachable: the caller falls back
        return None


def checkpoint_tensors(source: str, revision: str | None, names: tuple[str, ...]) -> dict | None:
    """The named tensors read straight from the checkpoint's safetensors file(s), nothing else; None without safetensors."""
    from safetensors import safe_open

    single = _checkpoint_file(source, revision, "model.safetensors")
    if single is not None:
        where = {name: single for name in names}
    else:
        index = _checkpoint_file(source, revision, "model.safetensors.index.json")
        if index is None:
            return None
        weight_map = json.loads(index.read_text())["weight_map"]
        shards: dict[str, Path] = {}
        for name in names:
            shard = _checkpoint_file(source, revision, weight_map[name]) if name in weight_map else None
            if shard is None:
                return None
            shards[name] = shard
        where = shards
    out = {}
    for name, path in where.items():
        with safe_open(str(path), framework="pt") as fh:
            if name not in fh.keys():
                return None
            out[name] = fh.get_tensor(name)
    return out


def load_clap(
    model: str,
    revision: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    window_s: float = 10.0,
    hop_s: float = 10.0,
    cache_size: int = 4096,
) -> ClapEncoder:
    """Load any CLAP checkpoint transformers reads (both towers): a local directory, the HF cache, or the hub where reachable.

    Weights are memory-mapped from safetensors onto meta-initialised modules (no random init, no second copy).
    """
    started = time.perf_counter()  # imports included: what a fresh process pays for torch (the audio hand-over)
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    _quiet_transformers()
    source, target = _locate(model, revision)
    try:
        clap = ClapModel.from_pretrained(source, revision=revision, low_cpu_mem_usage=True)
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
        model_id=source,
        revision=str(rev),
        fingerprint=_fingerprint(
            clap.config, [clap.audio_projection.linear1.weight, clap.text_projection.linear1.weight, clap.logit_scale_a]
        ),
        embedding_dim=dim,
        feature_config=feature_config_of(extractor, window_s, hop_s),
        logit_scale=float(clap.logit_scale_a.exp().item()),
    )
    encoder = ClapEncoder(clap, tokenizer, extractor, identity, dev, precision, cache_size)
    encoder.load_s = time.perf_counter() - started
    return encoder


def load_clap_text(
    model: str,
    revision: str | None = None,
    device: str = "auto",
    cache_size: int = 4096,
    feature_config: dict | None = None,
) -> ClapTextEncoder:
    """Load the text tower of a CLAP checkpoint alone (``ClapTextModelWithProjection``): about a third of the weights.

    The identity (fingerprint, logit scale) is the one ``load_clap`` gives: the few other tensors it needs
    are read from the safetensors file by name. A checkpoint without safetensors is loaded whole.
    """
    from transformers import AutoTokenizer, ClapConfig, ClapTextModelWithProjection

    _quiet_transformers()
    source, target = _locate(model, revision)
    try:
        config = ClapConfig.from_pretrained(source, revision=revision)
        tensors = checkpoint_tensors(source, revision, FINGERPRINT_TENSORS)
        if tensors is None:  # a .bin checkpoint: no reading by name; take the text parts of the whole model
            full = load_clap(model, revision, device, "fp32", cache_size=cache_size)
            identity = (
                full.identity
                if feature_config is None
                else ModelIdentity(
                    full.identity.model_id,
                    full.identity.revision,
                    full.identity.fingerprint,
                    full.identity.embedding_dim,
                    feature_config,
                    full.identity.logit_scale,
                )
            )
            return ClapTextEncoder(full.model, full.tokenizer, identity, full.device, cache_size)
        text = ClapTextModelWithProjection.from_pretrained(source, revision=revision, low_cpu_mem_usage=True)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _not_found(model, first_line[:200]) from None
    dev = pick_device(device)
    # A whole-model load records the dtype its towers were loaded in; the fingerprint hashes that config.
    config.audio_config.dtype = config.text_config.dtype = text.dtype
    text = text.to(dev).eval()
    rev = revision or getattr(config, "_commit_hash", None) or ("local" if target.is_dir() else "main")
    identity = ModelIdentity(
        model_id=source,
        revision=str(rev),
        fingerprint=_fingerprint(config, [tensors[n] for n in FINGERPRINT_TENSORS]),
        embedding_dim=int(config.projection_dim),
        feature_config=feature_config or {},
        logit_scale=float(tensors["logit_scale_a"].float().exp().item()),
    )
    return ClapTextEncoder(text, tokenizer, identity, dev, cache_size)
