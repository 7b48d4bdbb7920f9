"""Built-in window tagger: acoustic flags per window (silence, clipping, DC offset, RMS and peak level)."""

from __future__ import annotations

import numpy as np

from soundsift import WindowTagger, hookimpl

SILENCE_DB = -60.0
CLIP_LEVEL = 0.999
CLIP_SHARE = 0.001
DC_LIMIT = 0.05


def acoustic_tags(windows: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """rms_db, peak, dc_offset, and the flags silence (RMS < -60 dBFS), clipping (> 0.1 % of samples at
    |x| >= 0.999) and dc (|mean| > 0.05), for (n, samples) mono windows (48 kHz, after the channel mean)."""
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected (windows, samples), got shape {x.shape}")
    if x.shape[1] == 0:  # nothing to measure: a silent, unclipped, centred window
        x = np.zeros((x.shape[0], 1), dtype=np.float32)
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1))
    rms_db = 20.0 * np.log10(np.maximum(rms, 1e-10))
    peak = np.max(np.abs(x), axis=1)
    dc = np.mean(x, axis=1, dtype=np.float64)
    clipped_share = np.mean(np.abs(x) >= CLIP_LEVEL, axis=1)
    return {
        "rms_db": np.round(rms_db, 2),
        "peak": np.round(peak.astype(np.float64), 4),
        "dc_offset": np.round(dc, 5),
        "silence": rms_db < SILENCE_DB,
        "clipping": clipped_share > CLIP_SHARE,
        "dc": np.abs(dc) > DC_LIMIT,
    }


@hookimpl
def register_window_taggers(register):
    register(
        WindowTagger(name="acoustic", tag=acoustic_tags, description="silence, clipping, DC offset, RMS/peak level")
    )
