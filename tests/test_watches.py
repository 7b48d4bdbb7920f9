"""Standing queries in-process: alerts ride the commit of their windows, `watch test [--fire]`, delivery to a real
local receiver (signed, retried after failures, bounded when the receiver hangs), the alert API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import BadInput
from indexer.watch_store import WatchStore
from search.core.delivery import Deliverer, signature
from search.core.watches import WatchSpec, add_watch, run_watch_test
from search.demo_audio import synthesize, write_audio
from tests.webhook_receiver import Receiver, verifies

# The tests build on one index in order (watches added, then their alerts read): one worker runs them all.
pytestmark = pytest.mark.xdist_group("watches")


def _write(path: Path, kind: str, seconds: float, seed: int, rate: int = 16_000) -> Path:
    return write_audio(path, synthesize(kind, seconds, rate, seed), rate)


@pytest.fixture(scope="module")
def sx(tmp_path_factory, tiny_model_dir, tiny_encoder):
    from indexer.settings import load_settings
    from search.sound_index import SoundIndex

    root = tmp_path_factory.mktemp("watches")
    settings = load_settings(
        index=root / "idx",
        model=str(tiny_model_dir),
        device="cpu",
        decode_workers=1,
        hop_s=5.0,
        delivery_timeout_s=1.0,
        delivery_backoff_s=0.2,
    )
    (root / "arch").mkdir()
    _write(root / "arch" / "seed.wav", "tone", 12, 0)
    index = SoundIndex.open(settings.index, settings=settings, create=True, encoder=tiny_encoder)
    index.index([str(root / "arch")], progress=False)
    index.root = root  # type: ignore[attr-defined]
    yield index
    index.close()


def _windows_of(sx, name: str) -> set[int]:
    return {
        int(i)
        for i in sx.store.cursor()
        .execute("SELECT w.id FROM windows w JOIN files f ON f.id = w.file_id WHERE f.path LIKE ?", [f"%/{name}"])
        .fetchnumpy()["id"]
    }


def test_alerts_ride_the_commit_on_new_windows_only(sx):
    arch = sx.root / "arch"
    ws = WatchStore(sx.store)
    add_watch(sx, WatchSpec(name="all", query="a steady tone", min_score=-1.0))
    assert ws.alerts(watch="all") == []  # a new watch does not fire on old windows
    _write(arch / "b.wav", "noise", 22, 1)
    sx.index([str(arch)], progress=False)
    b_alerts = ws.alerts(watch="all")
    assert {a.window_id for a in b_alerts} == _windows_of(sx, "b.wav")  # every new window, once
    run_id = sx.store.cursor().execute("SELECT max(id) FROM runs").fetchone()[0]
    assert {a.run_id for a in b_alerts} == {run_id}
    # A selective watch: the median of the reference scores; alerts must be exactly the windows at or above it.
    median = float(np.median([a.score for a in b_alerts]))
    add_watch(sx, WatchSpec(name="half", query="a steady tone", min_score=median))
    _write(arch / "c.wav", "bell", 31, 2)
    _write(arch / "d.wav", "chirp", 14, 3)
    sx.index([str(arch)], progress=False)
    new = _windows_of(sx, "c.wav") | _windows_of(sx, "d.wav")
    reference = {a.window_id: a.score for a in ws.alerts(watch="all") if a.window_id in new}
    assert set(reference) == new
    expected = {w for w, s in reference.items() if s >= np.float32(median)}
    got = {a.window_id for a in ws.alerts(watch="half")}
    assert got == expected
    # `watch test` sees the whole index and writes nothing; --fire adds only what never fired, once.
    before = len(ws.alerts())
    matches, fired = run_watch_test(sx, "half")
    assert fired == 0 and len(ws.alerts()) == before
    all_ids = {w for w, s in ((a.window_id, a.score) for a in ws.alerts(watch="all"))}
    assert {m.window_id for m in matches} <= all_ids | _windows_of(sx, "seed.wav")
    assert {m.window_id for m in matches} >= expected
    matches, fired = run_watch_test(sx, "half", fire=True)
    assert fired == len({m.window_id for m in matches} - expected)
    assert {a.window_id for a in ws.alerts(watch="half")} == {m.window_id for m in matches}
    assert run_watch_test(sx, "half", fire=True)[1] == 0


def test_label_set_watch_and_path_filter(sx):
    arch = sx.root / "arch"
    add_watch(
        sx, WatchSpec(name="labels", labels="tone, noise, bell", label="bell", threshold=0.0, path_glob="*/e-*.wav")
    )
    _write(arch / "e-1.wav", "bell", 11, 4)
    _write(arch / "f-1.wav", "bell", 11, 5)
    sx.index([str(arch)], progress=False)
    got = WatchStore(sx.store).alerts(watch="labels")
    assert {a.window_id for a in got} == _windows_of(sx, "e-1.wav")  # threshold 0: every window the filter lets in
    assert all(0.0 <= a.score <= 1.0 and a.label == "bell" for a in got)


@pytest.mark.parametrize(
    "spec, words",
    [
        (WatchSpec(name="x", labels="tone, noise", label="glass", threshold=0.5), "not in --labels"),
        (WatchSpec(name="x", probe="nosuch:fault", threshold=0.5), "no probe named 'nosuch'"),
        (WatchSpec(name="x", query="tone", min_score=0.2, webhook="ftp://host/x"), "http:// or https:// URL"),
        (WatchSpec(name="x", query="tone", min_score=0.2, webhook="http://:80"), "http:// or https:// URL"),
        (WatchSpec(name="x", query="tone", min_score=0.2, tags=["=oops"]), "cannot read the tag filter"),
        (WatchSpec(name="x", query="tone", min_score=2.0), "between -1 and 1"),
        (WatchSpec(name="x", query="tone"), "needs --min-score"),
        (WatchSpec(name="all", query="tone", min_score=0.1), "exists"),
    ],
)
def test_bad_watches_are_one_clear_line(sx, spec, words):
    if spec.name == "all" and WatchStore(sx.store).named("all") is None:
        add_watch(sx, WatchSpec(name="all", query="tone", min_score=-1.0))
    with pytest.raises(BadInput) as caught:
        add_watch(sx, spec)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_webhook_signed_retried_then_delivered_once(sx):
    arch = sx.root / "arch"
    with Receiver(fail_first=2) as receiver:
        add_watch(sx, WatchSpec(name="hook", query="tone", min_score=-1.0, webhook=receiver.url, secret="s3cret"))
        _write(arch / "g.wav", "tone", 9, 6)
        deliverer = Deliverer(sx.store, timeout_s=2.0, backoff_s=0.1, base_url="http://page").start()
        sx.index([str(arch)], progress=False)
        expected = _windows_of(sx, "g.wav")
        assert receiver.wait_for(len(expected), 30)
        left = deliverer.finish(5)
        status = {(s.watch, s.target): s for s in WatchStore(sx.store).status()}[("hook", "webhook")]
    assert left == 0 and status.delivered == len(expected) and status.failing == 0
    assert receiver.attempts >= len(expected) + 2  # two 503s, retried
    docs = receiver.unique()
    assert {d["window_id"] for d in docs.values()} == expected
    for headers, body in receiver.posts:
        assert verifies("s3cret", headers, body)
        doc = json.loads(body)
        assert headers["x-soundsift-delivery"] == doc["delivery_id"]
        assert headers["content-type"] == "application/json"
        assert {"watch", "path", "start", "end", "score", "window_id", "link"} <= set(doc)
        assert doc["link"].startswith("http://page/#file=")
    assert signature("k", b"{}") == "sha256=" + __import__("hmac").new(b"k", b"{}", "sha256").hexdigest()


def test_failing_state_is_visible_and_a_hanging_target_costs_its_timeout(sx):
    arch = sx.root / "arch"
    with Receiver(delay_s=20) as receiver:
        add_watch(sx, WatchSpec(name="slow", query="tone", min_score=-1.0, webhook=receiver.url))
        _write(arch / "h.wav", "tone", 6, 7)
        deliverer = Deliverer(sx.store, timeout_s=0.5, backoff_s=60.0).start()
        t0 = time.monotonic()
        sx.index([str(arch)], progress=False)
        left = deliverer.finish(3.0)
        spent = time.monotonic() - t0
        status = {(s.watch, s.target): s for s in WatchStore(sx.store).status()}[("slow", "webhook")]
    assert left >= 1 and spent < 20  # bounded by the limits, not by the receiver
    assert status.failing >= 1 and status.delivered == 0 and "timed out" in (status.last_error or "")


def test_ndjson_and_exec_targets(sx, tmp_path):
    arch = sx.root / "arch"
    log = tmp_path / "alerts.ndjson"
    seen = tmp_path / "seen.jsonl"
    add_watch(
        sx,
        WatchSpec(
            name="files", query="tone", min_score=-1.0, ndjson=str(log), exec=f"sh -c 'cat >> {seen}; echo >> {seen}'"
        ),
    )
    _write(arch / "i.wav", "noise", 16, 8)
    deliverer = Deliverer(sx.store, timeout_s=5.0).start()
    sx.index([str(arch)], progress=False)
    deliverer.finish(30)
    mine = [s for s in WatchStore(sx.store).status() if s.watch == "files"]
    assert {s.target for s in mine} == {"ndjson", "exec"} and all(s.pending == s.failing == 0 for s in mine)
    expected = _windows_of(sx, "i.wav")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {d["window_id"] for d in lines if d["watch"] == "files"} == expected
    piped = [json.loads(line) for line in seen.read_text().splitlines() if line.strip()]
    assert {d["window_id"] for d in piped} == expected


def test_alerts_api_pages_and_filters(sx):
    from fastapi.testclient import TestClient

    from search.http.app import create_app

    app = create_app(sx.settings, sound_index=sx, url="http://x")
    app.state.sound_index = sx  # no lifespan: the module's index stays open (and owned) after this test
    client = TestClient(app)
    total = WatchStore(sx.store).alerts(watch="all")
    seen, cursor = [], None
    while True:
        page = client.get(
            "/alerts", params={"watch": "all", "limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += page["alerts"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert [a["alert_id"] for a in seen] == [a.id for a in total]
    assert all(a["watch"] == "all" for a in seen)
    future = client.get("/alerts", params={"since": time.time() + 3600}).json()
    assert future["alerts"] == []
    names = {w["name"] for w in client.get("/watches").json()}
    assert names == {w.name for w in WatchStore(sx.store).all()} and "all" in names
    assert client.get("/alerts", params={"cursor": "nonsense"}).status_code == 422


def test_probe_watch_fires_on_its_class_probability(sx):
    from indexer.teach_store import ProbeRecord, TeachStore
    from indexer.watch_eval import _softmax

    arch = sx.root / "arch"
    rng = np.random.default_rng(5)
    dim = sx.store.embedding_dim
    weights = rng.standard_normal((2, dim)).astype(np.float32)
    meta = sx.store.identity_meta() or {}
    TeachStore(sx.store).save_probe(
        ProbeRecord(
            "bearings",
            1,
            ("fault", "other"),
            weights,
            np.zeros(2, np.float32),
            meta.get("model_id"),
            meta["model_fingerprint"],
            "h",
            {},
            "",
        )
    )
    with pytest.raises(BadInput, match="has no class 'glass'"):
        add_watch(sx, WatchSpec(name="p", probe="bearings:glass", threshold=0.5))
    add_watch(sx, WatchSpec(name="p", probe="bearings:fault", threshold=0.5))
    _write(arch / "j.wav", "bearing", 21, 9)
    sx.index([str(arch)], progress=False)
    ids = _windows_of(sx, "j.wav")
    got_ids, got_vectors = next(sx.store.vectors_for(np.array(sorted(ids), dtype=np.int64)))
    probability = _softmax(got_vectors @ weights.T)[:, 0]
    expected = {int(i) for i, p in zip(got_ids, probability) if p >= 0.5}
    assert {a.window_id for a in WatchStore(sx.store).alerts(watch="p")} == expected
