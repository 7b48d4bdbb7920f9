"""The acoustic tagger's flags on synthetic windows, and a tag used as a filter in search and classify."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from plugins.manager import build_plugin_manager
from search.filters import Filters

SR = 48_000


def sine(amplitude: float, seconds: float = 1.0, offset: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (offset + amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_acoustic_flags_on_synthetic_windows():
    tag = build_plugin_manager().taggers["acoustic"].tag
    rng = np.random.default_rng(0)
    windows = np.stack(
        [
            np.zeros(SR, np.float32),  # digital silence
            (1e-4 * rng.standard_normal(SR)).astype(np.float32),  # -80 dBFS hiss: silent
            sine(0.5),  # a clean tone
            np.clip(sine(2.0), -1.0, 1.0),  # the same tone driven into clipping
            sine(0.1, offset=0.2),  # a tone riding on a DC offset
        ]
    )
    tags = tag(windows, SR)
    assert tags["silence"].tolist() == [True, True, False, False, False]
    assert tags["clipping"].tolist() == [False, False, False, True, False]
    assert tags["dc"].tolist() == [False, False, False, False, True]
    np.testing.assert_allclose(tags["rms_db"][2], 20 * math.log10(0.5 / math.sqrt(2)), atol=0.01)  # -9.03 dBFS
    np.testing.assert_allclose(tags["rms_db"][1], -80.0, atol=0.5)
    assert tags["rms_db"][0] == -200.0  # the floor, not -inf
    np.testing.assert_allclose(tags["peak"][2:], [0.5, 1.0, 0.3], atol=1e-4)
    np.testing.assert_allclose(tags["dc_offset"][[2, 4]], [0.0, 0.2], atol=1e-4)
    # a clipped share just under and just over 0.1 % of the samples
    barely = np.zeros((2, 10_000), np.float32)
    barely[0, :10], barely[1, :11] = 1.0, 1.0
    assert tag(barely, SR)["clipping"].tolist() == [False, True]


def test_a_tag_filters_search_and_classify(tmp_path, make_settings, tiny_encoder):
    from search.demo_audio import write_audio
    from search.sound_index import SoundIndex

    archive = tmp_path / "archive"
    write_audio(archive / "quiet.wav", np.zeros(3 * SR, np.float32), SR)
    write_audio(archive / "tone.wav", sine(0.5, 3.0), SR)
    write_audio(archive / "loud.wav", np.clip(sine(2.0, 3.0), -1.0, 1.0), SR)
    settings = make_settings(tmp_path / "index")
    with SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder, create=True) as sx:
        assert sx.index([str(archive)]).windows == 3
        stored = {
            Path(p).name: json.loads(t)
            for p, t in sx.store.cursor()
            .execute("SELECT f.path, CAST(w.tags AS VARCHAR) FROM windows w JOIN files f ON f.id = w.file_id")
            .fetchall()
        }
        assert {name: (t["silence"], t["clipping"]) for name, t in stored.items()} == {
            "quiet.wav": (True, False),
            "tone.wav": (False, False),
            "loud.wav": (False, True),
        }
        assert abs(stored["tone.wav"]["rms_db"] - 20 * math.log10(0.5 / math.sqrt(2))) < 0.01

        def searched(tags):
            hits = sx.search(["a sound"], k=10, filters=Filters(tags=tags)).results[0].hits
            return sorted(Path(h.path).name for h in hits)

        assert searched({"silence": True}) == ["quiet.wav"]
        assert searched({"silence": False}) == ["loud.wav", "tone.wav"]
        assert searched({"silence": False, "clipping": True}) == ["loud.wav"]
        rows = sx.classify("tone, noise", filters=Filters(tags={"clipping": True})).rows
        assert [Path(r.path).name for r in rows] == ["loud.wav"]
        rows = sx.classify("tone, noise", filters=Filters(tags={"silence": False}), by="file").rows
        assert sorted(Path(r.path).name for r in rows) == ["loud.wav", "tone.wav"]
