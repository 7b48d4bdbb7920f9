"""The CLI end to end on a tiny archive: index, stats, search, classify (JSON output contract)."""

from __future__ import annotations


def test_index_search_classify_json(tmp_path, write_sound, run_cli):
    archive = tmp_path / "archive"
    write_sound(archive / "a.wav", "tone", 25.0)
    write_sound(archive / "sub" / "b.flac", "noise", 3.5)
    index = tmp_path / "index"

    result = run_cli("index", archive, "--index", index, "--json").json
    assert result["files_indexed"] == 2
    assert result["files_failed"] == 0
    assert result["windows"] == 4  # [0,10] [10,20] [15,25] + one short window
    assert result["errors"] == []

    stats = run_cli("stats", "--index", index, "--json").json
    assert stats["files"]["indexed"] == 2
    assert stats["windows"] == 4

    found = run_cli("search", "a pure tone", "white noise", "--index", index, "-k", "10", "--json").json
    assert [r["query"] for r in found["results"]] == ["a pure tone", "white noise"]
    assert found["results"][0]["texts"] == ["This is a sound of a pure tone."]
    assert len(found["results"][0]["hits"]) == 4
    assert set(found["results"][0]["hits"][0]) == {"path", "start", "end", "score", "window_id", "file_id"}

    rows = run_cli("classify", "--index", index, "--labels", "tone, noise", "--json").json
    assert rows["labels"] == ["tone", "noise"] and rows["policy"] == "softmax"
    assert len(rows["rows"]) == 4
    for row in rows["rows"]:
        assert abs(sum(row["scores"].values()) - 1.0) < 1e-5
        assert row["label"] == max(row["scores"], key=row["scores"].get)
