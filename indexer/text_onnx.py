"""The CLAP text tower as an ONNX Runtime session with a `tokenizers` tokenizer: text vectors without torch.

An export holds what ``ClapTextModelWithProjection`` computes for one text (RoBERTa, pooler, projection, L2
normalisation) and the checkpoint's own fast tokenizer, both written once per model and machine into a
directory keyed by the model fingerprint (``$SOUNDSIFT_ONNX_CACHE``, else ``$XDG_CACHE_HOME/soundsift/onnx``,
else ``~/.cache/soundsift/onnx``), so every index of that model shares it. Whoever has torch loaded anyway
(index, serve, ``soundsift doctor --export``) writes it when it is absent or unusable; readers (search,
classify) only read it. Importing this module loads neither torch nor transformers nor ONNX Runtime.

A reader checks an export before trusting it: the session must load and a probe text must give the vector
transformers gave for it at export time (within 1e-5). An export that fails is removed, so the next owner
writes it again; until then the reader falls back to transformers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.durable import fsync_path
from indexer.errors import SoundsiftError

if TYPE_CHECKING:
    from indexer.model import ModelIdentity, TextTower

#: Bumped when what an export holds changes; an owner writes an export of an older version again.
#: Version 2 keeps the weights beside the graph (ONNX external data), which ONNX Runtime loads in less than half
#: the time and memory of one 500 MB protobuf; readers still read version 1 until the next owner rewrites it.
EXPORT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MODEL_FILE = "text_tower.onnx"
WEIGHTS_FILE = "text_tower.weights"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "export.json"
PROBE_TEXT = "This is a sound of a probe for the exported text tower."
PARITY_TOLERANCE = 1e-5
#: ``SOUNDSIFT_TEXT_ONNX=0`` keeps every text on transformers (no export read or written).
ENABLED_ENV = "SOUNDSIFT_TEXT_ONNX"
CACHE_ENV = "SOUNDSIFT_ONNX_CACHE"


class ExportUnusable(SoundsiftError):
    """An export is missing, from another version, or does not load or compute what transformers does."""


def onnx_enabled() -> bool:
    """False when ``SOUNDSIFT_TEXT_ONNX`` is 0/false/no/off."""
    return os.environ.get(ENABLED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_root() -> Path:
    """Where exports live, one directory per model fingerprint."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "soundsift" / "onnx"


def export_dir(fingerprint: str) -> Path:
    """The export directory of the model with ``fingerprint``."""
    if not fingerprint or not all(c in "0123456789abcdef" for c in fingerprint):
        raise ExportUnusable(f"no usable model fingerprint ({fingerprint!r})")
    return cache_root() / fingerprint


def read_export_meta(
    where: Path, versions: tuple[int, ...], files: Callable[[dict], list[tuple[str, str]]], kind: str = "export"
) -> dict:
    """An export's ``export.json``; ExportUnusable unless it is of one of ``versions`` and every file
    ``files(meta)`` names as (file, size key) is there with the size the export wrote. Shared by the text and
    the audio exports."""
    try:
        meta = json.loads((where / META_FILE).read_text())
    except FileNotFoundError:
        raise ExportUnusable(f"no {kind} at {where}") from None
    except (OSError, ValueError) as exc:
        raise ExportUnusable(f"{where / META_FILE} is unreadable ({exc})") from None
    if meta.get("export_version") not in versions:
        raise ExportUnusable(f"{where} is an {kind} of version {meta.get('export_version')}, not {max(versions)}")
    for name, size_key in files(meta):
        try:
            size = (where / name).stat().st_size
        except OSError:
            raise ExportUnusable(f"{where / name} is missing") from None
        if size != meta.get(size_key):
            raise ExportUnusable(f"{where / name} has {size} bytes, the export wrote {meta.get(size_key)}")
    return meta


def _text_files(meta: dict) -> list[tuple[str, str]]:
    files = [(MODEL_FILE, "model_bytes"), (TOKENIZER_FILE, "tokenizer_bytes")]
    return files + [(WEIGHTS_FILE, "weights_bytes")] if meta["export_version"] >= 2 else files


def _read_meta(where: Path, versions: tuple[int, ...] = READABLE_VERSIONS) -> dict:
    return read_export_meta(where, versions, _text_files)


def export_looks_whole(fingerprint: str) -> bool:
    """A cheap check (no session): the export's files are there, of the current version and of the sizes written."""
    try:
        _read_meta(export_dir(fingerprint), (EXPORT_VERSION,))
        return True
    except ExportUnusable:
        return False


class OnnxTextEncoder:
    """Unit text vectors from an exported text tower: one text per run, exactly as the torch path runs them."""

    device = "cpu"

    def __init__(self, where: Path, identity: "ModelIdentity", cache_size: int = 4096, prepack: bool = True):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = _read_meta(where)
        if meta.get("fingerprint") != identity.fingerprint:
            raise ExportUnusable(f"{where} holds the export of {meta.get('fingerprint', '?')[:12]}, not this model")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's warnings about unused initialisers are noise on a CLI's stderr
        # A few texts per command: threads that spin between runs only take the cores from everything else.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not prepack:
            # Packing the weights for MLAS's GEMM is most of the session's start (0.5 s of 0.55 s for the full-size
            # tower, 2 cores) and saves about 30 ms per text after: a command with a few new texts starts without it.
            options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            self.session = ort.InferenceSession(str(where / MODEL_FILE), options, providers=["CPUExecutionProvider"])
            self.tokenizer = Tokenizer.from_file(str(where / TOKENIZER_FILE))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for a damaged file
            raise ExportUnusable(f"{where} does not load ({str(exc).splitlines()[0][:160]})") from None
        self.identity = identity
        self.where = where
        self.export_version = int(meta["export_version"])
        self.logit_scale = float(identity.logit_scale if identity.logit_scale is not None else meta["logit_scale"])
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._lock = threading.Lock()
        probe = self._embed_one(PROBE_TEXT)
        expected = np.asarray(meta.get("probe_vector", []), dtype=np.float32)
        if expected.shape != probe.shape or not np.all(np.abs(probe - expected) <= PARITY_TOLERANCE):
            raise ExportUnusable(f"{where} does not compute the vectors transformers computed for this model")

    @property
    def embedding_dim(self) -> int:
        return int(self.identity.embedding_dim)

    def _embed_one(self, text: str) -> np.ndarray:
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        (vector,) = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return np.asarray(vector[0], dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors for ``texts``, served from an LRU cache where possible."""
        with self._lock:
            for text in dict.fromkeys(texts):
                if text not in self._cache:
                    self._cache[text] = self._embed_one(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return np.stack([self._cache[t] for t in texts]).astype(np.float32)


#: Up to this many new texts a short-lived reader opens the session without packing its weights (see `OnnxTextEncoder`).
UNPACKED_UP_TO = 8


def open_export(identity: "ModelIdentity", cache_size: int = 4096, prepack: bool = True) -> OnnxTextEncoder:
    """The checked export of the model ``identity`` names; ExportUnusable (the damaged export removed) otherwise.

    ``prepack=False`` starts the session about 0.45 s sooner and embeds each text about 30 ms slower (full-size
    tower, 2 cores): for a command that embeds a few texts and exits."""
    if not onnx_enabled():
        raise ExportUnusable(f"{ENABLED_ENV} is off")
    where = export_dir(identity.fingerprint)
    try:
        return OnnxTextEncoder(where, identity, cache_size, prepack=prepack)
    except ExportUnusable as exc:
        if (where / META_FILE).exists():
            # Damaged or stale: out of the way, so the next owner writes it again (a session already open elsewhere
            # keeps its own copy in memory).
            shutil.rmtree(where, ignore_errors=True)
        raise exc
    except ImportError as exc:
        raise ExportUnusable(f"ONNX Runtime is not installed ({exc})") from None


_WARNED: set[str] = set()


def warn_fallback(reason: str) -> None:
    """One line on stderr, once per process, saying why texts go through transformers and how that ends."""
    if "fallback" in _WARNED:
        return
    _WARNED.add("fallback")
    print(
        f"warning: ONNX text tower unusable ({reason}); embedding texts with transformers (slower). "
        "The next `soundsift index`, `soundsift serve` or `soundsift doctor --export` writes it again.",
        file=sys.stderr,
    )


class _TowerForExport:
    """What is traced: token ids and mask in, the unit vector ``TextTower.embed_texts`` gives out."""

    @staticmethod
    def build(text_model, projection):
        import torch

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.text_model, self.projection = text_model, projection

            def forward(self, input_ids, attention_mask):
                pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
                return torch.nn.functional.normalize(self.projection(pooled).float(), dim=-1)

        return Tower().eval()


def _fast_tokenizer_json(tokenizer) -> str:
    """The checkpoint's fast tokenizer with the truncation transformers applies, as `tokenizers` JSON."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportUnusable("the checkpoint has no fast tokenizer (tokenizer.json); texts stay on transformers")
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < limit < 10**8:  # transformers' "no limit" is a huge sentinel: then it does not truncate either
        copy.enable_truncation(limit, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    else:
        copy.no_truncation()
    return copy.to_str()


def export_text_tower(encoder: "TextTower", identity: "ModelIdentity") -> Path:
    """Write the export of ``encoder``'s text tower for ``identity`` atomically (a temporary directory renamed).

    Checked before it is published: the session's vector of a probe text equals the torch tower's within 1e-5.
    """
    with getattr(encoder, "_lock", contextlib.nullcontext()):  # no forward of this model while it is traced
        return _export_locked(encoder, identity)


def _export_locked(encoder: "TextTower", identity: "ModelIdentity") -> Path:
    import warnings

    import torch

    where = export_dir(identity.fingerprint)
    where.parent.mkdir(parents=True, exist_ok=True)
    text_model, projection = encoder._text_parts()
    tower = _TowerForExport.build(text_model, projection)
    if next(tower.parameters()).device.type != "cpu":  # traced on the CPU, where the session runs; the model stays
        tower = copy.deepcopy(tower).to("cpu")
    tokenizer_json = _fast_tokenizer_json(encoder.tokenizer)
    sample = encoder.tokenizer([PROBE_TEXT], truncation=True, return_tensors="pt")
    with torch.inference_mode():  # the CPU torch tower's vector: what a reader's session must reproduce
        probe = tower(sample["input_ids"], sample["attention_mask"])[0].numpy()
    staging = Path(tempfile.mkdtemp(prefix=f".{identity.fingerprint[:12]}-", dir=where.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache's export from other users
        (staging / TOKENIZER_FILE).write_text(tokenizer_json)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about branches fixed for one text, unpadded
            torch.onnx.export(
                tower,
                (sample["input_ids"], sample["attention_mask"]),
                str(staging / MODEL_FILE),
                input_names=["input_ids", "attention_mask"],
                output_names=["vector"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
                opset_version=17,
                dynamo=False,
            )
        weights_beside_graph(staging)
        meta = {
            "export_version": EXPORT_VERSION,
            "fingerprint": identity.fingerprint,
            "model_id": identity.model_id,
            "revision": identity.revision,
            "embedding_dim": int(identity.embedding_dim),
            "logit_scale": identity.logit_scale,
            "torch": torch.__version__,
            "model_bytes": (staging / MODEL_FILE).stat().st_size,
            "weights_bytes": (staging / WEIGHTS_FILE).stat().st_size,
            "tokenizer_bytes": (staging / TOKENIZER_FILE).stat().st_size,
            "probe_vector": [float(x) for x in probe],
        }
        (staging / META_FILE).write_text(json.dumps(meta))
        OnnxTextEncoder(staging, identity)  # loads and matches the probe, or raises before anything is published
        publish_export(
            staging,
            where,
            (MODEL_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE),
            lambda: export_looks_whole(identity.fingerprint),
        )
        return where
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_export(staging: Path, where: Path, names: Sequence[str], looks_whole: Callable[[], bool]) -> None:
    """Make a checked staging directory the export at ``where``: its files fsynced, renamed over any old export, and
    the rename made durable. Two owners racing leave one whole export (``looks_whole`` says whether the other won)."""
    for name in names:
        fsync_path(staging / name)
    if where.exists():
        shutil.rmtree(where, ignore_errors=True)
    try:
        os.rename(staging, where)
    except OSError:
        if not looks_whole():  # not another process's export won the race
            raise
    fsync_path(where.parent)


def weights_beside_graph(staging: Path, model_file: str = MODEL_FILE, weights_file: str = WEIGHTS_FILE) -> None:
    """Rewrite an exported graph with its weights in one external-data file beside it (what version 2 holds)."""
    import onnx

    graph = onnx.load(str(staging / model_file))
    onnx.save_model(
        graph,
        str(staging / model_file),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=weights_file,
        size_threshold=1024,
    )
    (staging / weights_file).chmod(0o644)  # onnx writes it 0600: a shared cache's readers need it too


def ensure_text_export(encoder: "TextTower", identity: "ModelIdentity", force: bool = False) -> Path | None:
    """Write the export when it is absent or damaged (or ``force``); None when exports are off or it cannot be made.

    Called by whoever has torch and the model loaded anyway; a failure is one warning line, never the command's.
    """
    if not onnx_enabled():
        return None
    try:
        if not force and export_looks_whole(identity.fingerprint):
            return export_dir(identity.fingerprint)
        return export_text_tower(encoder, identity)
    except Exception as exc:  # noqa: BLE001 - an optimisation: the command's own work stands
        print(f"warning: ONNX text tower not written ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return None


def check_or_write_export(encoder: "TextTower", identity: "ModelIdentity") -> tuple[Path, bool]:
    """(the export's directory, True when written now): an export that passes the full check is kept, any other
    is written again. Raises ExportUnusable when exports are off or it cannot be written."""
    if not onnx_enabled():
        raise ExportUnusable(f"ONNX text exports are off ({ENABLED_ENV}=0)")
    try:
        found = open_export(identity)
        if found.export_version == EXPORT_VERSION:
            return found.where, False
    except ExportUnusable:
        pass
    try:
        return export_text_tower(encoder, identity), True
    except ExportUnusable:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter's own errors, in one line
        raise ExportUnusable(f"the text tower could not be exported ({str(exc).splitlines()[0][:200]})") from None
