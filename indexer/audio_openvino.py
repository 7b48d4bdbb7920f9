"""The exported audio tower compiled by OpenVINO for this CPU: the same ONNX graph and weights, a faster runtime.

OpenVINO reads the audio export's ONNX file as it is (`indexer/audio_onnx.py` writes it) and compiles it for
the CPU at fp32 (``INFERENCE_PRECISION_HINT``: on CPUs with bf16 or AMX units OpenVINO would otherwise pick
bf16, and the vectors must stay within 1e-4 of torch's). Compiling takes 0.6 to 1.4 s on two cores, so the
exporter keeps the compiled model beside the graph (``audio_tower.openvino``, OpenVINO's ``export_model``)
with the OpenVINO version and the CPU it was compiled for; a process on the same version and CPU imports it
in about 0.3 s, any other compiles the graph. Nothing is written into the export by a reader.
Importing this module does not import OpenVINO.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

BLOB_FILE = "audio_tower.openvino"
RUNTIME_ENV = "SOUNDSIFT_AUDIO_RUNTIME"  # openvino | onnxruntime: which runs the audio export (default: the faster)
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def openvino_installed() -> bool:
    """True when OpenVINO can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def chosen_runtime() -> str | None:
    """The runtime ``SOUNDSIFT_AUDIO_RUNTIME`` asks for (``openvino`` or ``onnxruntime``), or None: the faster."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower()
    return value if value in ("openvino", "onnxruntime") else None


def cpu_signature() -> str:
    """What a compiled model depends on besides OpenVINO's version: the CPU model and its instruction-set flags."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = value.strip()
                    break
    except OSError:
        model = platform.processor()  # not Linux (platform.processor may start a process: only here)
    return hashlib.sha256(f"{platform.machine()}|{model}|{flags}".encode()).hexdigest()[:16]


def compiled_tower(where: Path, graph: str, meta: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A function (features -> unit vectors) running the export at ``where`` on OpenVINO: the kept compiled
    model when it was made by this OpenVINO on this CPU, else the ONNX graph compiled now. Raises what
    OpenVINO raises for a damaged file (the caller falls back to ONNX Runtime)."""
    import openvino as ov

    core = ov.Core()
    blob = where / BLOB_FILE
    compiled = None
    if blob.exists() and meta.get("openvino_blob") == blob_key():
        try:
            compiled = core.import_model(blob.read_bytes(), "CPU", CONFIG)
        except Exception:  # noqa: BLE001 - a stale or damaged blob: compile the graph instead
            compiled = None
    if compiled is None:
        compiled = core.compile_model(str(where / graph), "CPU", CONFIG)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(features: np.ndarray) -> np.ndarray:
        is_longer = np.ones((features.shape[0], 1), dtype=bool)
        result = request.infer({"input_features": np.ascontiguousarray(features, np.float32), "is_longer": is_longer})
        return np.array(result[output], dtype=np.float32)

    return run


def blob_key() -> str:
    """What a kept compiled model is valid for: this OpenVINO's version on this CPU. Imports OpenVINO (every
    caller runs it or writes for it; ``importlib.metadata`` took 28 ms of a cold index's start to say the same)."""
    import openvino as ov

    return f"{ov.__version__}|{cpu_signature()}"


def write_blob(staging: Path, graph: str) -> dict:
    """Compile the staged export's graph and keep the compiled model beside it; the meta entries to record."""
    import io

    import openvino as ov

    compiled = ov.Core().compile_model(str(staging / graph), "CPU", CONFIG)
    stream = io.BytesIO()
    compiled.export_model(stream)
    (staging / BLOB_FILE).write_bytes(stream.getvalue())
    return {"openvino_blob": blob_key(), "openvino_blob_bytes": len(stream.getvalue())}
