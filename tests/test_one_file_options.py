"""classify-file's options travel as one object: the same result from ClassifyFileOptions as from keywords, the
local and the remote file classifier share one call, and the per-process model cache loads a model once even
when threads ask for it together."""

from __future__ import annotations

import threading

import search.sound_index as sound_index
from search.core.one_file import classify_file
from search.core.requests import ClassifyFileOptions


def test_options_object_and_keywords_give_the_same_classification(tmp_path, write_sound, make_settings, tiny_encoder):
    path = write_sound(tmp_path / "a.wav", "bell", 14.0)
    settings = make_settings(tmp_path / "index")
    by_keywords = classify_file(
        path, "bell, tone", tiny_encoder, settings, threshold=0.2, start=1.0, duration=12.0, envelope_points=50
    )
    options = ClassifyFileOptions(threshold=0.2, start=1.0, duration=12.0, envelope_points=50)
    by_options = classify_file(path, "bell, tone", tiny_encoder, settings, options=options)
    assert by_options.model_dump() == by_keywords.model_dump()
    assert by_options.start == 1.0 and by_options.duration == 12.0 and len(by_options.envelope.min) == 50
    local = sound_index.LocalFiles(settings)
    local._encoder = tiny_encoder  # the model the settings name, already loaded
    assert local.classify_file(path, "bell, tone", options).model_dump() == by_options.model_dump()


def test_threads_asking_for_one_model_load_it_once(tmp_path, write_sound, make_settings, monkeypatch):
    path = write_sound(tmp_path / "a.wav", "tone", 3.0)
    settings = make_settings(tmp_path / "index")
    loads: list[int] = []
    real = sound_index.load_encoder

    def counted(s, *args, **kwargs):
        loads.append(1)
        return real(s, *args, **kwargs)

    monkeypatch.setattr(sound_index, "load_encoder", counted)
    monkeypatch.setattr(sound_index, "_ENCODERS", {})
    results: list = []
    threads = [
        threading.Thread(
            target=lambda: results.append(sound_index.classify_audio(path, "tone, noise", settings=settings))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(results) == 3 and results[0] == results[1] == results[2]
