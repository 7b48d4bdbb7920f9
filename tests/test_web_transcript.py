"""The file view's transcript in a real headless chromium: segments under the waveform, a click plays from there."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings, build_index

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: `make browser-deps` installs it"),
]


def test_transcript_segments_play_from_their_start(tmp_path, tiny_model_dir, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    from plugins.manager import reset_default_plugins
    from search.http.app import create_app

    monkeypatch.setenv("SOUNDSIFT_EXTRA_PLUGINS", "tests.plugins.known_words")
    reset_default_plugins()
    try:
        archive = tmp_path / "archive"
        archive.mkdir()
        t = np.arange(14 * 48_000) / 48_000
        sf.write(str(archive / "call.wav"), (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 48_000)
        settings = api_settings(tmp_path / "index", tiny_model_dir)
        build_index(settings, [archive])
        with LiveServer(create_app(settings)) as server:
            server.app.state.sound_index.transcribe("known-words")  # windows 0-10 and 4-14, words from 10% in
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(server.url + "/")
                page.fill("#queries", "a tone")
                page.click("#search-go")
                page.locator("li.hit button.path").first.click()
                segments = page.locator("#file-transcript button.segment")
                expect(segments).to_have_count(2)
                expect(segments.nth(1)).to_contain_text("客户投诉 说 要求 退款")
                expect(segments.nth(1)).to_contain_text("0:05.00")
                window = segments.nth(1).get_attribute("data-window")
                with page.expect_response(lambda r: f"/windows/{window}/audio" in r.url) as audio:
                    segments.nth(1).click()
                assert audio.value.status == 200
                page.wait_for_function("() => document.querySelector('#player').dataset.from === '1'")
                assert page.eval_on_selector("#player", "p => p.dataset.window") == window
                expect(page.locator("#now-playing")).to_contain_text("0:05.00")
                assert errors == []
                browser.close()
    finally:
        reset_default_plugins()
