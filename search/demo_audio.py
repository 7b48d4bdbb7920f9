"""Synthetic sounds and an encoder for any format we decode: the demo archive and the tests make their audio here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOUNDFILE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
PYAV_CODECS = {
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("mp4", "aac"),
    ".opus": ("ogg", "libopus"),
    ".aac": ("adts", "aac"),
}


def synthesize(kind: str, seconds: float, sample_rate: int = 48_000, seed: int = 0) -> np.ndarray:
    """Mono float32 audio of a kind: tone, bell, noise, bearing, bark, glass, engine, silence, chirp."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    if kind == "tone":
        x = 0.5 * np.sin(2 * np.pi * 440 * t)
    elif kind == "bell":
        x = (
            np.asarray(
                sum(
                    np.sin(2 * np.pi * f * t) * np.exp(-(t % 2.0) * d)
                    for f, d in ((880, 1.5), (2205, 2.5), (3520, 4.0))
                )
            )
            * 0.3
        )
    elif kind == "noise":
        x = 0.3 * rng.standard_normal(len(t))
    elif kind == "bearing":
        # Shaft harmonics, a defect tone modulated at the ball-pass rate, and a little broadband noise.
        x = (
            0.2 * np.sin(2 * np.pi * 50 * t)
            + 0.15 * np.sin(2 * np.pi * 3100 * t) * (1 + np.sin(2 * np.pi * 87 * t))
            + 0.05 * rng.standard_normal(len(t))
        )
    elif kind == "bark":
        env = ((t % 0.8) < 0.15).astype(float) * np.exp(-((t % 0.8) * 20))
        x = env * (np.sin(2 * np.pi * 600 * t) + 0.5 * np.sin(2 * np.pi * 1200 * t) + 0.3 * rng.standard_normal(len(t)))
    elif kind == "glass":
        env = np.exp(-(t % 3.0) * 6.0)
        x = env * (
            0.6 * rng.standard_normal(len(t)) * np.sin(2 * np.pi * 5000 * t) + 0.3 * np.sin(2 * np.pi * 7300 * t)
        )
    elif kind == "engine":
        x = (
            0.3 * np.sign(np.sin(2 * np.pi * 35 * t)) * 0.5
            + 0.1 * np.sin(2 * np.pi * 70 * t)
            + 0.05 * rng.standard_normal(len(t))
        )
    elif kind == "silence":
        x = np.zeros(len(t))
    elif kind == "chirp":
        x = 0.4 * np.sin(2 * np.pi * (200 * t + 400 * t**2))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Encode ``audio`` ((frames,) or (frames, channels) float32) to ``path``, format by extension."""
    import av
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext in SOUNDFILE_FORMATS:
        fmt, subtype = SOUNDFILE_FORMATS[ext]
        sf.write(str(path), audio, sample_rate, format=fmt, subtype=subtype)
        return path
    if ext not in PYAV_CODECS:
        raise ValueError(f"cannot encode {ext}")
    container_format, codec = PYAV_CODECS[ext]
    frames = audio if audio.ndim == 2 else audio[:, None]
    layout = "mono" if frames.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        fifo = av.AudioFifo()
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(frames.T, dtype=np.float32), format="fltp", layout=layout
        )
        frame.sample_rate = sample_rate
        fifo.write(frame)
        size = stream.codec_context.frame_size or 1024
        while (chunk := fifo.read(size)) is not None:
            for packet in stream.encode(chunk):
                container.mux(packet)
        rest = fifo.read()
        if rest is not None:
            for packet in stream.encode(rest):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
