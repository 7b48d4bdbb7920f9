"""The scan indexes what the loaded decoders open: their extensions, sniffed containers under other names, sidecars."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from indexer.formats import ScanFormats, sniff_container
from indexer.scan import content_hash, scan_paths
from plugins.manager import build_plugin_manager

RATE = 16_000


def tone(seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(RATE * seconds)) / RATE)).astype(np.float32)


def write_3gp(path: Path, audio: np.ndarray) -> Path:
    """AAC in a 3GP container, written with FFmpeg through PyAV."""
    with av.open(str(path), "w", format="3gp") as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def formats() -> ScanFormats:
    return ScanFormats.of(build_plugin_manager().decoders)


@pytest.fixture()
def archive(tmp_path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    sf.write(root / "bell.oga", tone(), RATE, format="OGG", subtype="VORBIS")
    sf.write(root / "click.w64", tone(), RATE, format="W64")
    write_3gp(root / "voice.3gp", tone())
    sf.write(root / "plain.wav", tone(), RATE)
    sf.write(root / "renamed.dat", tone(), RATE, format="FLAC")  # a FLAC under a name no decoder declares
    (root / "notes.txt").write_text("not audio\n")
    (root / "take1.pcm").write_bytes((tone() * 20_000).astype("<i2").tobytes())
    (root / "take1.pcm.toml").write_text("sample_rate = 16000\n")
    return root


def test_the_decoders_extensions_cover_ogg_vorbis_wave64_and_3gp(formats):
    assert {"oga", "ogg", "opus", "w64", "3gp", "wav", "flac", "mp3", "m4a", "slk", "amr", "pcm"} <= formats.extensions
    assert not {"jpg", "png", "txt", "heic"} & formats.extensions


def test_scan_takes_decodable_formats_sniffs_unknown_names_and_lists_skip_reasons(archive, formats):
    scan = scan_paths([archive], formats=formats)
    names = [Path(f.path).name for f in scan.files]
    assert names == ["bell.oga", "click.w64", "plain.wav", "renamed.dat", "take1.pcm", "voice.3gp"]
    reasons = {Path(p).name: r for p, r in scan.skipped}
    assert reasons == {
        "notes.txt": "not a known audio format (extension .txt: no loaded decoder declares it and its first bytes "
        "are no known container)",
        "take1.pcm.toml": "sidecar of take1.pcm",
    }
    pcm = next(f for f in scan.files if f.path.endswith("take1.pcm"))
    assert pcm.sidecars == (str(archive / "take1.pcm.toml"),)


def test_sniffing_knows_the_common_audio_containers(archive):
    heads = {p.name: p.read_bytes()[:64] for p in archive.iterdir()}
    assert [sniff_container(heads[n]) for n in ("bell.oga", "click.w64", "voice.3gp", "plain.wav", "renamed.dat")] == [
        "ogg",
        "w64",
        "mp4",
        "wav",
        "flac",
    ]
    assert sniff_container(b"FORM\x00\x00\x00\x10AIFF") == "aiff"
    assert sniff_container(b"caff\x00\x01") == "caf"
    assert sniff_container(b"ID3\x04\x00") == "mp3"
    assert sniff_container(b"\xff\xfb\x90\x64") == "mpeg-audio"  # an MP3 frame header without ID3
    assert sniff_container(b"#!AMR\n") == "amr" and sniff_container(b"\x02#!SILK_V3") == "silk"
    assert sniff_container(b"not audio") is None and sniff_container(b"\xff\xff\xff\xff") is None


def test_the_pcm_decoder_declares_its_own_sidecars(archive):
    decoders = build_plugin_manager().decoders
    assert decoders["pcm"].sidecar_suffixes == (".toml", ".json")
    assert decoders["pcm"].sidecars(archive / "take1.pcm") == [archive / "take1.pcm.toml"]
    assert decoders["pcm"].sidecars(archive / "plain.wav") == []  # not its extension
    assert decoders["soundfile"].sidecars(archive / "take1.pcm") == []


def test_a_sidecar_is_hashed_with_its_file(archive, formats):
    pcm = archive / "take1.pcm"
    with_sidecar = content_hash(pcm, formats.sidecars(str(pcm)))
    assert with_sidecar != content_hash(pcm)
    (archive / "take1.pcm.toml").write_text("sample_rate = 8000\n")
    assert content_hash(pcm, formats.sidecars(str(pcm))) != with_sidecar


def test_decodable_formats_are_indexed_end_to_end(archive, open_index):
    sx = open_index()
    report = sx.index([archive], progress=False)
    assert (report.files_indexed, report.files_failed, report.errors) == (6, 0, [])
    decoders = dict(sx.store.cursor().execute("SELECT path, decoder FROM files").fetchall())
    assert {Path(p).name: d for p, d in decoders.items()} == {
        "bell.oga": "soundfile",
        "click.w64": "soundfile",
        "plain.wav": "soundfile",
        "renamed.dat": "soundfile",
        "take1.pcm": "pcm",
        "voice.3gp": "ffmpeg",
    }
    assert report.files_skipped == 2
    assert sorted(s.reason for s in report.skipped)[1] == "sidecar of take1.pcm"
