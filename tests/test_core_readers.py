"""Several readers share an index; a writer owns it alone and is named to anyone who finds it busy."""

from __future__ import annotations

import pytest

from indexer import ownership
from indexer.errors import IndexLocked
from search.sound_index import SoundIndex


def test_readers_share_writers_exclude(tmp_path, write_sound, make_settings, tiny_encoder, monkeypatch):
    write_sound(tmp_path / "archive" / "a.wav", "tone", 12.0)
    settings = make_settings(tmp_path / "index")
    with SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder) as writer:
        writer.index([tmp_path / "archive"], progress=False)
        with pytest.raises(IndexLocked) as busy:
            SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder, read_only=True)
        assert "is in use by pid" in str(busy.value)

    first = SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder, read_only=True)
    second = SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder, read_only=True)
    try:
        hits_a = first.search(["a pure tone"], k=5).results[0].hits
        hits_b = second.search(["a pure tone"], k=5).results[0].hits
        assert [h.window_id for h in hits_a] == [h.window_id for h in hits_b] and len(hits_a) == 2
        assert len(second.classify("tone, noise").rows) == 2
        monkeypatch.setattr(ownership, "READERS_WAIT_S", 0.3)
        with pytest.raises(IndexLocked) as busy:
            SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder)
        assert "being read by other soundsift commands" in str(busy.value)
        assert not list(settings.index.glob(".vectors-*tmp*"))  # readers never write into the index
    finally:
        first.close()
        second.close()
    with SoundIndex.open(settings.index, settings=settings, encoder=tiny_encoder) as writer_again:
        assert writer_again.stats()["windows"] == 2


def test_jobs_spell_paths_as_the_index_does(tmp_path, write_sound, make_settings, tiny_encoder, monkeypatch):
    from search.http.jobs import spelled_as_indexed

    monkeypatch.chdir(tmp_path)
    write_sound(tmp_path / "archive" / "a.wav", "tone", 3.0)
    settings = make_settings(tmp_path / "index")
    with SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder) as sx:
        sx.index(["archive"], progress=False)
        assert spelled_as_indexed(sx.store, [str(tmp_path / "archive"), str(tmp_path / "other")]) == [
            "archive",
            str(tmp_path / "other"),
        ]
        report = sx.index(spelled_as_indexed(sx.store, [str(tmp_path / "archive")]), progress=False)
        assert report.files_unchanged == 1 and report.files_indexed == 0


def test_swagger_ui_loads_nothing_from_a_cdn(tmp_path, write_sound, make_settings, tiny_encoder):
    import re

    from fastapi.testclient import TestClient

    from search.http.app import create_app

    settings = make_settings(tmp_path / "index")
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder, role="serve")
    with TestClient(create_app(settings, sound_index=sx)) as client:
        page = client.get("/docs").text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page)
        assert assets and all(a.startswith("/") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
