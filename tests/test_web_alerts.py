"""The page's Alerts tab in a real headless chromium: the watches with their delivery state, the alerts, a link."""

from __future__ import annotations

import os

import pytest
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings, build_index, write_archive

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: `make browser-deps` installs it"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    from indexer.watch_store import WatchStore
    from search.core.watches import WatchSpec, add_watch
    from search.http.app import create_app
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("web-alerts")
    archive = write_archive(root / "archive", [("a.wav", "tone", 6.0, 1)])
    settings = api_settings(root / "index", tiny_model_dir)
    build_index(settings, [archive])
    with SoundIndex.open(settings.index, settings=settings) as sx:
        add_watch(sx, WatchSpec(name="every", query="a tone", min_score=-1.0, ndjson=str(root / "alerts.ndjson")))
        write_archive(archive, [("b.wav", "noise", 25.0, 2), ("c.wav", "bell", 12.0, 3)])
        sx.index([str(archive)], progress=False)
        alerts = WatchStore(sx.store).alerts()
    with LiveServer(create_app(settings)) as server:
        server.alerts = alerts
        yield server


def test_alerts_tab_lists_watches_and_alerts_and_opens_a_link(live):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live.url)
        page.click("nav button[data-tab=alerts]")
        expect(page.locator("#tab-alerts")).to_be_visible()
        expect(page.locator("#alert-list tbody tr")).to_have_count(len(live.alerts))
        row = page.locator("#watch-list tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("every")
        expect(row).to_contain_text(f"{len(live.alerts)} delivered")  # the server delivered the NDJSON outbox
        page.select_option("#alert-watch", "every")
        expect(page.locator("#alert-list tbody tr")).to_have_count(len(live.alerts))
        first = live.alerts[0]
        page.goto(f"{live.url}/#file={first.file_id}&window={first.window_id}&t={first.start:g}")
        expect(page.locator("#tab-file")).to_be_visible()
        expect(page.locator("#file-windows")).to_be_visible()
        browser.close()
    assert errors == []
