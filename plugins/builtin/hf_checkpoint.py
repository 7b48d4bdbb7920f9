"""What the built-in transformers plugins (classifier, transcriber) share: model entries, devices, revisions, checks.

transformers and torch are imported only inside the functions that need them, so importing this costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".pt", ".msgpack", ".h5")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def resolve_device(name: str | None) -> str:
    """``auto`` (or nothing) is CUDA when present, else CPU, as for CLAP; anything else as given."""
    if not name or name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def default_alias(model_id: str) -> str:
    """The last part of a hub id or directory: 'superb/wav2vec2-base-superb-er' -> 'wav2vec2-base-superb-er'."""
    return Path(str(model_id).rstrip("/\\")).name or str(model_id)


def parse_model_ref(entry: Any, error: type[Exception] = ValueError, kind: str = "classifier"):
    """(model id, alias or None, revision or None) from a settings entry: 'id', 'alias=id' or {id, alias, revision}."""
    if isinstance(entry, Mapping):
        model_id = str(entry.get("id") or entry.get("model") or "")
        alias, revision = entry.get("alias"), entry.get("revision")
    else:
        text = str(entry).strip()
        alias, sep, rest = text.partition("=")
        model_id, alias = (rest.strip(), alias.strip()) if sep else (text, None)
        revision = None
    if not model_id:
        raise error(f"a {kind} model entry names no model: {entry!r} (use 'id' or 'alias=id')")
    return model_id, (str(alias) if alias else None), (str(revision) if revision else None)


def model_entries(settings: Mapping[str, Any], key: str, error: type[Exception]) -> list:
    """The ``key`` entries of a plugin settings view, as a list (a JSON list in an env variable too)."""
    entries = settings.get(key) or []
    if isinstance(entries, str) and entries.strip().startswith("["):
        try:
            entries = json.loads(entries)
        except ValueError:
            raise error(f"cannot read {key} {entries!r}: give a list of model ids") from None
    return [entries] if isinstance(entries, (str, Mapping)) else list(entries)


def directory_revision(path: Path) -> str:
    """A content hash of a local checkpoint's config and weights: the revision results are stored under."""
    digest = hashlib.sha256()
    for item in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        digest.update(item.name.encode() + b"\0")
        with open(item, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def checkpoint_revision(model_id: str, config: Any, revision: str | None) -> str:
    """The revision asked for; else a local directory's content hash, else the hub commit the config came from."""
    if revision:
        return revision
    local = Path(model_id)
    return directory_revision(local) if local.is_dir() else getattr(config, "_commit_hash", None) or "unknown"


def load_checked_config(
    model_id: str,
    revision: str | None,
    *,
    error: type[Exception],
    noun: str,
    architectures_by_type: Mapping[str, str],
    refusal: str,
):
    """A checkpoint's config, refused with one clear ``error`` unless it is one of ``architectures_by_type``.

    ``noun`` names the model in the not-found message ("model", "speech model"); ``refusal`` ends the message for a
    checkpoint of another kind ("... is not a speech-recognition checkpoint (Bert...); <refusal>").
    """
    from transformers import AutoConfig

    local = Path(model_id)
    looks_local = local.is_absolute() or model_id.startswith(".") or model_id.count("/") > 1
    if looks_local and not local.is_dir():
        raise error(f"no model directory at {model_id}: give a local checkpoint directory or a Hugging Face id")
    try:
        config = AutoConfig.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError) as exc:
        offline = (
            " (HF_HUB_OFFLINE is set: only the local cache is searched)" if os.environ.get("HF_HUB_OFFLINE") else ""
        )
        raise error(
            f"{noun} {model_id} not found locally or in the Hugging Face cache{offline}: "
            f"download it with `huggingface-cli download {model_id}` or give a local directory ({one_line(exc)})"
        ) from None
    wanted = architectures_by_type.get(getattr(config, "model_type", ""))
    architectures = list(getattr(config, "architectures", None) or [])
    if wanted is None or (architectures and wanted not in architectures):
        what = ", ".join(architectures) or getattr(config, "model_type", "unknown")
        raise error(f"{model_id} is not {refusal.format(what=what)}")
    return config


def resample_to(window: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """One window as transformers' audio pipelines take it: mono float32 at ``target_rate`` (soxr HQ)."""
    import soxr

    x = np.ascontiguousarray(window, dtype=np.float32)
    if sample_rate != target_rate:
        x = soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    return x
