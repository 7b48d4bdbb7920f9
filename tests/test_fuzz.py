"""Mutated files of every format through a real index run: each is indexed or failed with a plain reason,
never a crash of the run, a hang or a leaked Python error. A fast subset here; the full corpus is marked ``fuzz``."""

from __future__ import annotations

import pytest
from fuzz_corpus import FORMATS, format_table, index_corpus, unclear, write_corpus

from indexer.reasons import failure_reason, plain_message, stream_failure_reason

# What the decoders really said about fuzzed files before they were put in plain words.
LEAKS = [
    (
        "clip.m4a",
        b"\x00\x00\x00\x20ftypM4A ",
        [("ffmpeg", "Operation not permitted"), ("soundfile", "Format not recognised.")],
        "corrupt or truncated MP4: ffmpeg: a damaged container FFmpeg refuses to read; soundfile: format not recognised",
    ),
    (
        "clip.wav",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        [
            ("soundfile", "File contains data in an unimplemented format."),
            ("ffmpeg", "AttributeError: 'NoneType' object has no attribute 'sample_rate'"),
        ],
        "unsupported WAV encoding: soundfile: an encoding it does not implement; ffmpeg: an internal error of the decoder",
    ),
    (
        "clip.flac",
        b"fLaC\x00\x00\x00\x22",
        [("soundfile", "Internal psf_fseek() failed.")],
        "corrupt or truncated FLAC: soundfile: the data ends before its header says it does",
    ),
    (
        "clip.m4a",
        b"\x00\x00\x00\x20ftypisom",
        [("ffmpeg", "Not yet implemented in FFmpeg, patches welcome")],
        "unsupported MP4 encoding: ffmpeg: a feature FFmpeg does not implement",
    ),
    (
        "notes.mp3",
        b"hello, this is text",
        [("ffmpeg", "Invalid data found when processing input"), ("soundfile", "Format not recognised.")],
        "not an audio file, or too damaged to read as MP3: ffmpeg: invalid data; soundfile: format not recognised",
    ),
    (
        "x.bin",
        b"\x00\x01",
        [("ffmpeg", "Invalid data found when processing input")],
        "not an audio file (no decoder recognises it): ffmpeg: invalid data",
    ),
    (
        "v.slk",
        b"\x02#!SILK_V3",
        [("slk", "SILK decoder: DEC_PAYLOAD_ERROR")],
        "corrupt or truncated SILK: slk: a packet that does not decode",
    ),
    (
        "v.slk",
        b"\x02#!SILK_V3",
        [("slk", "SILK decoder: INVALID")],
        "corrupt or truncated SILK: slk: a packet that does not decode",
    ),
    (
        "h.wav",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        [("soundfile", "Internal error : SF_INFO struct incomplete.")],
        "corrupt or truncated WAV: soundfile: a header with missing or impossible values",
    ),
    (
        "v.amr",
        b"#!AMR\n",
        [
            ("amr", "unsupported AMR mode 14 in frame 2 (a reserved frame type: damaged data)"),
            ("ffmpeg", "Invalid data found when processing input"),
        ],
        "unsupported AMR encoding: amr: unsupported AMR mode 14 in frame 2 (a reserved frame type: damaged data); ffmpeg: invalid data",
    ),
    (
        "t.pcm",
        b"\x00\x00",
        [
            ("pcm", "sidecar t.pcm.toml: sample rate 0 Hz outside 4000..768000 Hz"),
            ("soundfile", "Format not recognised."),
            ("ffmpeg", "Invalid data found when processing input"),
        ],
        "sidecar t.pcm.toml: sample rate 0 Hz outside 4000..768000 Hz",
    ),
]


@pytest.mark.parametrize("name,head,said,expected", LEAKS)
def test_decoder_errors_become_plain_reasons(name, head, said, expected):
    reason = failure_reason(name, head, said)
    assert reason == expected
    assert not unclear(reason)


def test_internal_errors_never_become_the_reason():
    for message in (
        "AttributeError: 'NoneType' object has no attribute 'sample_rate'",
        "TypeError: 'int' object is not iterable",
        "OverflowError: cannot convert float infinity to integer",
        "KeyError: 'channels'",
    ):
        assert plain_message(message) == ("internal", "an internal error of the decoder")
        reason = stream_failure_reason("a.ogg", b"OggS", "ffmpeg", message)
        assert (
            reason == "could not be decoded (the decoders failed internally): ffmpeg: an internal error of the decoder"
        )
    assert (
        stream_failure_reason("a.flac", b"fLaC", "soundfile", "Error : flac decoder lost sync.")
        == "corrupt or truncated FLAC: soundfile: FLAC frames out of sync (damaged or cut data)"
    )
    assert (
        stream_failure_reason("a.wav", b"RIFF", "soundfile", "non-finite samples (NaN or Inf) in the audio")
        == "non-finite samples (NaN or Inf) in the audio"
    )


def _check(table: dict[str, dict], per_format: int, both: bool = True) -> None:
    for fmt, t in table.items():
        assert t["tried"] == per_format, (fmt, t)
        assert t["indexed"] + t["failed"] == per_format, (fmt, t["examples"][:10])
        assert t["unclear"] == t["crash"] == t["hang"] == t["missing"] == 0, (fmt, t["examples"][:10])
        assert t["failed"] >= 1 and (t["indexed"] >= 1 or not both), (
            fmt,
            t,
        )  # the corpus holds both, or it tests little


# Indexing one small damaged file (decode in a worker, embed what decodes) costs well under a second on a loaded
# 2-core machine; the budget per file is a few times that, plus the start of the run (the model, the workers).
PER_FILE_BUDGET_S = 2.0
RUN_START_S = 120.0
SUBSET_PER_FORMAT = 6
# 4 of each of the 12 mutation kinds per format (seed % 12 picks the kind): every kind at several seeds in every
# format, at a cost the suite can carry on two cores. docs/reliability.md's figures come from
# `python tests/fuzz_corpus.py --per-format 300`, a run of its own.
CORPUS_PER_FORMAT = 48


def _budget_s(per_format: int) -> float:
    return RUN_START_S + PER_FILE_BUDGET_S * per_format * len(FORMATS)


@pytest.mark.timeout(_budget_s(SUBSET_PER_FORMAT))
def test_fuzz_subset_every_format(tmp_path, tiny_model_dir):
    """Six mutations per format (zero-length, truncation, bit flips, header fields, garbage) in one run."""
    write_corpus(tmp_path / "corpus", FORMATS, SUBSET_PER_FORMAT, start=0)
    table = index_corpus(tmp_path / "corpus", tmp_path / "index", str(tiny_model_dir), workers=2, timeout_s=60)
    print(format_table(table))
    _check(table, SUBSET_PER_FORMAT, both=False)


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.timeout(_budget_s(CORPUS_PER_FORMAT))
def test_fuzz_corpus_every_format(tmp_path, tiny_model_dir):
    """The corpus: every mutation kind four times per format, all formats in one index run."""
    write_corpus(tmp_path / "corpus", FORMATS, CORPUS_PER_FORMAT)
    table = index_corpus(tmp_path / "corpus", tmp_path / "index", str(tiny_model_dir), workers=2, timeout_s=60)
    print(format_table(table))
    _check(table, CORPUS_PER_FORMAT)
