"""Evaluation over HTTP and in the page: POST /eval on a sample under the index's roots (cached the second time),
label sets stored by name and used by POST /classify, and the Evaluate tab drawing a report in headless chromium."""

from __future__ import annotations

import json
import os

import pytest
import soundfile as sf
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings
from band_encoder import BandEncoder, burst_in_noise

KEY = "eval-key"
LABELS = 'steady="a steady tone", hiss=static'


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir, tiny_encoder):
    from search.http.app import create_app
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("eval-api")
    sample = root / "archive" / "sample"
    (sample / "steady").mkdir(parents=True)
    (sample / "hiss").mkdir()
    for i in range(2):
        sf.write(
            sample / "steady" / f"t{i}.wav", burst_in_noise(2.0 + i, 0.0, 2.0 + i, seed=i), 48_000, subtype="FLOAT"
        )
        sf.write(sample / "hiss" / f"n{i}.wav", burst_in_noise(1.5 + i, 0.0, 0.0, seed=10 + i), 48_000, subtype="FLOAT")
    outside = root / "outside"
    outside.mkdir()
    (outside / "m.csv").write_text(f"path,label\n{sample / 'hiss' / 'n0.wav'},hiss\n")
    settings = api_settings(root / "index", tiny_model_dir, api_key=KEY)
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=BandEncoder(tiny_encoder))
    sx.index([root / "archive"], progress=False)
    with LiveServer(create_app(settings, sound_index=sx)) as server:
        server.root = root
        yield server


def test_eval_over_http_is_cached_and_saves_a_label_set_that_classify_uses(live):
    with live.client(headers={"X-API-Key": KEY}) as http:
        first = http.post("/eval", json={"sample": "sample", "labels": LABELS, "save_as": "qa"})
        assert first.status_code == 200, first.text
        report = first.json()
        assert report["clips"] == 4 and report["accuracy"] == 1.0 and report["labels"] == ["steady", "hiss"]
        assert report["confusion"]["matrix"] == [[2, 0], [0, 2]] and report["embedded_windows"] == 4
        again = http.post("/eval", json={"sample": str(live.root / "archive" / "sample"), "labels": LABELS}).json()
        assert again["embedded_windows"] == 0 and again["cached_clips"] == 4 and again["map"] == report["map"]

        assert http.get("/label-sets").json() == {"label_sets": ["qa"]}
        stored = http.get("/label-sets/qa").json()
        assert stored["texts"] == {"steady": "a steady tone", "hiss": "static"} and set(stored["thresholds"]) == {
            "steady",
            "hiss",
        }
        assert http.get("/label-sets/nope").status_code == 404
        rows = http.post("/classify", json={"label_set": "qa", "by": "file", "filters": {"path_glob": "*/sample/*"}})
        assert rows.status_code == 200, rows.text
        doc = rows.json()
        assert doc["labels"] == ["steady", "hiss"] and doc["texts"] == [
            ["This is a sound of a steady tone."],
            ["This is a sound of static."],
        ]
        assert {r["path"].split("/")[-2]: r["label"] for r in doc["rows"]} == {"steady": "steady", "hiss": "hiss"}
        assert all(r["label"] == r["path"].split("/")[-2] for r in doc["rows"])

        both = http.post("/classify", json={"label_set": "qa", "labels": "a, b"})
        assert both.status_code == 422
        missing = http.post("/classify", json={"label_set": "nothere"})
        assert missing.status_code == 422 and "no label set named 'nothere'" in missing.json()["detail"]
        outside = http.post("/eval", json={"sample": str(live.root / "outside" / "m.csv")})
        assert outside.status_code == 403
        assert http.post("/eval", json={"sample": "no-such-sample"}).status_code == 404
        assert http.post("/eval", json={"sample": "sample", "labels": "owl, cat"}).status_code == 422
        for bad in (
            {"labels": ",".join(f"l{i}" for i in range(200))},
            {"labels": "steady, hiss", "prompt_templates": ["no braces"]},
            {"labels": "steady, hiss", "policies": ["nope"]},
            {"labels": "steady, hiss", "policies": ["archive"]},
            {"labels": "steady, hiss", "policy_options": {"threshold": {"owl": 1}}},
            {"labels": "steady, hiss", "variants": ["owl=hoot"]},
            {"labels": "steady=, hiss"},
        ):
            answer = http.post("/eval", json={"sample": "sample", **bad})
            assert answer.status_code == 422 and answer.json()["detail"], (bad, answer.text)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: `make browser-deps` installs it")
def test_the_evaluate_tab_draws_a_report(live):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url + "/")
            page.fill("#api-key", KEY)
            page.click("#key-save")
            page.click("nav button[data-tab=evaluate]")
            page.fill("#eval-sample", "sample")
            page.fill("#eval-labels", LABELS)
            page.fill("#eval-templates", "This is a sound of {}.\n{}")
            page.click("#eval-go")
            report = page.locator("#eval-report[data-rendered='1']")
            expect(report).to_be_visible(timeout=120_000)
            expect(page.locator("#eval-status")).to_contain_text("done in")
            summary = page.locator(".eval-summary td").all_inner_texts()
            assert summary[:3] == ["1.000", "1.000", "1.000"]  # accuracy, top-5, macro-F1
            assert page.locator(".eval-confusion rect").count() == 4
            assert page.locator(".eval-pr").count() == 2 and page.locator(".eval-reliability").count() == 1
            assert page.locator("text=Variants, ranked by macro-F1").count() == 1
            # the classify form offers the label sets stored in the index, and classifies with one
            sets = json.loads(
                page.evaluate("(key) => fetch('/label-sets', {headers: {'X-API-Key': key}}).then((r) => r.text())", KEY)
            )
            page.click("nav button[data-tab=classify]")
            expect(page.locator("#classify-label-set option")).to_have_count(1 + len(sets["label_sets"]))
            if "qa" in sets["label_sets"]:
                page.select_option("#classify-label-set", "qa")
                page.click("#classify-go")
                expect(page.locator("#classify-table")).to_be_visible()
                expect(page.locator("#classify-table thead")).to_contain_text("steady")
            assert errors == []
        finally:
            browser.close()
