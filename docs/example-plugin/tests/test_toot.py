"""Tests of the soundsift-toot plugin, as its author writes them: load it the way soundsift does, then use it."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundsift_toot

from soundsift import LabelTexts, PolicyOptionError, build_plugin_manager


@pytest.fixture(scope="module")
def host():
    """soundsift's plugin manager with the built-ins and this plugin; nothing may fail to load."""
    host = build_plugin_manager(extra=[soundsift_toot])
    assert host.failures == []
    return host


def test_a_toot_file_decodes_to_its_samples(host, tmp_path):
    samples = np.array([[0, 16384], [-16384, 32767], [100, -100]], dtype="<i2")
    path = tmp_path / "two-channels.toot"
    path.write_bytes(struct.pack("<4sIHI", b"TOOT", 8000, 2, len(samples)) + samples.tobytes())
    source = host.decoders["toot"].open(path, {})
    try:
        decoded = np.concatenate(list(source.blocks()))
    finally:
        source.close()
    assert (source.sample_rate, source.channels, source.duration_s) == (8000, 2, 3 / 8000)
    np.testing.assert_array_equal(decoded, samples.astype(np.float32) / 32768.0)


def test_a_truncated_header_is_a_decode_error(host, tmp_path):
    from soundsift import DecodeError

    path = tmp_path / "short.toot"
    path.write_bytes(b"TOOT\x40")
    with pytest.raises(DecodeError, match="TOOT header is truncated"):
        host.decoders["toot"].open(path, {})


def test_tempered_flattens_the_softmax_and_checks_its_options(host):
    labels = [LabelTexts("a", ("a",)), LabelTexts("b", ("b",))]
    logits = np.array([[2.0, 0.0]], np.float32)
    tempered = host.policies["tempered"]
    result = tempered.score(
        logits, np.full_like(logits, -np.inf), labels, None, {"temperature": 2.0, "threshold": None}
    )
    np.testing.assert_allclose(result.scores[0], [np.e / (np.e + 1), 1 / (np.e + 1)], rtol=1e-6)  # softmax([1, 0])
    assert result.fired.tolist() == [[True, False]]
    with pytest.raises(PolicyOptionError, match="temperature must be a positive number"):
        tempered.score(logits, logits, labels, None, {"temperature": -1})
    with pytest.raises(PolicyOptionError, match="no option 'temprature'"):  # soundsift checks names against option_help
        tempered.score(logits, logits, labels, None, {"temprature": 4})
