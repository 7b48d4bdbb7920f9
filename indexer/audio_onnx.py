"""The CLAP audio tower exported to ONNX, run by OpenVINO or ONNX Runtime on numpy log-mel features: a CPU index
that starts at once.

A cold ``soundsift index`` on a CPU spent most of its start importing torch, transformers and their CLAP code
(about 4 s of a 32-window run on two cores, `benchmarks/profile_index_start.py`). With this export an owner
embeds windows without either: what ``ClapEncoder.embed_waveforms`` computes (the fused HTSAT tower with
``is_longer=True``, the audio projection, L2 normalisation) is traced once per model and machine into
``<cache>/<fingerprint>.audio/`` (the cache of ``indexer/text_onnx.py``) beside the checkpoint's mel filter
bank, a probe vector, and how fast each tower ran here on the same windows.

The export is run by OpenVINO where it is installed and measured at least as fast as ONNX Runtime here
(`indexer/audio_openvino.py`), else by ONNX Runtime. Per window a runtime may be slower than torch on a given
CPU (ONNX Runtime: 0.93x on the 2-core AVX-512 Xeon this was measured on, 1.15x faster on an AVX2 EPYC;
docs/performance.md). So the export records every rate and what loading torch cost, and a run whose runtime is
slower hands over to torch once it has embedded enough windows for torch's faster rate to repay its load
(`OnnxAudioEncoder.hand_over_after`): short runs never pay for torch, long ones pay once.
``SOUNDSIFT_AUDIO_ONNX=0`` keeps every window on torch; ``=1`` never hands over; ``SOUNDSIFT_AUDIO_RUNTIME``
(``openvino`` or ``onnxruntime``) picks the runtime.

A new index learns which export is its model's from the checkpoint record: every full load of a checkpoint by an
owner (``search.sound_index.load_encoder``) remembers its identity keyed by the checkpoint's path and the sizes and times of its files
(`remember_checkpoint`), so the next owner knows the fingerprint without loading anything.
Importing this module loads neither torch nor transformers nor either runtime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.audio_openvino import BLOB_FILE, blob_key, chosen_runtime, compiled_tower, openvino_installed, write_blob
from indexer.log_mel import NumpyLogMel
from indexer.text_onnx import (
    ExportUnusable,
    cache_root,
    export_dir,
    export_looks_whole,
    publish_export,
    read_export_meta,
    weights_beside_graph,
)

if TYPE_CHECKING:
    from indexer.model import ClapEncoder, ModelIdentity

EXPORT_VERSION = 1
MODEL_FILE = "audio_tower.onnx"
WEIGHTS_FILE = "audio_tower.weights"
FILTERS_FILE = "mel_filters.npy"
META_FILE = "export.json"  # the same name as the text export's (read_export_meta reads it)
#: ONNX Runtime's vectors against torch's for the probe window; the towers agree within 4e-7 in practice.
PARITY_TOLERANCE = 1e-4
ENABLED_ENV = "SOUNDSIFT_AUDIO_ONNX"
TIMING_BATCH = 4
#: where the export records each runtime's seconds per window, measured on this machine at export
RATE_KEYS = {"onnxruntime": "onnx_s_per_window", "openvino": "openvino_s_per_window"}


def audio_mode() -> str:
    """``off`` (``SOUNDSIFT_AUDIO_ONNX=0``), ``always`` (``=1``: never hand over to torch) or ``auto``."""
    value = os.environ.get(ENABLED_ENV, "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "on", "always"):
        return "always"
    return "auto"


def audio_export_dir(fingerprint: str) -> Path:
    """The audio export directory of the model with ``fingerprint``."""
    text_dir = export_dir(fingerprint)  # validates the fingerprint
    return text_dir.with_name(f"{text_dir.name}.audio")


def _probe_waveform(window_samples: int) -> np.ndarray:
    """A fixed, deterministic window (noise and a tone) every probe check feeds both towers."""
    t = np.arange(window_samples) / 48_000.0
    noise = np.random.default_rng(20261203).standard_normal(window_samples)
    return (0.1 * noise + 0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None]


_FILES = [(MODEL_FILE, "model_bytes"), (WEIGHTS_FILE, "weights_bytes"), (FILTERS_FILE, "filters_bytes")]


def _files(meta: dict) -> list[tuple[str, str]]:
    """The files an audio export must hold at their written sizes: the compiled OpenVINO model where it kept one."""
    return _FILES + [(BLOB_FILE, "openvino_blob_bytes")] if "openvino_blob_bytes" in meta else _FILES


def _read_meta(where: Path) -> dict:
    return read_export_meta(where, (EXPORT_VERSION,), _files, "audio export")


def audio_export_looks_whole(fingerprint: str) -> bool:
    """A cheap check (no session): the files are there, of this version and of the sizes written."""
    try:
        _read_meta(audio_export_dir(fingerprint))
        return True
    except ExportUnusable:
        return False


def measured_every_runtime(meta: dict) -> bool:
    """False when OpenVINO is installed but the export was written without it, or its compiled model was made by
    another OpenVINO version or CPU (an owner with torch loaded then writes the export again)."""
    if not openvino_installed():
        return True
    if RATE_KEYS["openvino"] not in meta:
        return False
    return meta[RATE_KEYS["openvino"]] is None or meta.get("openvino_blob") == blob_key()  # None: unusable here


def planned_runtime(meta: dict) -> str:
    """Which runtime runs the export: ``SOUNDSIFT_AUDIO_RUNTIME`` where it names an installed one, else OpenVINO
    where the export measured it at least as fast as ONNX Runtime on this machine, else ONNX Runtime."""
    forced = chosen_runtime()
    if forced == "onnxruntime" or not openvino_installed():
        return "onnxruntime"
    if forced == "openvino":
        return "openvino"
    ov_s, ort_s = meta.get(RATE_KEYS["openvino"]), meta.get(RATE_KEYS["onnxruntime"])
    return "openvino" if ov_s and (not ort_s or float(ov_s) <= float(ort_s)) else "onnxruntime"


def hand_over_point(meta: dict, runtime: str) -> int | None:
    """Windows after which a run on ``runtime`` moves to torch by the export's rates, or None (never)."""
    run_s = float(meta.get(RATE_KEYS[runtime]) or 0)
    torch_s = float(meta.get("torch_s_per_window") or 0)
    if audio_mode() == "always" or not (run_s > torch_s > 0):
        return None
    return max(1, math.ceil(float(meta.get("torch_start_s") or 0) / (run_s - torch_s)))


class OnnxAudioEncoder:
    """Unit window vectors from an exported audio tower; hands over to torch on a long run where torch is faster.

    The export runs on OpenVINO or ONNX Runtime, whichever measured faster here (``planned_runtime``); an
    OpenVINO that fails to compile it costs a note and the run goes on on ONNX Runtime.

    Offers what the indexer asks of an encoder: ``identity``, ``embedding_dim``, ``device``, ``features``
    (``repeat_pad``), ``window_samples``, ``sample_rate``, ``logit_scale``, ``embed_waveforms``, ``embed_windows``.
    With ``background=True`` the session opens (and passes its probe) in a thread while the owner opens the
    store, scans and starts its decoders; the first window waits for it, and an export that fails then is
    removed and the run goes on with torch (one warning line).
    """

    device = "cpu"
    takes_numpy = True  # the runner hands it numpy batches (no torch here)

    def __init__(self, where: Path, identity: "ModelIdentity", background: bool = False, runtime: str | None = None):
        meta = _read_meta(where)
        if meta.get("fingerprint") != identity.fingerprint:
            raise ExportUnusable(
                f"{where} holds the audio export of {meta.get('fingerprint', '?')[:12]}, not this model"
            )
        try:
            filters = np.load(where / FILTERS_FILE)
        except Exception as exc:  # noqa: BLE001 - a damaged file: numpy's own errors
            raise ExportUnusable(f"{where} does not load ({str(exc).splitlines()[0][:160]})") from None
        self.where = where
        self.identity = identity
        self.meta = meta
        self.window_samples = int(meta["window_samples"])
        self.sample_rate = int(meta["sample_rate"])
        self.logit_scale = float(identity.logit_scale if identity.logit_scale is not None else meta["logit_scale"])
        self.features = NumpyLogMel(filters, meta["n_fft"], meta["hop_length"], self.window_samples)
        self.runtime = runtime or planned_runtime(meta)
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()
        self._torch: ClapEncoder | None = None
        self._loader: threading.Thread | None = None
        self._load_torch: Callable[[], ClapEncoder] | None = None
        self.embedded = 0
        self._problem: str | None = None
        self._opened = threading.Event()
        self._unchecked = False  # opened, its probe check still to come (with the first batch)
        if background:
            # Not a daemon: a process that exits (an error, a finished command) while ONNX Runtime is still opening the
            # session waits for it, instead of tearing the thread down mid-call ("terminate called without an
            # active exception"). The probe goes with the first batch: one forward instead of two at the start.
            threading.Thread(target=self._open, args=(False,), name="soundsift-audio-session").start()
        else:
            self._open()
            if self._problem is not None:
                raise ExportUnusable(self._problem)

    def _open(self, check: bool = True) -> None:
        """The runtime's session, checked against the probe vector torch gave at export now or (``check`` False)
        with the first batch; a failure is kept in ``_problem``. OpenVINO failing to compile the export costs a
        note: ONNX Runtime runs the same graph."""
        try:
            if self.runtime == "openvino":
                try:
                    self._forward = compiled_tower(self.where, MODEL_FILE, self.meta)
                except Exception as exc:  # noqa: BLE001 - OpenVINO's own errors for a file it cannot compile
                    self._leave_openvino(str(exc).splitlines()[0][:160])
            if self._forward is None:
                self._forward = onnxruntime_tower(self.where)
            self._unchecked = True
            if check:
                self._check(self._run(self.features(_probe_waveform(self.window_samples)))[0])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for a damaged file
            self._problem = self._load_problem(exc)
        finally:
            self._opened.set()

    def _load_problem(self, exc: Exception) -> str:
        if isinstance(exc, ImportError):
            return f"ONNX Runtime is not installed ({exc})"
        return f"{self.where} does not load ({str(exc).splitlines()[0][:160]})"

    def _leave_openvino(self, why: str) -> None:
        print(f"note: OpenVINO cannot run the audio tower ({why}); using ONNX Runtime", file=sys.stderr)
        self.runtime, self._forward = "onnxruntime", None

    def _check(self, probe_vector: np.ndarray) -> None:
        """Keep the forward in use if it gave the probe window torch's vector (within 1e-4). OpenVINO computing
        other vectors costs a note and ONNX Runtime is checked instead; where that fails too the export is
        unusable (``_problem``). Raises what ONNX Runtime raises opening a damaged file."""
        self._unchecked = False
        if self._matches_probe(probe_vector):
            return
        if self.runtime == "openvino":
            self._leave_openvino("it computes other vectors than torch")
            self._forward = onnxruntime_tower(self.where)
            if self._matches_probe(self._run(self.features(_probe_waveform(self.window_samples)))[0]):
                return
        self._problem = f"{self.where} does not compute the vectors torch computed for this model"

    def _matches_probe(self, probe: np.ndarray) -> bool:
        """``probe`` is the vector torch gave the probe window at export (within 1e-4)."""
        expected = np.asarray(self.meta.get("probe_vector", []), dtype=np.float32)
        return expected.shape == probe.shape and bool(np.all(np.abs(probe - expected) <= PARITY_TOLERANCE))

    def _checked_batch(self, audio: np.ndarray) -> np.ndarray | None:
        """The first batch's vectors, computed with the probe window beside it and checked by it; None when the
        check moved the run to another runtime or found the export unusable (the caller goes on from there)."""
        runtime = self.runtime
        try:
            vectors = self._run(self.features(np.concatenate([audio, _probe_waveform(self.window_samples)])))
            self._check(vectors[-1])
        except Exception as exc:  # noqa: BLE001 - as in _open: the runtime's own errors
            self._problem = self._load_problem(exc)
        return vectors[:-1] if self._problem is None and self.runtime == runtime else None

    @property
    def embedding_dim(self) -> int:
        return int(self.identity.embedding_dim)

    @property
    def handed_over(self) -> bool:
        """True once windows go through torch (a long run on a CPU where torch is faster, or a failed export)."""
        return self._torch is not None

    def allow_hand_over(self, load_torch: Callable[[], "ClapEncoder"]) -> None:
        """Let the run move to torch: ``load_torch`` gives the whole CLAP of this model.

        On a long run it is called in a thread, when the rates the export measured on this machine say so
        (``hand_over_after``). It is also what a background open that fails falls back to."""
        self._load_torch = load_torch

    @property
    def hand_over_after(self) -> int | None:
        """Windows after which a run moves to torch: never where the runtime in use measured at least as fast as
        torch, else once its extra time per window has added up to what loading torch costs."""
        return None if self._load_torch is None else hand_over_point(self.meta, self.runtime)

    def _run(self, features: np.ndarray) -> np.ndarray:
        assert self._forward is not None
        return self._forward(features)

    def _start_torch_load(self) -> None:
        """Past the hand-over point: load the whole CLAP in a thread; windows go on through the runtime meanwhile."""
        load, after = self._load_torch, self.hand_over_after
        if load is None or self._loader is not None or after is None or self.embedded < after:
            return

        def load_in_background() -> None:
            try:
                encoder = load()
            except Exception as exc:  # noqa: BLE001 - the run goes on on ONNX Runtime, which computes the same
                print(
                    f"note: staying on {self.runtime} for the audio tower ({str(exc).splitlines()[0]})", file=sys.stderr
                )
                return
            if encoder.identity.fingerprint == self.identity.fingerprint:
                self._torch = encoder

        self._loader = threading.Thread(target=load_in_background, name="soundsift-torch-load")  # joined at exit
        self._loader.start()

    def _fall_back(self) -> "ClapEncoder":
        """The session failed to open in the background: out of the way (the next owner writes it again), torch now."""
        if self._torch is None:
            print(f"warning: ONNX audio tower unusable ({self._problem}); indexing with torch.", file=sys.stderr)
            shutil.rmtree(self.where, ignore_errors=True)
            if self._load_torch is None:
                raise ExportUnusable(str(self._problem))
            self._torch = self._load_torch()
        return self._torch

    def embed_waveforms(self, waveforms) -> np.ndarray:
        """(batch, window_samples) 48 kHz mono (already repeat-padded) -> (batch, dim) float32 unit vectors."""
        audio = np.asarray(waveforms, dtype=np.float32)
        if self._torch is None:
            self._opened.wait()
        vectors = None
        if self._unchecked and self._torch is None and self._problem is None:
            with self._lock:
                if self._unchecked:
                    vectors = self._checked_batch(audio)
        if vectors is None and (self._torch is not None or self._problem is not None):
            with self._lock:
                torch_encoder = self._torch or self._fall_back()
            return torch_encoder.embed_waveforms(audio)
        with self._lock:
            if vectors is None:
                vectors = self._run(self.features(audio))
            self.embedded += len(audio)
        self._start_torch_load()
        return vectors

    def embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """Embed windows of at most window_samples each (short ones are repeat-padded)."""
        padded = np.stack([self.features.repeat_pad(np.asarray(w, dtype=np.float32)) for w in windows])
        return self.embed_waveforms(padded)

    def finish(self) -> None:
        """Wait for what still runs in threads (the session's open, a torch load started by the hand-over)."""
        self._opened.wait()
        if self._loader is not None:
            self._loader.join()


def onnxruntime_tower(where: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function (features -> unit vectors) running the export at ``where`` in an ONNX Runtime session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The decode workers share the cores: ORT's threads spinning between batches only take CPU from them
    # (32 windows: 10.2-10.5 CPU s and 6.6-6.7 s wall without spinning, 11.2 and 6.7-7.5 s with it).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(where / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def run(features: np.ndarray) -> np.ndarray:
        is_longer = np.ones((features.shape[0], 1), dtype=bool)
        (vectors,) = session.run(None, {"input_features": features, "is_longer": is_longer})
        return np.asarray(vectors, dtype=np.float32)

    return run


def open_audio_export(identity: "ModelIdentity", background: bool = False) -> OnnxAudioEncoder:
    """The checked audio export of ``identity``'s model; ExportUnusable (a damaged export removed) otherwise.

    ``background``: the session opens in a thread and is checked when the first window needs it."""
    where = audio_export_dir(identity.fingerprint)
    try:
        return OnnxAudioEncoder(where, identity, background=background)
    except ExportUnusable:
        if (where / META_FILE).exists():
            shutil.rmtree(where, ignore_errors=True)  # the next owner with torch loaded writes it again
        raise


# -- which model a new index names, without loading it -------------------------------------------------------
def _checkpoint_dir(model: str, revision: str | None) -> Path | None:
    target = Path(model).expanduser()
    if target.is_dir():
        return target.resolve()
    if model.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - not a hub id, or no cache: the model is loaded the ordinary way
        return None
    return Path(found).parent if isinstance(found, str) else None


def _stamp(where: Path) -> list:
    """The checkpoint's files as (name, size, mtime_ns): a changed or replaced checkpoint has another stamp."""
    out = []
    for path in sorted(where.iterdir()):
        if path.suffix in (".json", ".safetensors", ".bin", ".txt", ".model") and path.is_file():
            st = path.stat()
            out.append([path.name, st.st_size, st.st_mtime_ns])
    return out


def _record_path(model: str, revision: str | None) -> Path:
    key = hashlib.sha256(json.dumps([model, revision or ""]).encode()).hexdigest()[:32]
    return cache_root() / "checkpoints" / f"{key}.json"


def remember_checkpoint(model: str, revision: str | None, identity: "ModelIdentity") -> None:
    """Record ``identity`` for the checkpoint ``model`` names (as typed), keyed by its files' sizes and times."""
    if audio_mode() == "off":
        return
    try:
        where = _checkpoint_dir(model, revision)
        if where is None:
            return
        record = {
            "model": model,
            "revision": revision or "",
            "stamp": _stamp(where),
            "identity": dataclasses.asdict(identity),
        }
        path = _record_path(model, revision)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()) == record:
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: the next owner loads the model the ordinary way


def remembered_identity(model: str, revision: str | None) -> "ModelIdentity | None":
    """The identity a full load of ``model`` gave (its window settings as loaded then), when its checkpoint files are
    unchanged since; else None."""
    from indexer.model import ModelIdentity

    try:
        record = json.loads(_record_path(model, revision).read_text())
        where = _checkpoint_dir(model, revision)
        if where is None or record.get("stamp") != _stamp(where):
            return None
        return ModelIdentity(**record["identity"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pick_onnx_audio(settings, identity_of: Callable[[], "ModelIdentity | None"]) -> OnnxAudioEncoder | None:
    """The audio export an owner indexes with, or None for torch: on a CPU, fp32, no cluster, both exports sound.

    The settings are looked at first; only then ``identity_of()`` (it reads the index or the checkpoint record).
    The text export is asked for too: an owner without it loads torch anyway, to write it."""
    from indexer.model import light_device_name
    from indexer.text_onnx import onnx_enabled

    if audio_mode() == "off" or not onnx_enabled() or settings.precision not in ("auto", "fp32") or settings.ray:
        return None
    if light_device_name(settings.device) != "cpu":
        return None
    identity = identity_of()
    if identity is None or not identity.fingerprint:
        return None
    if not export_looks_whole(identity.fingerprint) or not audio_export_looks_whole(identity.fingerprint):
        return None
    try:
        return open_audio_export(identity, background=True)
    except ExportUnusable as exc:
        print(f"warning: ONNX audio tower unusable ({exc}); indexing with torch.", file=sys.stderr)
        return None


# -- writing the export (torch and the model loaded) ---------------------------------------------------------
def audio_tower_module(model):
    """What is exported (and what `benchmarks/bench_audio_onnx.py` times): log-mel features and ``is_longer`` in,
    the unit vector ``ClapEncoder.embed_waveforms`` gives out. Shares the loaded model's modules."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.audio_model, self.projection = model.audio_model, model.audio_projection

        def forward(self, input_features, is_longer):
            pooled = self.audio_model(input_features=input_features, is_longer=is_longer).pooler_output
            return torch.nn.functional.normalize(self.projection(pooled).float(), dim=-1)

    return Tower().eval()


def _best_per_window(run: Callable[[], object], windows: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best / windows


_START = (
    "import sys, time; t = time.perf_counter(); from indexer.model import load_clap; "
    "load_clap(sys.argv[1], sys.argv[2] or None, 'cpu'); print(time.perf_counter() - t)"
)


def _torch_start_s(encoder: "ClapEncoder") -> float:
    """What a fresh process pays to import torch and transformers and load this model: measured in one, since the
    exporting process had some of it imported already; the exporter's own load time if that process fails."""
    import subprocess

    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH", "")]))}
    revision = "" if encoder.identity.revision in ("local", "main") else encoder.identity.revision
    try:
        done = subprocess.run(
            [sys.executable, "-c", _START, encoder.identity.model_id, revision],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        return float(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return float(getattr(encoder, "load_s", 0.0) or 0.0)


def export_audio_tower(encoder: "ClapEncoder") -> Path:
    """Write the audio export of ``encoder``'s model atomically (a temporary directory renamed); checked first."""
    with encoder._lock:  # no forward of this model while it is traced
        return _export_locked(encoder)


def _export_locked(encoder: "ClapEncoder") -> Path:
    import warnings

    import torch

    from indexer.features import LogMelFeatures

    identity = encoder.identity
    where = audio_export_dir(identity.fingerprint)
    where.parent.mkdir(parents=True, exist_ok=True)
    tower = audio_tower_module(encoder.model)
    if next(tower.parameters()).device.type != "cpu":
        import copy

        tower = copy.deepcopy(tower).to("cpu")
    extractor = encoder.extractor
    cpu_features = LogMelFeatures.from_extractor(extractor, torch.device("cpu"))
    window = int(extractor.nb_max_samples)
    probe_audio = _probe_waveform(window)
    batch_audio = np.concatenate([probe_audio] * TIMING_BATCH)
    with torch.inference_mode():
        probe_features = cpu_features(torch.from_numpy(probe_audio))
        probe = tower(probe_features, torch.ones((1, 1), dtype=torch.bool))[0].numpy()
        batch_features = cpu_features(torch.from_numpy(batch_audio))
        batch_longer = torch.ones((TIMING_BATCH, 1), dtype=torch.bool)
        torch_s = _best_per_window(lambda: tower(batch_features, batch_longer), TIMING_BATCH)
    staging = Path(tempfile.mkdtemp(prefix=f".{identity.fingerprint[:12]}-audio-", dir=where.parent))
    try:
        staging.chmod(0o755)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shapes fixed for one window size
            torch.onnx.export(
                tower,
                (batch_features[:2], batch_longer[:2]),
                str(staging / MODEL_FILE),
                input_names=["input_features", "is_longer"],
                output_names=["vector"],
                dynamic_axes={"input_features": {0: "batch"}, "is_longer": {0: "batch"}, "vector": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        weights_beside_graph(staging, MODEL_FILE, WEIGHTS_FILE)
        np.save(staging / FILTERS_FILE, np.asarray(extractor.mel_filters, dtype=np.float64))
        meta = {
            "export_version": EXPORT_VERSION,
            "fingerprint": identity.fingerprint,
            "model_id": identity.model_id,
            "embedding_dim": int(identity.embedding_dim),
            "logit_scale": identity.logit_scale,
            "window_samples": window,
            "sample_rate": int(extractor.sampling_rate),
            "n_fft": int(extractor.fft_window_size),
            "hop_length": int(extractor.hop_length),
            "torch": torch.__version__,
            "model_bytes": (staging / MODEL_FILE).stat().st_size,
            "weights_bytes": (staging / WEIGHTS_FILE).stat().st_size,
            "filters_bytes": (staging / FILTERS_FILE).stat().st_size,
            "probe_vector": [float(x) for x in probe],
            "torch_s_per_window": torch_s,
            "torch_start_s": _torch_start_s(encoder),
        }
        (staging / META_FILE).write_text(json.dumps(meta))
        check = OnnxAudioEncoder(staging, identity, runtime="onnxruntime")  # matches the probe, or raises
        features = check.features(batch_audio)
        meta[RATE_KEYS["onnxruntime"]] = _best_per_window(lambda: check._run(features), TIMING_BATCH)
        names = [MODEL_FILE, WEIGHTS_FILE, FILTERS_FILE, META_FILE]
        if openvino_installed():
            names += _measure_openvino(staging, identity, meta, features)
        (staging / META_FILE).write_text(json.dumps(meta))
        publish_export(staging, where, names, lambda: audio_export_looks_whole(identity.fingerprint))
        return where
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _measure_openvino(staging: Path, identity: "ModelIdentity", meta: dict, features: np.ndarray) -> list[str]:
    """Compile the staged export with OpenVINO, keep the compiled model, check it against the probe and time it on
    the windows ONNX Runtime was timed on; the files to publish. A failure is a note: ONNX Runtime stays."""
    try:
        meta.update(write_blob(staging, MODEL_FILE))
        (staging / META_FILE).write_text(json.dumps(meta))
        check = OnnxAudioEncoder(staging, identity, runtime="openvino")
        if check.runtime != "openvino":
            raise ExportUnusable("it fell back to ONNX Runtime")
        meta[RATE_KEYS["openvino"]] = _best_per_window(lambda: check._run(features), TIMING_BATCH)
        return [BLOB_FILE]
    except Exception as exc:  # noqa: BLE001 - OpenVINO is an optimisation: the export stands without it
        print(f"note: OpenVINO left out of the audio export ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        for key in ("openvino_blob", "openvino_blob_bytes"):
            meta.pop(key, None)
        (staging / BLOB_FILE).unlink(missing_ok=True)
        meta[RATE_KEYS["openvino"]] = None  # measured: unusable here (no rewrite for it on every run)
        return []


def rates_line(where: Path) -> str:
    """What the export at ``where`` measured here and what an owner will run it on, in one line (for doctor)."""
    meta = _read_meta(where)
    names = {"torch_s_per_window": "torch", RATE_KEYS["onnxruntime"]: "ONNX Runtime", RATE_KEYS["openvino"]: "OpenVINO"}
    rates = ", ".join(f"{name} {float(meta[key]):.3f} s" for key, name in names.items() if meta.get(key))
    runtime = planned_runtime(meta)
    after = hand_over_point(meta, runtime)
    then = "" if after is None else f", then torch after {after} windows"
    return f"per window here: {rates}; an owner on the CPU indexes with {names[RATE_KEYS[runtime]]}{then}"


def check_or_write_audio_export(encoder: "ClapEncoder") -> tuple[Path, bool]:
    """(the audio export's directory, True when written now): one that passes the full check (its session loads and
    reproduces the probe) is kept, any other is written again. Raises ExportUnusable when it cannot be written."""
    try:
        opened = open_audio_export(encoder.identity)
        if measured_every_runtime(opened.meta):
            return opened.where, False
    except ExportUnusable:
        pass
    try:
        return export_audio_tower(encoder), True
    except Exception as exc:  # noqa: BLE001 - the exporter's own errors, in one line
        raise ExportUnusable(f"the audio tower could not be exported ({str(exc).splitlines()[0][:200]})") from None


def ensure_audio_export(encoder: "ClapEncoder", force: bool = False) -> Path | None:
    """Write the audio export when absent or damaged (or ``force``) on a CPU-capable model; a failure is a warning."""
    if audio_mode() == "off":
        return None
    try:
        where = audio_export_dir(encoder.identity.fingerprint)
        with contextlib.suppress(ExportUnusable):  # absent or not whole: written below
            if not force and measured_every_runtime(_read_meta(where)):
                return where
        return export_audio_tower(encoder)
    except Exception as exc:  # noqa: BLE001 - an optimisation: the command's own work stands
        print(f"warning: ONNX audio tower not written ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return None
