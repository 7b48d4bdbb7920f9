"""Products of float16 window vectors with float32 text vectors on the CPU, without widening the chunk first.

At scale the window matrix is float16 (indexer/matrix.py). numpy has no float16 matrix product worth using, so
the plain way widens each chunk into float32 and multiplies that: at 1M windows x 512 the widening alone costs
more than the product. ONNX Runtime's Cast then MatMul does both in one pass over the chunk (a 65,536 x 512 chunk
in about a third of numpy's time on a 2-core Xeon, `benchmarks/bench_classify.py`), and a reader has ONNX
Runtime loaded anyway for the text tower. Without ONNX Runtime the chunk is widened into a reused buffer.

The graph is six nodes' worth of protobuf, kept here as bytes so that a reader need not import ``onnx`` (1.5 s)
to build it; ``tests/test_units.py`` checks the bytes against what ``onnx.helper`` builds.
"""

from __future__ import annotations

import base64
import threading

import numpy as np

#: ``Cast(vectors: float16[n, dim]) -> float32``, then ``MatMul(·, texts_t: float32[dim, labels]) -> products``
#: (opset 13, IR version 8, producer "soundsift"), serialised by ``onnx.helper``; see `half_products_graph`.
GRAPH = base64.b64decode(
    "CAgSCXNvdW5kc2lmdDq6AQogCgd2ZWN0b3JzEgR3aWRlIgRDYXN0KgkKAnRvGAGgAQIKIQoEd2lkZQoHdGV4dHNfdBIIcHJvZHVjdHMiBk1h"
    "dE11bBINaGFsZl9wcm9kdWN0c1odCgd2ZWN0b3JzEhIKEAgKEgwKAxIBbgoFEgNkaW1aIgoHdGV4dHNfdBIXChUIARIRCgUSA2RpbQoIEgZs"
    "YWJlbHNiIQoIcHJvZHVjdHMSFQoTCAESDwoDEgFuCggSBmxhYmVsc0IECgAQDQ=="
)

_session = None
_session_lock = threading.Lock()
_unavailable = False


def half_products_graph():
    """The graph in `GRAPH`, built with ``onnx.helper`` (imports onnx: for tests and for rebuilding the bytes)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["vectors"], ["wide"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["wide", "texts_t"], ["products"]),
        ],
        "half_products",
        [
            helper.make_tensor_value_info("vectors", TensorProto.FLOAT16, ["n", "dim"]),
            helper.make_tensor_value_info("texts_t", TensorProto.FLOAT, ["dim", "labels"]),
        ],
        [helper.make_tensor_value_info("products", TensorProto.FLOAT, ["n", "labels"])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="soundsift", ir_version=8
    )


def _onnx_session():
    """The Cast+MatMul session, made once per process; None when ONNX Runtime is not installed or refuses it."""
    global _session, _unavailable
    if _session is not None or _unavailable:
        return _session
    with _session_lock:
        if _session is None and not _unavailable:
            try:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.log_severity_level = 3
                _session = ort.InferenceSession(GRAPH, options, providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001  (any failure leaves the numpy way, which computes the same)
                _unavailable = True
    return _session


class HalfProducts:
    """``vectors @ texts.T`` as float32 for float16 or float32 chunks of unit vectors (same values within 1e-6)."""

    def __init__(self) -> None:
        self._scratch: np.ndarray | None = None

    def __call__(self, vectors: np.ndarray, texts: np.ndarray) -> np.ndarray:
        """(n, labels) float32 products of an (n, dim) chunk with (labels, dim) float32 text vectors."""
        if vectors.dtype == np.float32:
            return vectors @ texts.T
        if vectors.dtype == np.float16 and len(vectors) and len(texts):
            session = _onnx_session()
            if session is not None:
                texts_t = np.ascontiguousarray(texts.T, dtype=np.float32)
                return session.run(None, {"vectors": np.ascontiguousarray(vectors), "texts_t": texts_t})[0]
        return self.widened(vectors) @ texts.T

    def widened(self, vectors: np.ndarray) -> np.ndarray:
        """A chunk as float32, widened into a buffer reused from chunk to chunk (no fresh pages per chunk)."""
        if vectors.dtype == np.float32:
            return vectors
        n, dim = vectors.shape
        scratch = self._scratch
        if scratch is None or scratch.shape[0] < n or scratch.shape[1] != dim:
            scratch = self._scratch = np.empty((n, dim), dtype=np.float32)
        out = scratch[:n]
        out[...] = vectors
        return out
