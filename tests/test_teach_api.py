"""Teaching over HTTP and in the page: examples, search by example and by a clip, probes trained as a server job,
classify and search with a probe, export/import; the Teach tab and the marks on hits in headless chromium."""

from __future__ import annotations

import time

import pytest
from api_server import CHROMIUM, CHROMIUM_ARGS, LiveServer, api_settings
from test_teach import synth, write

KEY = "teach-key"
KINDS = ("hum", "hiss", "whistle")


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir, tiny_encoder):
    import httpx

    from search.http.app import create_app
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("teach-api")
    archive = root / "archive"
    archive.mkdir()
    for k, kind in enumerate(KINDS):
        for i in range(4):
            write(archive / f"{kind}_{i}.wav", synth(kind, 10 * k + i))
    write(root / "clip.wav", synth("whistle", 77))
    settings = api_settings(root / "index", tiny_model_dir, api_key=KEY)
    sx = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
    sx.index([archive], progress=False)
    with LiveServer(create_app(settings, sound_index=sx)) as server:
        server.root = root
        server.archive = archive
        server.api = httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120)
        yield server


def wait_job(live, job: dict) -> dict:
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = live.api.get(f"/jobs/{job['id']}").json()
    return job


def test_examples_train_job_probe_classify_search(live):
    api, a = live.api, live.archive
    for kind in KINDS:
        r = api.post(
            "/examples", json={"class": kind, "targets": [{"path": str(a / f"{kind}_{i}.wav")} for i in range(3)]}
        )
        assert r.status_code == 200 and r.json()["added"] == 3, r.text
    listed = api.get("/examples", params={"class": "hum"}).json()
    assert len(listed["examples"]) == 3 and set(listed["classes"]) == set(KINDS)
    bad = api.post("/probes/p1/train", json={"classes": "hum, , hiss"})
    assert bad.status_code == 422 and "empty class name" in bad.json()["detail"]
    job = api.post("/probes/p1/train", json={"classes": list(KINDS)})
    assert job.status_code == 202 and job.json()["kind"] == "train"
    done = wait_job(live, job.json())
    assert done["status"] == "completed", done
    assert done["train"]["result"]["classes"] == list(KINDS) and done["train"]["result"]["version"] == 1
    failed = wait_job(live, api.post("/probes/p2/train", json={"classes": ["hum", "bird"]}).json())
    assert failed["status"] == "failed" and "class 'bird' has no examples" in failed["error"]
    assert [p["name"] for p in api.get("/probes").json()["probes"]] == ["p1"]
    rows = api.post("/classify", json={"probe": "p1"}).json()["rows"]
    assert len(rows) == 12 and all(set(r["scores"]) == set(KINDS) for r in rows)
    hits = api.post("/search", json={"probe": "p1:hiss", "k": 2}).json()["results"][0]["hits"]
    best = sorted(rows, key=lambda r: (-r["scores"]["hiss"], r["window_id"]))[:2]
    assert [h["window_id"] for h in hits] == [r["window_id"] for r in best]
    filtered = api.post("/classify", json={"probe": "p1", "filters": {"tags": ["probe:p1:hiss>=0.5"]}}).json()["rows"]
    assert {r["window_id"] for r in filtered} == {r["window_id"] for r in rows if r["scores"]["hiss"] >= 0.5}
    exported = api.get("/probes/p1/export").json()
    assert api.post("/probes", params={"name": "p1b"}, json=exported).status_code == 200
    exported["model_fingerprint"] = "0" * 64
    refused = api.post("/probes", params={"name": "p1c"}, json=exported)
    assert refused.status_code == 409 and "0" * 12 in refused.json()["detail"], refused.text
    assert api.delete("/probes/p1b").status_code == 200 and api.get("/probes/p1b").status_code == 404


def test_like_by_window_path_and_clip(live):
    api, a = live.api, live.archive
    target = str(a / "hum_3.wav")
    doc = api.post("/search", json={"like": [{"path": target, "start": 0.5}], "k": 3}).json()
    hits = doc["results"][0]["hits"]
    assert all(h["path"] != target for h in hits) and sum("hum_" in h["path"] for h in hits) >= 2
    wid = hits[0]["window_id"]
    doc = api.post("/search", json={"like": [wid], "include_self": True, "k": 1}).json()
    assert doc["results"][0]["hits"][0]["window_id"] == wid
    missing = api.post("/search", json={"like": [{"path": "/nowhere.wav"}]})
    assert missing.status_code == 422 and "is not in the index" in missing.json()["detail"]
    with open(live.root / "clip.wav", "rb") as fh:
        r = api.post("/search/like-file", files={"file": ("clip.wav", fh, "audio/wav")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    assert sum("whistle_" in h["path"] for h in r.json()["results"][0]["hits"]) >= 2


@pytest.mark.browser
def test_the_teach_tab_marks_hits_and_trains(live):
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
            page.fill("#queries", "a steady hum")
            page.click("#search-go")
            first = page.locator("li.hit").first
            expect(first.locator(".teach-actions .mark-yes")).to_be_visible()
            page.fill("#teach-class", "page_class")
            page.locator("li.hit .mark-yes").nth(0).click()
            page.locator("li.hit .mark-yes").nth(1).click()
            expect(page.locator("li.hit .mark-yes.marked")).to_have_count(2)
            page.locator("li.hit .mark-no").nth(2).click()
            wid = int(first.get_attribute("data-window"))
            first.locator(".like").click()
            expect(page.locator(f"li.hit[data-window='{wid}']")).to_have_count(0)  # the target itself is left out
            page.click("nav button[data-tab=teach]")
            expect(page.locator("#teach-examples tr[data-class=page_class]")).to_contain_text("2")
            page.fill("#train-name", "pagep")
            page.fill("#train-classes", "page_class")
            page.fill("#train-background", "4")
            page.click("#train-go")
            expect(page.locator("#train-status")).to_contain_text("trained pagep v1", timeout=60_000)
            expect(page.locator(".probe[data-probe=pagep]")).to_be_visible()
            assert errors == []
        finally:
            browser.close()


def test_the_cli_goes_through_the_server(live, tiny_model_dir):
    from test_teach import cli

    a = live.archive
    common = ("--server", live.url, "--api-key", KEY)
    doc = cli(tiny_model_dir, "search", "--like", f"{a / 'hiss_2.wav'}@0.5", "-k", "3", *common, "--json").json
    hits = doc["results"][0]["hits"]
    assert len(hits) == 3 and all(not h["path"].endswith("hiss_2.wav") for h in hits)
    local = live.api.post("/search", json={"like": [{"path": str(a / "hiss_2.wav"), "start": 0.5}], "k": 3}).json()
    assert [h["window_id"] for h in hits] == [h["window_id"] for h in local["results"][0]["hits"]]
    probes = [p["name"] for p in live.api.get("/probes").json()["probes"]]
    if probes:  # trained by the first test of this module
        rows = cli(tiny_model_dir, "classify", "--probe", probes[0], *common, "--json").json["rows"]
        assert len(rows) == 12
