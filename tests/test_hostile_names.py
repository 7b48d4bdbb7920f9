"""File names that are not UTF-8 (GBK and Latin-1 names from Windows shares, stray bytes): indexed, searched,
classified, served, renamed and deleted like any other, with ``check`` clean after each run."""

from __future__ import annotations

import csv
import io
import json
import os

import pyarrow.parquet as pq
import pytest
import soundfile as sf
from api_server import LiveServer, api_settings, build_index

from indexer.paths import display_path, path_bytes, real_path
from search.demo_audio import synthesize, write_audio

# name bytes -> what a person sees (each byte that is not UTF-8 shows as U+FFFD)
GBK = "轴承异响".encode("gbk") + b".wav"  # 8 bytes of GBK: not UTF-8
LATIN1 = "café-Müller".encode("latin-1") + b".flac"
INVALID = b"bad\xffname.wav"
HOSTILE = [GBK, LATIN1, INVALID]


def make_archive(root: bytes | str) -> dict[bytes, str]:
    """A normal file and the three hostile names; returns name bytes -> display path."""
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    shown = {}
    for i, name in enumerate([b"plain.wav", *HOSTILE]):
        ext = os.path.splitext(os.fsdecode(name))[1]
        tmp = os.path.join(os.fsdecode(root), f"tmp{ext}")
        write_audio(tmp, synthesize(["tone", "noise", "bell", "chirp"][i], 3.0 + i, 16_000, i), 16_000)
        target = os.path.join(root, name)
        os.rename(tmp, target)
        shown[name] = os.fsencode(target).decode("utf-8", errors="replace")
    return shown


def test_display_and_real_forms_round_trip():
    for name in HOSTILE:
        real = os.fsdecode(name)
        shown = display_path(real)
        shown.encode("utf-8")  # encodable: what DuckDB, Arrow and JSON take
        assert "\ufffd" in shown
        assert real_path(shown, path_bytes(real)) == real
    assert display_path("轴承异响.wav") == "轴承异响.wav" and path_bytes("轴承异响.wav") is None
    assert display_path(os.fsdecode(GBK)) == "\ufffd" * 7 + ".wav"
    assert display_path(os.fsdecode(LATIN1)) == "caf\ufffd-M\ufffdller.flac"


# Eleven commands through the CLI entry point in this process: the names come from the disk, not from argv.
def test_hostile_names_index_search_classify_rename_delete(tmp_path, invoke_cli):
    archive = tmp_path / "archive"
    shown = make_archive(archive)
    index = tmp_path / "index"

    first = invoke_cli("index", archive, "--index", index, "--json").json
    assert first["files_indexed"] == 4 and first["files_failed"] == 0 and first["errors"] == []
    assert invoke_cli("check", "--index", index, "--json").json["ok"] is True

    hits = invoke_cli("search", "a bell", "--index", index, "-k", "10", "--json").json
    found = {h["path"] for r in hits["results"] for h in r["hits"]}
    assert found == set(shown.values())

    rows = invoke_cli("classify", "--index", index, "--labels", "tone, noise", "--json").json["rows"]
    assert {r["path"] for r in rows} == set(shown.values())
    for suffix in ("csv", "parquet", "jsonl"):
        out = tmp_path / f"rows.{suffix}"
        invoke_cli("classify", "--index", index, "--labels", "tone, noise", "--out", out)
        if suffix == "csv":
            paths = {r["path"] for r in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))}
        elif suffix == "parquet":
            paths = set(pq.read_table(out).column("path").to_pylist())
        else:
            paths = {json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()}
        assert paths == set(shown.values()), suffix

    # rename one hostile name to another hostile name, delete another: the rows follow, nothing else moves
    arch = os.fsencode(archive)
    renamed = b"moved\xfe\xfd.wav"
    os.rename(os.path.join(arch, INVALID), os.path.join(arch, renamed))
    os.remove(os.path.join(arch, LATIN1))
    second = invoke_cli("index", archive, "--index", index, "--json").json
    assert (second["files_renamed"], second["files_removed"], second["files_indexed"], second["files_unchanged"]) == (
        1,
        1,
        0,
        2,
    )
    assert second["windows"] == 0
    audit = invoke_cli("check", "--index", index, "--json").json
    assert audit["ok"] is True and audit["missing_files"] == 0
    rows = invoke_cli("classify", "--index", index, "--labels", "tone, noise", "--json").json["rows"]
    assert {r["path"] for r in rows} == {shown[b"plain.wav"], shown[GBK], str(archive) + "/moved\ufffd\ufffd.wav"}


def test_two_names_with_the_same_display_form_stay_two_files(tmp_path, open_index):
    archive = tmp_path / "a"
    os.makedirs(archive)
    arch = os.fsencode(archive)
    for i, name in enumerate((b"x\xff.wav", b"x\xfe.wav")):
        tmp = archive / "t.wav"
        write_audio(tmp, synthesize("tone" if i else "noise", 2.0 + i, 16_000, i), 16_000)
        os.rename(tmp, os.path.join(arch, name))
    sx = open_index()
    report = sx.index([str(archive)], progress=False)
    assert report.files_indexed == 2
    rows = sx.store.known_files()
    assert sorted(os.fsencode(r.path) for r in rows) == sorted(
        os.path.join(arch, n) for n in (b"x\xfe.wav", b"x\xff.wav")
    )
    assert {r.decoder for r in rows} == {"soundfile"}  # not a fallback after a failed open
    os.remove(os.path.join(arch, b"x\xff.wav"))
    again = sx.index([str(archive)], progress=False)
    assert (again.files_removed, again.files_unchanged) == (1, 1)
    assert [os.fsencode(r.path) for r in sx.store.known_files()] == [os.path.join(arch, b"x\xfe.wav")]


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, tiny_model_dir):
    from search.http.app import create_app

    root = tmp_path_factory.mktemp("hostile")
    shown = make_archive(root / "archive")
    settings = api_settings(root / "index", tiny_model_dir)
    build_index(settings, [root / "archive"])
    with LiveServer(create_app(settings)) as server:
        server.shown = shown
        server.archive = root / "archive"
        with server.client() as client:
            server.http = client
            yield server


def test_hostile_names_over_http_files_search_classify_and_audio(hostile_server):
    live = hostile_server
    files = live.http.get("/files").json()["files"]
    assert {f["path"] for f in files} == set(live.shown.values())
    assert all(f["status"] == "indexed" for f in files)

    hits = live.http.post("/search", json={"queries": ["a bell"], "k": 10}).json()["results"][0]["hits"]
    assert {h["path"] for h in hits} == set(live.shown.values())
    rows = live.http.post("/classify", json={"labels": ["tone", "noise"]}).json()["rows"]
    assert {r["path"] for r in rows} == set(live.shown.values())

    for name in HOSTILE:
        entry = next(f for f in files if f["path"] == live.shown[name])
        windows = live.http.get(f"/files/{entry['id']}").json()["windows"]
        assert len(windows) == 1
        wav = live.http.get(f"/windows/{windows[0]['id']}/audio")
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav", wav.text
        audio, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
        source, source_rate = sf.read(os.path.join(os.fsencode(live.archive), name), dtype="float32")
        assert len(audio) / rate == pytest.approx(
            len(source) / source_rate, abs=1e-3
        )  # the whole file: one short window
        rms = lambda x: float((x.astype("float64") ** 2).mean() ** 0.5)  # noqa: E731
        assert rms(audio) == pytest.approx(rms(source), rel=0.05)
