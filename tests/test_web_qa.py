"""The QA workflow in a real headless chromium: upload (choose and drop, every option, progress), results,
warnings, the waveform/mel viewer, play from a point, CSV/JSON downloads, localize, the classify matrix,
and a layout check at 1400 px and 390 px (no main control overlaps another or leaves the screen)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings
from band_encoder import BandEncoder, burst_in_noise
from conftest import REPO

SHOTS = REPO / "test-artifacts" / "web"
KEY = "qa-key"
BURST_AT = 13.3

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: `make browser-deps` installs it"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir, tiny_encoder):
    from search.http.app import create_app
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("webqa")
    archive = root / "archive"
    archive.mkdir()
    sf.write(archive / "burst.wav", burst_in_noise(20.0, BURST_AT, 0.5, seed=1), 48_000, subtype="PCM_16")
    sf.write(archive / "noise.flac", burst_in_noise(12.0, 0.0, 0.0, seed=2), 48_000)
    sf.write(archive / "tone.wav", burst_in_noise(10.0, 0.0, 10.0, seed=3), 48_000, subtype="PCM_16")
    take = burst_in_noise(30.0, 17.2, 4.0, seed=5)
    take[: 48_000 * 11] = 0.0
    sf.write(root / "take.wav", take, 48_000, subtype="PCM_16")
    pcm = (burst_in_noise(4.0, 1.0, 2.0, rate=8000, seed=7) * 32767).astype("<i2")
    (root / "call.pcm").write_bytes(np.stack([pcm, pcm], axis=1).tobytes())
    settings = api_settings(root / "index", tiny_model_dir, api_key=KEY)
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=BandEncoder(tiny_encoder))
    sx.index([archive], progress=False)
    with LiveServer(create_app(settings, sound_index=sx)) as server:
        server.root = root
        yield server


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _page(browser, live, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(live.url + "/")
    page.fill("#api-key", KEY)
    page.click("#key-save")
    from playwright.sync_api import expect

    expect(page.locator("#stats")).to_contain_text("3 files")
    return page


def _no_overlaps(page, selectors: list[str], width: int) -> None:
    """Every visible control lies inside the viewport and no two of them overlap."""
    boxes = {}
    for sel in selectors:
        loc = page.locator(sel)
        for i in range(loc.count()):
            if loc.nth(i).is_visible():
                boxes[f"{sel}#{i}"] = loc.nth(i).bounding_box()
    assert len(boxes) >= len(selectors) // 2, boxes
    for name, b in boxes.items():
        assert b["x"] >= -1 and b["x"] + b["width"] <= width + 1, f"{name} leaves the screen at {width} px: {b}"
    names = list(boxes)
    for i, a in enumerate(names):
        for c in names[i + 1 :]:
            p, q = boxes[a], boxes[c]
            overlap = (
                min(p["x"] + p["width"], q["x"] + q["width"]) - max(p["x"], q["x"]) > 1
                and min(p["y"] + p["height"], q["y"] + q["height"]) - max(p["y"], q["y"]) > 1
            )
            assert not overlap, f"{a} overlaps {c} at {width} px: {p} {q}"


UPLOAD_CONTROLS = [
    "nav button",
    "#drop-zone",
    "#upload-labels",
    "#upload-policy",
    "#upload-threshold",
    "#upload-options",
    "#upload-template",
    "#upload-start",
    "#upload-duration",
    "#upload-go",
    "#upload-csv",
    "#upload-json",
    "#upload-viewer .viewer-label",
    "#upload-viewer canvas",
    "#upload-viewer img.mel",
]
CLASSIFY_CONTROLS = [
    "nav button",
    "#labels",
    "#policy",
    "#threshold",
    "#classify-glob",
    "#classify-options",
    "#classify-template",
    "#classify-go",
]


def _upload(page, live, **fields):
    page.click("nav button[data-tab=upload]")
    page.set_input_files("#upload-file", str(live.root / "take.wav"))
    page.fill("#upload-labels", fields.get("labels", "tone, 噪音 noise"))
    page.select_option("#upload-policy", fields.get("policy", "margin"))
    page.fill("#upload-options", fields.get("options", '{"min_margin": 0}'))
    page.fill("#upload-threshold", "0")
    page.fill("#upload-template", fields.get("template", "a {} sound"))
    page.fill("#upload-start", "1")
    page.fill("#upload-duration", "25")
    page.click("#upload-go")


def test_upload_options_results_viewer_downloads(live, browser):
    from playwright.sync_api import expect

    page = _page(browser, live, 1400)
    # every control set; the upload goes by XHR with progress, then the results
    with page.expect_response(lambda r: r.url.endswith("/classify-file"), timeout=60_000) as sent:
        _upload(page, live)
    answer = sent.value.json()  # what the server made of the form: every option arrived
    assert (answer["policy"], answer["start"], answer["duration"]) == ("margin", 1.0, 25.0)
    assert answer["texts"][0] == ["a tone sound"] and all("confidence" in w["extras"] for w in answer["windows"])
    assert answer["envelope"]["points"] == 1200 and answer["envelope"]["mel_width"] > 0
    expect(page.locator("#upload-result")).to_be_visible(timeout=60_000)
    assert page.eval_on_selector("#upload-bar", "b => b.style.width") == "100%"
    expect(page.locator("#upload-status")).to_have_text("done")
    expect(page.locator("#upload-info .file-info")).to_contain_text(
        "duration 30.00 s · sample rate 48000 Hz · 1 channel · codec wav/pcm_16"
    )
    expect(page.locator("#upload-info")).to_contain_text("classified 0:01.00–0:26.00")
    expect(page.locator("#upload-warnings li.warning")).to_have_text(
        ["silence: 1 of 3 windows are silent (below -60 dBFS): 0:01.0–0:11.0"]
    )
    expect(page.locator("#upload-info .texts")).to_contain_text("a tone sound")
    expect(page.locator("#upload-info .file-verdict")).to_contain_text(
        "file: tone · peak window 0:16.00–0:26.00 · confidence"
    )
    # the table: the file row, then the windows by score, with confidence and fired labels
    rows = page.locator("#upload-table tbody tr")
    expect(rows).to_have_count(4)
    heads = page.locator("#upload-table thead th").all_inner_texts()
    assert heads == ["row", "time", "label", "score", "confidence", "fired", "tone", "噪音 noise"]
    cells = [r.locator("td").all_inner_texts() for r in rows.all()]
    assert cells[0][0] == "file" and [c[0] for c in cells[1:]] == ["window"] * 3
    scores = [float(c[3]) for c in cells[1:]]
    assert scores == sorted(scores, reverse=True)
    assert all(c[4] != "–" for c in cells) and cells[1][5] == "tone"
    # the viewer: waveform, mel image, best window of the chosen label, click to play from a point
    expect(page.locator("#upload-viewer img.mel")).to_be_visible()
    assert page.eval_on_selector("#upload-viewer canvas", "c => c.dataset.best") == "16-26"
    page.select_option("#upload-viewer .viewer-label", "噪音 noise")
    assert page.eval_on_selector("#upload-viewer canvas", "c => c.dataset.best") == "1-11"
    page.select_option("#upload-viewer .viewer-label", "tone")
    canvas = page.locator("#upload-viewer canvas").bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.7, canvas["y"] + 20)  # 1 + 0.7 * 25 = 18.5 s
    page.wait_for_function(
        # dataset.from is written once playback starts: wait for it too, or a busy machine reads it unset
        "() => { const p = document.querySelector('#player');"
        " return p.src.startsWith('blob:') && !p.paused && p.dataset.from !== undefined; }"
    )
    assert abs(float(page.eval_on_selector("#player", "p => p.dataset.from")) - 18.5) < 0.2
    page.screenshot(path=str(SHOTS / "qa-1-upload-1400.png"), full_page=True)
    _no_overlaps(page, UPLOAD_CONTROLS, 1400)
    # downloads: CSV and JSON of what is on screen
    with page.expect_download() as got:
        page.click("#upload-csv")
    assert got.value.suggested_filename == "take-classified.csv"
    table = list(csv.DictReader(io.StringIO(open(got.value.path(), encoding="utf-8").read())))
    assert [r["row"] for r in table] == ["file", "window", "window", "window"]
    assert set(table[0]) >= {"path", "start", "end", "label", "tone", "噪音 noise", "confidence", "fired"}
    assert table[0]["path"] == "take.wav" and table[3]["fired"] == "tone"
    with page.expect_download() as got:
        page.click("#upload-json")
    doc = json.loads(open(got.value.path(), encoding="utf-8").read())
    assert doc["policy"] == "margin" and len(doc["windows"]) == 3 and doc["file"]["peak_window"] == 2
    assert page.errors == []


def test_drop_raw_pcm_and_errors_in_words(live, browser):
    from playwright.sync_api import expect

    page = _page(browser, live, 1400)
    page.click("nav button[data-tab=upload]")
    data = base64.b64encode((live.root / "call.pcm").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], 'call.pcm')); return dt; }""",
        data,
    )
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-text")).to_contain_text("call.pcm")
    expect(page.locator("#pcm-fields")).to_be_visible()
    page.fill("#pcm-rate", "8000")
    page.fill("#pcm-channels", "2")
    page.select_option("#pcm-format", "s16le")
    page.fill("#upload-labels", "tone, noise")
    page.click("#upload-go")
    expect(page.locator("#upload-info .file-info")).to_contain_text(
        "duration 4.00 s · sample rate 8000 Hz · 2 channels", timeout=60_000
    )
    page.screenshot(path=str(SHOTS / "qa-2-pcm-drop.png"), full_page=True)
    # a mistake in an option: one line naming it, from the page and from the server
    page.fill("#upload-options", "{not json")
    page.click("#upload-go")
    expect(page.locator("#error")).to_have_text('policy options must be a JSON object, e.g. {"min_margin": 0.2}')
    page.fill("#upload-options", "")
    page.fill("#upload-template", "no placeholder")
    page.click("#upload-go")
    expect(page.locator("#error")).to_contain_text("422: prompt_template must contain {} once")
    assert page.errors == []


def test_matrix_file_viewer_localize_and_search(live, browser):
    from playwright.sync_api import expect

    page = _page(browser, live, 1400)
    page.click("nav button[data-tab=classify]")
    page.fill("#labels", "tone, noise")
    page.fill("#classify-options", '{"min_margin": 0}')
    page.select_option("#policy", "margin")
    page.fill("#classify-template", "a {} sound")
    page.click("#classify-go")
    expect(page.locator("#classify-table tr.file-row")).to_have_count(3)
    expect(page.locator("#classify-head")).to_contain_text("a tone sound")
    heads = page.locator("#classify-table thead th").all_inner_texts()
    assert heads[-3:-1] == ["tone", "noise"]
    tone_col = heads.index("tone")

    def column(i):
        return [float(r.locator("td").nth(i).inner_text()) for r in page.locator("#classify-table tr.file-row").all()]

    assert column(tone_col) == sorted(column(tone_col), reverse=True)  # sorted by the first label at first
    page.click("#classify-table th[data-sort='label:noise']")
    assert column(tone_col + 1) == sorted(column(tone_col + 1), reverse=True)
    page.click("#classify-table th[data-sort='label:noise']")
    assert column(tone_col + 1) == sorted(column(tone_col + 1))
    assert (
        page.locator("#classify-table tr.file-row").first.locator("button.open-file").inner_text().endswith("tone.wav")
    )
    # every cell is coloured; a file row names its peak window; ▸ opens its windows
    assert all(
        c.startswith("rgb")
        for c in page.locator("#classify-table td.heat").evaluate_all("cs => cs.map(c => c.style.background)")
    )
    burst_row = page.locator("#classify-table tr.file-row", has_text="burst.wav")
    expect(burst_row.locator("td.peak")).to_have_text("0:00.00–0:10.00")  # where the sort label (noise) peaks
    page.click("#classify-table th[data-sort='label:tone']")
    expect(burst_row.locator("td.peak")).to_have_text("0:10.00–0:20.00")  # where tone peaks: the burst
    windows = page.locator("#classify-table tr.window-row:visible")
    expect(windows).to_have_count(0)
    burst_row.locator("button.expand").click()
    expect(windows).to_have_count(2)
    page.screenshot(path=str(SHOTS / "qa-3-matrix-1400.png"), full_page=True)
    _no_overlaps(page, CLASSIFY_CONTROLS, 1400)
    # the file view: waveform + mel with the windows' scores, localize inside the best window
    page.locator("#classify-table tr.file-row", has_text="burst.wav").locator("button.open-file").click()
    expect(page.locator("#file-viewer img.mel")).to_be_visible()
    expect(page.locator("#file-viewer .viewer-legend")).to_contain_text("best for “tone”: 0:10.00–0:20.00")
    row = page.locator("#file-windows tr", has_text="0:10.00–0:20.00")
    with page.expect_response(lambda r: "/localize?" in r.url) as answer:
        row.locator("button.localize").click()
    assert answer.value.status == 200
    expect(page.locator("#localize-result")).to_contain_text("sounds at")
    start = float(page.eval_on_selector("#localize-result", "e => e.dataset.start"))
    assert abs(start + 0.5 - (BURST_AT + 0.25)) <= 0.5
    canvas = page.locator("#file-viewer canvas").bounding_box()
    with page.expect_response(lambda r: "/audio" in r.url):
        page.mouse.click(canvas["x"] + canvas["width"] * (BURST_AT / 20.0), canvas["y"] + 30)
    page.wait_for_function(
        "() => { const p = document.querySelector('#player'); return p.duration > 0 && !p.paused && p.dataset.from; }"
    )
    assert (
        abs(float(page.eval_on_selector("#player", "p => p.dataset.from")) - (BURST_AT - 10.0)) < 0.2
    )  # inside the window
    page.screenshot(path=str(SHOTS / "qa-4-file-localize.png"), full_page=True)
    # search: "where?" on a hit
    page.click("nav button[data-tab=search]")
    page.fill("#queries", "a tone")
    page.click("#search-go")
    hit = page.locator("li.hit", has_text="burst.wav").first  # the best hit: the window with the burst
    hit.locator("button.localize").click()
    expect(hit.locator(".where")).to_contain_text("sound at 0:13", timeout=30_000)
    assert page.errors == []


def test_phone_width_nothing_overlaps(live, browser):
    from playwright.sync_api import expect

    page = _page(browser, live, 390)
    _upload(page, live)
    expect(page.locator("#upload-result")).to_be_visible(timeout=60_000)
    _no_overlaps(page, UPLOAD_CONTROLS, 390)
    page.screenshot(path=str(SHOTS / "qa-5-upload-390.png"), full_page=True)
    page.click("nav button[data-tab=classify]")
    page.fill("#labels", "tone, noise")
    page.click("#classify-go")
    expect(page.locator("#classify-table tr.file-row")).to_have_count(3)
    _no_overlaps(page, CLASSIFY_CONTROLS, 390)
    scroll = page.locator("#tab-classify .table-scroll").bounding_box()
    assert scroll["x"] + scroll["width"] <= 391  # a wide matrix scrolls inside its box, the page does not
    page.screenshot(path=str(SHOTS / "qa-6-matrix-390.png"), full_page=True)
    assert page.errors == []
