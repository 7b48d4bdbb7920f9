"""The web page in a real headless chromium (Playwright): search, play, classify, file view, re-index; screenshots."""

from __future__ import annotations

import os

import pytest
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings, build_index, write_archive
from conftest import REPO

SHOTS = REPO / "test-artifacts" / "web"
KEY = "web-key"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: `make browser-deps` installs it"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    from search.http.app import create_app

    root = tmp_path_factory.mktemp("web")
    archive = write_archive(root / "archive")
    settings = api_settings(root / "index", tiny_model_dir, api_key=KEY, allow_roots=[str(root / "more")])
    build_index(settings, [archive])
    write_archive(root / "more", [("新录音.wav", "noise", 11.0, 7)])
    with LiveServer(create_app(settings)) as server:
        server.more = root / "more"
        yield server


@pytest.fixture()
def page(live):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "requestfailed",
            lambda req: errors.append(f"request failed: {req.url}") if req.url.startswith(live.url) else None,
        )
        page.errors = errors
        yield page
        context.close()
        browser.close()


def test_search_play_classify_file_view_and_reindex(live, page):
    from playwright.sync_api import expect

    outside: list[str] = []
    page.on(
        "request", lambda req: outside.append(req.url) if not req.url.startswith((live.url, "blob:", "data:")) else None
    )
    page.goto(live.url + "/")
    expect(page.locator("#key-panel")).to_be_visible()  # no key yet: the page asks for it
    page.fill("#api-key", KEY)
    page.click("#key-save")
    expect(page.locator("#stats")).to_contain_text("4 files")
    page.screenshot(path=str(SHOTS / "0-start.png"))

    # search: several queries, one in Chinese; the English texts actually embedded are shown
    page.fill("#queries", "a pure tone\nwhite noise")
    page.click("#search-go")
    expect(page.locator(".query-block")).to_have_count(2)
    expect(page.locator(".query-block").first).to_contain_text("embedded: This is a sound of a pure tone.")
    hits = page.locator(".query-block").first.locator("li.hit")
    expect(hits).to_have_count(8)
    expect(page.locator("#search-results")).to_contain_text("轴承异响.wav")
    page.screenshot(path=str(SHOTS / "1-search.png"), full_page=True)

    # play the first hit: the player gets that window's WAV and plays it
    window_id = hits.first.get_attribute("data-window")
    with page.expect_response(lambda r: f"/windows/{window_id}/audio" in r.url) as audio:
        hits.first.locator("button.play").click()
    assert audio.value.status == 200 and audio.value.headers["content-type"] == "audio/wav"
    page.wait_for_function("() => { const p = document.querySelector('#player'); return p.duration > 0 && !p.paused; }")
    assert page.eval_on_selector("#player", "p => p.dataset.window") == window_id
    assert (
        5.9 <= page.eval_on_selector("#player", "p => p.duration") <= 10.01
    )  # one window: 10 s (6 s for the short file)
    expect(page.locator("#now-playing")).to_contain_text("▶")
    page.screenshot(path=str(SHOTS / "2-playing.png"))

    # a Chinese query: typed, accepted, and the English texts actually embedded are shown
    page.fill("#queries", "轴承异响")
    page.click("#search-go")
    expect(page.locator(".query-block h3")).to_have_text(["轴承异响"])
    expect(page.locator(".query-block .texts").first).to_contain_text("embedded: This is a sound of")
    expect(page.locator("#key-panel")).to_be_hidden()

    # classification: grouped by file, sortable
    page.click("nav button[data-tab=classify]")
    page.fill("#labels", "tone, noise")
    page.click("#classify-go")
    expect(page.locator("#classify-table tr.file-row")).to_have_count(4)
    expect(page.locator("#classify-table tr.window-row")).to_have_count(8)
    expect(page.locator("#classify-head")).to_contain_text("This is a sound of tone.")
    page.click("th[data-sort=path]")
    paths = page.locator("tr.file-row button.open-file").all_inner_texts()
    assert paths == sorted(paths)
    page.click("th[data-sort=path]")
    assert page.locator("tr.file-row button.open-file").all_inner_texts() == sorted(paths, reverse=True)
    page.screenshot(path=str(SHOTS / "3-classify.png"), full_page=True)

    # file view: a strip of windows coloured by score; a click plays that window
    page.locator("tr.file-row button.open-file", has_text="tone-a.wav").click()
    expect(page.locator("#file-strip .cell")).to_have_count(3)
    colours = page.locator("#file-strip .cell").evaluate_all("cells => cells.map(c => c.style.background)")
    assert all(c.startswith("rgb") and c != "rgb(223, 227, 232)" for c in colours)  # scored (grey = no score)
    import httpx

    file_id = next(
        f["id"]
        for f in httpx.get(f"{live.url}/files", headers={"X-API-Key": KEY}).json()["files"]
        if f["path"].endswith("tone-a.wav")
    )
    scored = httpx.get(
        f"{live.url}/files/{file_id}", params={"labels": "tone, noise"}, headers={"X-API-Key": KEY}
    ).json()["windows"]
    titles = page.locator("#file-strip .cell").evaluate_all("cells => cells.map(c => c.title)")
    assert [t.split("score ")[1] for t in titles] == [f"{w['score']:.4f}" for w in scored]
    cell = page.locator("#file-strip .cell").nth(2)
    with page.expect_response(lambda r: f"/windows/{cell.get_attribute('data-window')}/audio" in r.url) as audio:
        cell.click()
    assert audio.value.status == 200
    page.screenshot(path=str(SHOTS / "4-file.png"), full_page=True)

    # re-index panel: a job with a progress bar that reaches 100 %
    page.click("nav button[data-tab=jobs]")
    page.fill("#job-paths", str(live.more))
    page.click("#job-go")
    expect(page.locator("#job-text")).to_contain_text("completed", timeout=90_000)
    assert page.eval_on_selector("#job-bar", "b => b.style.width") == "100%"
    expect(page.locator("#stats")).to_contain_text("5 files")
    page.screenshot(path=str(SHOTS / "5-reindex.png"), full_page=True)

    assert page.errors == []
    assert outside == []  # nothing from a CDN or anywhere else
