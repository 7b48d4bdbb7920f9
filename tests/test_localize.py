"""Where inside a window a sound is: sub-windows scored against the query, with an encoder whose vectors are
a known acoustic feature (a tone burst placed at a known offset must be found there)."""

from __future__ import annotations

import numpy as np
import pytest
from band_encoder import BandEncoder, burst_in_noise


@pytest.fixture(scope="module")
def band_encoder(tiny_encoder):
    return BandEncoder(tiny_encoder)


@pytest.mark.parametrize("burst_at", [0.4, 3.3, 6.3, 8.9])
def test_a_tone_burst_is_found_where_it_was_placed(band_encoder, burst_at):
    from search.core.localize import localize_audio

    audio = burst_in_noise(10.0, burst_at, 0.5, seed=int(burst_at * 10))
    q = band_encoder.embed_texts(["This is a sound of a tone."])[0]
    found = localize_audio(audio, q, band_encoder, offset_s=20.0, sub_s=1.0, hop_s=0.25, query="a tone")
    centre = (found.start + found.end) / 2
    assert abs(centre - (20.0 + burst_at + 0.25)) <= 0.5
    assert found.start <= 20.0 + burst_at + 0.5 and found.end >= 20.0 + burst_at  # the answer overlaps the burst
    assert found.end - found.start == pytest.approx(1.0)
    assert (found.window_start, found.window_end) == (20.0, 30.0)
    assert len(found.steps) == 37 and found.score == max(s.score for s in found.steps)
    starts = [s.start for s in found.steps]
    assert starts == sorted(starts) and np.allclose(np.diff(starts), 0.25)  # resolution: a quarter second


def test_sub_windows_cover_the_window_and_end_aligned():
    from search.core.localize import sub_window_spans

    assert sub_window_spans(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert sub_window_spans(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert sub_window_spans(3, 4, 3) == [(0, 3)]
    assert sub_window_spans(0, 4, 3) == []


def test_a_sub_window_is_prepared_exactly_as_clap_prepares_a_short_clip(tiny_model_dir, tiny_encoder):
    """A 1 s clip through the localizer's path equals the transformers feature extractor + model on that clip alone."""
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    from search.core.localize import localize_audio

    clip = burst_in_noise(1.0, 0.2, 0.5, seed=3)
    q = np.zeros(tiny_encoder.embedding_dim, np.float32)
    q[0] = 1.0
    found = localize_audio(clip, q, tiny_encoder, sub_s=1.0, hop_s=0.5)
    extractor = ClapFeatureExtractor.from_pretrained(str(tiny_model_dir))
    model = ClapModel.from_pretrained(str(tiny_model_dir)).eval()
    inputs = extractor(clip, sampling_rate=48_000, return_tensors="pt")  # one short clip: repeatpad, fusion views
    with torch.no_grad():
        pooled = model.audio_model(input_features=inputs["input_features"], is_longer=inputs["is_longer"]).pooler_output
        v = torch.nn.functional.normalize(model.audio_projection(pooled), dim=-1)[0].numpy()
    assert len(found.steps) == 1
    assert found.score == pytest.approx(float(v[0]), abs=1e-4)


def test_bad_sub_window_options_name_the_option(band_encoder):
    from indexer.errors import BadInput
    from search.core.localize import localize_audio

    q = band_encoder.embed_texts(["tone"])[0]
    with pytest.raises(BadInput, match="sub_s"):
        localize_audio(np.zeros(48_000, np.float32), q, band_encoder, sub_s=20.0)
    with pytest.raises(BadInput, match="hop_s"):
        localize_audio(np.zeros(48_000, np.float32), q, band_encoder, sub_s=1.0, hop_s=2.0)


def test_search_localizes_in_rank_order_within_its_budget(tmp_path, open_index, write_sound):
    """Hits are localized best first across the queries, each window embedded once, up to the per-search budget."""
    from search.core.localize import SEARCH_MAX_SUB_WINDOWS, localize_hits, localize_window

    for i, kind in enumerate(("tone", "noise", "chirp")):
        write_sound(tmp_path / "archive" / f"{kind}.wav", kind, 10.0, seed=i)
    sx = open_index()
    sx.index([str(tmp_path / "archive")], progress=False)
    results = sx.search(["a tone", "a tone"], k=3).results
    embedded: list[int] = []
    embed = sx.encoder.embed_windows
    sx.encoder.embed_windows = lambda clips: embedded.append(len(clips)) or embed(clips)
    try:
        localize_hits(sx, results, hop_s=0.5)  # 19 sub-windows per 10 s window: the budget holds two windows
    finally:
        del sx.encoder.embed_windows
    assert 2 * 19 <= SEARCH_MAX_SUB_WINDOWS < 3 * 19 and sum(embedded) == 2 * 19  # shared by both queries
    for result in results:
        assert [hit.localized is not None for hit in result.hits] == [True, True, False]
        assert [hit.localized.window_id for hit in result.hits[:2]] == [hit.window_id for hit in result.hits[:2]]
    best = results[0].hits[0]
    alone = localize_window(sx, best.window_id, "a tone", hop_s=0.5)
    assert (best.localized.start, best.localized.end) == (alone.start, alone.end)
    assert [s.score for s in best.localized.steps] == pytest.approx([s.score for s in alone.steps], abs=1e-5)
