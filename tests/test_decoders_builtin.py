"""The built-in slk, amr and pcm decoders, through the real plugin manager, on real files encoded here."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from pathlib import Path

import av
import numpy as np
import pysilk
import pytest

from plugins.builtin import decode_amr
from plugins.contract import AudioSource, DecodeError
from plugins.manager import build_plugin_manager


@pytest.fixture(scope="module")
def decoders():
    host = build_plugin_manager()
    for name in ("slk", "amr", "pcm"):
        assert name in host.decoders, [f for f in host.failures if f.name == f"decode_{name}"]
    return host.decoders


def decode(decoder, path: Path, settings: dict | None = None) -> tuple[AudioSource, np.ndarray]:
    """Open and read ``path`` whole, checking every block keeps the AudioSource promises."""
    source = decoder.open(path, settings or {})
    assert isinstance(source, AudioSource)
    blocks = []
    try:
        for block in source.blocks():
            assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == source.channels
            assert 0 < len(block) <= source.sample_rate * 1.0 + 1  # about a second at most, never the whole file
            assert np.isfinite(block).all() and np.abs(block).max() <= 1.0
            blocks.append(block)
    finally:
        source.close()
    return source, np.concatenate(blocks)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_registered_with_extensions_and_magic(decoders):
    assert set(decoders["slk"].extensions) == {"slk", "silk"}
    assert set(decoders["slk"].magic) == {b"#!SILK_V3", b"\x02#!SILK_V3"}
    assert set(decoders["amr"].magic) == {b"#!AMR\n", b"#!AMR-WB\n"}
    assert set(decoders["pcm"].extensions) == {"pcm", "raw"}
    assert not any(decoders[n].generic for n in ("slk", "amr", "pcm"))


# --- pcm --------------------------------------------------------------------------------------


def pcm_bytes(audio: np.ndarray, fmt: str) -> tuple[bytes, np.ndarray]:
    """Encode float audio (frames, channels) as ``fmt``; return the bytes and what a perfect decoder gives back."""
    if fmt == "f32le":
        values = audio.astype("<f4")
        return values.tobytes(), values.astype(np.float32)
    bits = {"u8": 8, "s16le": 16, "s24le": 24, "s32le": 32}[fmt]
    full = 2 ** (bits - 1)
    ints = np.clip(np.round(audio * full), -full, full - 1).astype(np.int64)
    expected = (ints / full).astype(np.float32)
    if fmt == "u8":
        return (ints + 128).astype(np.uint8).tobytes(), expected
    if fmt == "s24le":
        return ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes(), expected
    return ints.astype({16: "<i2", 32: "<i4"}[bits]).tobytes(), expected


@pytest.mark.parametrize("fmt", ["u8", "s16le", "s24le", "s32le", "f32le"])
def test_pcm_every_format_exact(decoders, tmp_path, fmt):
    rate, seconds = 22_050, 2.5
    rng = np.random.default_rng(1)
    audio = np.stack([tone(seconds, rate), 0.3 * rng.standard_normal(int(seconds * rate)).clip(-3, 3) / 3], axis=1)
    data, expected = pcm_bytes(audio, fmt)
    path = tmp_path / "take.raw"
    path.write_bytes(data)
    source, got = decode(decoders["pcm"], path, {"pcm.sample_rate": rate, "pcm.channels": 2, "pcm.sample_format": fmt})
    assert (source.sample_rate, source.channels, source.codec) == (rate, 2, f"pcm_{fmt}")
    assert source.duration_s == pytest.approx(seconds, rel=0.01)
    assert len(got) == len(audio)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    lsb = 2.0**-7 if fmt == "u8" else 2.0**-15
    assert np.abs(got - audio).max() <= lsb


def test_pcm_defaults_and_string_settings(decoders, tmp_path):
    path = tmp_path / "a.pcm"
    data, expected = pcm_bytes(tone(1.0, 16_000)[:, None], "s16le")
    path.write_bytes(data)
    source, got = decode(decoders["pcm"], path)  # 16 kHz mono s16le
    assert (source.sample_rate, source.channels, source.duration_s) == (16_000, 1, 1.0)
    np.testing.assert_array_equal(got, expected)
    source, _ = decode(
        decoders["pcm"], path, {"pcm.sample_rate": "8000"}
    )  # as SOUNDSIFT_PLUGIN__PCM__SAMPLE_RATE gives it
    assert source.duration_s == 2.0


@pytest.mark.parametrize("channels,extra", [(1, 1), (2, 3)])
def test_pcm_partial_final_frame_is_dropped(decoders, tmp_path, caplog, channels, extra):
    audio = np.repeat(tone(1.5, 8000)[:, None], channels, axis=1)
    data, expected = pcm_bytes(audio, "s16le")
    path = tmp_path / "cut.pcm"
    path.write_bytes(data + b"\x7f" * extra)
    with caplog.at_level("WARNING"):
        source, got = decode(decoders["pcm"], path, {"pcm.sample_rate": 8000, "pcm.channels": channels})
    assert source.dropped_bytes == extra
    assert "partial final frame" in caplog.text  # counted and said, not dropped silently
    assert source.duration_s == pytest.approx(1.5)
    np.testing.assert_array_equal(got, expected)


def test_pcm_float_overs_clipped_nan_kept(decoders, tmp_path):
    path = tmp_path / "f.raw"
    path.write_bytes(np.array([0.25, 1.5, -3.0, np.nan], dtype="<f4").tobytes())
    source = decoders["pcm"].open(path, {"pcm.sample_format": "f32le"})
    (block,) = list(source.blocks())
    source.close()
    np.testing.assert_array_equal(
        block[:, 0], np.array([0.25, 1.0, -1.0, np.nan], dtype=np.float32)
    )  # NaN is the indexer's to refuse


def test_pcm_long_file_streams_in_blocks(decoders, tmp_path):
    path = tmp_path / "long.pcm"
    path.write_bytes(np.zeros(8000 * 30 + 123, dtype="<i2").tobytes())
    source, got = decode(decoders["pcm"], path, {"pcm.sample_rate": 8000})
    assert len(got) == 8000 * 30 + 123 and source.duration_s == pytest.approx(30 + 123 / 8000)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_pcm_sidecar_overrides_settings(decoders, tmp_path, suffix):
    audio = np.stack([tone(2.0, 8000), tone(2.0, 8000, freq=1000)], axis=1)
    data, expected = pcm_bytes(audio, "s24le")
    path = tmp_path / "take1.pcm"
    path.write_bytes(data)
    sidecar = path.with_name(path.name + suffix)
    if suffix == ".toml":
        sidecar.write_text('sample_rate = 8000\nchannels = 2\nsample_format = "s24le"\n')
    else:
        sidecar.write_text(json.dumps({"sample_rate": 8000, "channels": 2, "sample_format": "s24le"}))
    settings = {"pcm.sample_rate": 48_000, "pcm.channels": 1, "pcm.sample_format": "s16le"}
    source, got = decode(decoders["pcm"], path, settings)
    assert (source.sample_rate, source.channels, source.codec) == (8000, 2, "pcm_s24le")
    assert source.duration_s == pytest.approx(2.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


def test_pcm_sidecar_keeps_unnamed_settings(decoders, tmp_path):
    path = tmp_path / "b.raw"
    path.write_bytes(pcm_bytes(tone(1.0, 8000)[:, None], "s16le")[0])
    path.with_name("b.raw.toml").write_text("sample_rate = 8000\n")
    source, _ = decode(decoders["pcm"], path, {"pcm.sample_rate": 44_100, "pcm.sample_format": "s16le"})
    assert (source.sample_rate, source.channels, source.duration_s) == (8000, 1, 1.0)


@pytest.mark.parametrize(
    "sidecars,match",
    [
        ({".toml": "samplerate = 8000\n"}, "unknown key"),
        ({".toml": "sample_rate = 8000\n", ".json": "{}"}, "two sidecars"),
        ({".json": "[8000]"}, "must hold a table"),
        ({".toml": "sample_rate = \n"}, "unreadable"),
        ({".json": '{"sample_rate": 1000000000}'}, "sample rate"),
        ({".json": '{"sample_format": "s12le"}'}, "unknown PCM sample format"),
    ],
)
def test_pcm_bad_sidecar_is_a_decode_error(decoders, tmp_path, sidecars, match):
    path = tmp_path / "c.pcm"
    path.write_bytes(b"\0" * 3200)
    for suffix, text in sidecars.items():
        path.with_name(path.name + suffix).write_text(text)
    with pytest.raises(DecodeError, match=match):
        decoders["pcm"].open(path, {})


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"pcm.sample_rate": 100}, "sample rate 100 Hz"),
        ({"pcm.sample_rate": 10**9}, "sample rate"),
        ({"pcm.channels": 0}, "0 channels"),
        ({"pcm.channels": 65}, "65 channels"),
        ({"pcm.sample_format": "mp3"}, "unknown PCM sample format"),
        ({"pcm.sample_rate": "fast"}, "must be an integer"),
        ({"pcm.channels": 2, "pcm.sample_format": "s32le"}, "no complete frame"),
    ],
)
def test_pcm_absurd_settings_refused(decoders, tmp_path, settings, match):
    path = tmp_path / "d.pcm"
    path.write_bytes(b"\0" * 6)
    with pytest.raises(DecodeError, match=match):
        decoders["pcm"].open(path, settings)


# --- slk --------------------------------------------------------------------------------------


def silk_file(path: Path, audio: np.ndarray, rate: int, tencent: bool, end_mark: bool = False) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    pysilk.encode(io.BytesIO(pcm), out, rate, 24_000, tencent=tencent)
    data = out.getvalue()
    assert data.startswith(b"\x02#!SILK_V3" if tencent else b"#!SILK_V3")
    path.write_bytes(data + (b"\xff\xff" if end_mark else b""))  # the SILK SDK encoder's -1 end mark
    return path


@pytest.mark.parametrize(
    "tencent,end_mark", [(True, False), (False, False), (False, True)], ids=["wechat-0x02", "skype", "skype-end-mark"]
)
@pytest.mark.parametrize("rate", [24_000, 16_000])
def test_slk_decodes_with_and_without_prefix(decoders, tmp_path, tencent, end_mark, rate):
    seconds = 3.0
    path = silk_file(tmp_path / "voice.slk", tone(seconds, 24_000), 24_000, tencent, end_mark)
    head = path.read_bytes()[:64]
    assert [n for n, d in decoders.items() if d.matches_magic(head)] == ["slk"]
    source, got = decode(decoders["slk"], path, {"slk.sample_rate": rate})
    assert (source.sample_rate, source.channels, source.codec) == (rate, 1, "silk")
    assert len(got) / rate == pytest.approx(seconds, rel=0.01)
    assert peak_hz(got[:, 0], rate) == pytest.approx(440, abs=5)
    assert np.sqrt(np.mean(got**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.25)


def test_slk_streams_and_stops_early(decoders, tmp_path):
    path = silk_file(tmp_path / "long.silk", tone(12.0, 24_000), 24_000, tencent=True)
    source = decoders["slk"].open(path, {})
    blocks = source.blocks()
    first = next(blocks)
    assert first.shape == (24_000, 1)
    blocks.close()  # the reader stops: the decoding thread must end, not wait forever on a full queue
    source.close()
    assert not [t for t in threading.enumerate() if t.name == "silk-decode"]


def test_slk_lost_packet_left_out(decoders, tmp_path):
    data = silk_file(tmp_path / "ok.slk", tone(2.0, 24_000), 24_000, tencent=True).read_bytes()
    first = 10 + 2 + int.from_bytes(data[10:12], "little")
    path = tmp_path / "lossy.slk"
    path.write_bytes(data[:first] + b"\x00\x00" + data[first:])  # an empty packet: the SDK's mark of a lost one
    source, got = decode(decoders["slk"], path)
    assert source.lost_packets == 1
    assert len(got) / 24_000 == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    "mangle,match",
    [
        (lambda b: b[: len(b) - 7], "truncated"),
        (lambda b: b[:10], "no SILK packet"),
        (lambda b: b"RIFF" + b[4:], "not a SILK v3 file"),
        (lambda b: b[:10] + b"\x00\x40" + b"\0" * 64, "claims 16384 bytes"),
    ],
)
def test_slk_broken_files(decoders, tmp_path, mangle, match):
    good = silk_file(tmp_path / "ok.slk", tone(1.0, 24_000), 24_000, tencent=True).read_bytes()
    path = tmp_path / "bad.slk"
    path.write_bytes(mangle(good))
    with pytest.raises(DecodeError, match=match):
        decoders["slk"].open(path, {})


@pytest.mark.parametrize("rate,match", [(1000, "outside"), (22_050, "SILK decodes at"), ("x", "integer")])
def test_slk_sample_rate_setting_checked(decoders, tmp_path, rate, match):
    path = silk_file(tmp_path / "v.slk", tone(1.0, 24_000), 24_000, tencent=False)
    with pytest.raises(DecodeError, match=match):
        decoders["slk"].open(path, {"slk.sample_rate": rate})


# --- amr --------------------------------------------------------------------------------------


def amr_nb_file(path: Path, audio: np.ndarray) -> Path:
    """A real AMR-NB file at 12.2 kbit/s, encoded by OpenCORE through PyAV."""
    with av.open(str(path), "w", format="amr") as out:
        stream = out.add_stream("libopencore_amrnb", rate=8000)
        stream.layout = "mono"
        stream.bit_rate = 12_200
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


needs_amrnb_encoder = pytest.mark.skipif(
    "libopencore_amrnb" not in av.codecs_available, reason="no AMR-NB encoder in PyAV's FFmpeg"
)


@needs_amrnb_encoder
@pytest.mark.parametrize("name", ["memo.amr", "memo.mp3"])
def test_amr_nb_decodes_and_is_sniffed_whatever_the_name(decoders, tmp_path, name):
    seconds = 3.0
    path = amr_nb_file(tmp_path / name, tone(seconds, 8000))
    head = path.read_bytes()[:64]
    assert head.startswith(b"#!AMR\n") and head[6] >> 3 & 0x0F == 7  # mode 7 = 12.2 kbit/s
    assert [n for n, d in decoders.items() if d.matches_magic(head)] == ["amr"]  # magic wins over ".mp3"
    source, got = decode(decoders["amr"], path)
    assert (source.sample_rate, source.channels, source.codec) == (8000, 1, "amrnb")
    assert source.duration_s == pytest.approx(seconds, rel=0.01)
    assert len(got) / 8000 == pytest.approx(source.duration_s)
    assert peak_hz(got[:, 0], 8000) == pytest.approx(440, abs=5)


def amr_wb_file(path: Path, speech_frames: int) -> Path:
    """An AMR-WB file built frame by frame (PyAV's FFmpeg has no AMR-WB encoder): 12.65 kbit/s speech frames
    with random codebook bits, then a SID frame and no-data frames as a phone writes during silence."""
    rng = np.random.default_rng(3)
    frames = [bytes([2 << 3 | 4]) + rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(speech_frames)]
    frames += [bytes([9 << 3 | 4]) + bytes(5)] + [bytes([15 << 3 | 4])] * 9
    path.write_bytes(b"#!AMR-WB\n" + b"".join(frames))
    return path


@pytest.mark.parametrize(
    "decoder_names", [("libopencore_amrwb", "amrwb"), ("amrwb",)], ids=["opencore", "ffmpeg-native"]
)
def test_amr_wb_frames_and_silences(decoders, tmp_path, monkeypatch, decoder_names):
    if decoder_names[0] not in av.codecs_available:
        pytest.skip(f"no {decoder_names[0]} decoder")
    monkeypatch.setattr(decode_amr, "AMR_WB", dataclasses.replace(decode_amr.AMR_WB, decoders=decoder_names))
    path = amr_wb_file(tmp_path / "call.awb", speech_frames=140)
    source, got = decode(decoders["amr"], path)
    assert (source.sample_rate, source.channels, source.codec) == (16_000, 1, "amrwb")
    assert source.duration_s == pytest.approx(3.0)  # 150 frames of 20 ms
    assert len(got) == 150 * 320


@needs_amrnb_encoder
def test_amr_truncated_and_wrong_files(decoders, tmp_path):
    good = amr_nb_file(tmp_path / "ok.amr", tone(1.0, 8000)).read_bytes()
    cases = {
        "cut.amr": (good[:-5], "truncated: frame"),
        "empty.amr": (b"#!AMR\n", "no amrnb frame"),
        "wav.amr": (b"RIFF" + bytes(60), "not an AMR file"),
        "multi.amr": (b"#!AMR_MC1.0\n" + bytes(8), "multichannel"),
    }
    for name, (data, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DecodeError, match=match):
            decoders["amr"].open(path, {})
