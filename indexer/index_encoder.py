"""The CLAP an open index uses, loaded no earlier than needed, with text vectors remembered in the index.

A query or label is embedded at most once per model: the exact prompted text and its unit vector are kept
in the index (``IndexStore.text_vectors``), so a classify with a label set seen before runs no text tower
and does not even load it. On a miss a reader loads the text tower alone; the audio tower is loaded only
by what embeds audio (indexing, one file).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import ModelMismatch
from indexer.model import ModelIdentity

if TYPE_CHECKING:
    from indexer.audio_onnx import OnnxAudioEncoder
    from indexer.model import ClapEncoder, ClapTextEncoder
    from indexer.store import IndexStore
    from indexer.text_onnx import OnnxTextEncoder


def identity_from_meta(meta: dict[str, str]) -> ModelIdentity:
    """The model identity an index recorded when it was created."""
    scale = meta.get("logit_scale")
    return ModelIdentity(
        model_id=meta.get("model_id") or "",
        revision=meta.get("model_revision") or "",
        fingerprint=meta.get("model_fingerprint") or "",
        embedding_dim=int(meta.get("embedding_dim", 0)),
        feature_config=json.loads(meta.get("feature_config", "{}")),
        logit_scale=float(scale) if scale else None,
    )


class IndexEncoder:
    """Embeds texts for one index: memory LRU, then the index's remembered vectors, then the model.

    Anything else asked of it (``embed_windows``, ``features``, ``model``...) is the full ``ClapEncoder``'s,
    loaded on first use. ``text_tower_loaded`` and ``audio_tower_loaded`` say what has been loaded so far.
    """

    def __init__(
        self,
        store: "IndexStore",
        identity: ModelIdentity,
        *,
        full: "ClapEncoder | None" = None,
        load_full: Callable[[], "ClapEncoder"] | None = None,
        load_text: Callable[[], "ClapTextEncoder"] | None = None,
        device: str = "auto",
        cache_size: int = 4096,
        warm: bool = False,
        text_onnx: bool = True,
        audio: "OnnxAudioEncoder | None" = None,
        long_lived: bool = False,
    ):
        self.store = store
        self._long_lived = long_lived  # a server: the ONNX text session is opened for many texts
        self._audio = audio  # an owner's ONNX Runtime audio tower (indexing without torch), when it chose one
        self._use_onnx = text_onnx  # False: texts through ``full`` (an encoder the caller chose, e.g. a test's)
        self._identity = identity
        self._full = full
        self._text: "ClapTextEncoder | None" = None
        self._onnx: "OnnxTextEncoder | None" = None
        self._onnx_reason: str | None = None  # why the ONNX export is not used (None: not looked for yet)
        self._load_full = load_full
        self._load_text = load_text
        self._device_name = device
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._lock = threading.RLock()
        if warm:
            self.warm()

    # -- what is loaded ----------------------------------------------------------------------
    @property
    def text_tower_loaded(self) -> bool:
        return self._full is not None or self._text is not None

    @property
    def audio_tower_loaded(self) -> bool:
        return self._full is not None

    def audio_encoder(self):
        """What embeds windows: the owner's ONNX Runtime audio tower when it has one (it hands over to the whole CLAP
        on a long run where torch is faster here), else the whole CLAP."""
        with self._lock:
            if self._audio is not None and self._full is None:
                return self._audio
        return self.full()

    def full(self) -> "ClapEncoder":
        """The whole CLAP (both towers), loaded now if it was not; checked against what wrote the index."""
        with self._lock:
            if self._full is None:
                if self._load_full is None:
                    raise RuntimeError("this index encoder cannot load the audio tower")
                full = self._load_full()
                self.store.check_identity(full.identity)
                self._full = full
            return self._full

    @property
    def text_onnx_loaded(self) -> bool:
        """True once texts are embedded by the ONNX export (no torch, no transformers)."""
        return self._onnx is not None

    def _text_onnx(self, expected: int = 1) -> "OnnxTextEncoder | None":
        """The model's ONNX text tower, looked for once; None (and why, in ``_onnx_reason``) when unusable.

        ``expected``: how many texts the caller is about to embed (a command with few opens it unpacked)."""
        if not self._use_onnx:
            return None
        if self._onnx is None and self._onnx_reason is None:
            from indexer.text_onnx import UNPACKED_UP_TO, ExportUnusable, open_export

            prepack = self._long_lived or expected > UNPACKED_UP_TO
            try:
                self._onnx = open_export(self._identity, self._cache_size, prepack=prepack)
            except ExportUnusable as exc:
                self._onnx_reason = str(exc)
        return self._onnx

    def retry_text_onnx(self) -> None:
        """Look for the ONNX export again on the next text (it has just been written)."""
        with self._lock:
            if self._onnx is None:
                self._onnx_reason = None

    def _text_encoder(self, expected: int = 1):
        with self._lock:
            onnx = self._text_onnx(expected)
            if onnx is not None:
                return onnx
            if self._full is not None:
                return self._full
            if self._text is None:
                from indexer.text_onnx import onnx_enabled, warn_fallback

                if onnx_enabled():
                    warn_fallback(self._onnx_reason or "not found")
                if self._load_text is None:
                    return self.full()
                text = self._load_text()
                if text.identity.fingerprint != self._identity.fingerprint:
                    raise ModelMismatch(
                        f"the index at {self.store.index_dir} was built with {self._identity.describe()}, "
                        f"not {text.identity.describe()}; use the same --model, or index into another --index directory"
                    )
                self._text = text
            return self._text

    # -- what a reader asks of it ------------------------------------------------------------
    @property
    def identity(self) -> ModelIdentity:
        if self._full is not None:
            return self._full.identity
        return self._audio.identity if self._audio is not None else self._identity

    @property
    def embedding_dim(self) -> int:
        return self._identity.embedding_dim

    @property
    def logit_scale(self) -> float:
        if self._full is not None:
            return self._full.logit_scale
        if self._audio is not None:
            return self._audio.logit_scale
        if self._identity.logit_scale is not None:
            return float(self._identity.logit_scale)
        return self._text_encoder().logit_scale  # an index from before the scale was recorded

    def scoring_device(self) -> str:
        """The device classification runs on, as a string; torch is not imported to learn that it is the CPU."""
        if self._full is not None or self._text is not None:
            return str(self.device)
        from indexer.model import light_device_name

        return light_device_name(self._device_name)

    @property
    def device(self):
        if self._full is not None:
            return self._full.device
        if self._text is not None:
            return self._text.device
        from indexer.model import pick_device

        return pick_device(self._device_name)

    def warm(self) -> int:
        """Fill the memory cache from the vectors the index remembers (a server does this when it starts)."""
        try:
            stored = self.store.text_vectors(self._identity.fingerprint)
        except Exception as exc:  # noqa: BLE001 - a cache: serving goes on without it
            print(f"note: remembered text vectors not read ({exc})", file=sys.stderr)
            return 0
        with self._lock:
            for text, vector in list(stored.items())[-self._cache_size :]:
                self._cache[text] = vector
        return len(stored)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors for ``texts``; the model runs only for texts neither cached nor remembered."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            found = self.store.text_vectors(self._identity.fingerprint, missing)
            todo = [t for t in missing if t not in found]
            if todo:
                vectors = self._text_encoder(len(todo)).embed_texts(todo)
                found.update(zip(todo, vectors))
                try:
                    self.store.put_text_vectors(self._identity.fingerprint, todo, vectors)
                except Exception as exc:  # noqa: BLE001 - remembering is an optimisation; the answer stands
                    print(f"note: text vectors not remembered ({str(exc).splitlines()[0]})", file=sys.stderr)
            with self._lock:
                for text in missing:
                    self._cache[text] = found[text]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            return np.stack([self._cache[t] for t in texts]).astype(np.float32)

    def __getattr__(self, name: str):
        # Only reached for what this class does not define: the audio side of the full encoder.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full(), name)


def fold_side_texts(index_dir) -> bool:
    """Move the text vectors readers left in side files into DuckDB now, if nobody else has the index open.

    Called by a reader as it closes: it takes the index alone for a moment (never waiting: with other readers
    or an owner about, the side files stay and the next owner folds them in). True when folded.
    """
    import fcntl
    import os

    from indexer.ownership import LOCK_NAME
    from indexer.store import IndexStore

    try:
        fd = os.open(index_dir / LOCK_NAME, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            IndexStore.open(index_dir, None, create=False).close()  # a writable open folds the side files in
            return True
        except Exception:  # noqa: BLE001 - a read-only disk, a busy file: the side files stay, nothing is lost
            return False
    finally:
        os.close(fd)  # also drops the lock
