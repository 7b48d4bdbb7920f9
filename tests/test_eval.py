"""`soundsift eval`: samples in every layout, metrics equal to scikit-learn's on scores from the transformers
pipeline, a sample with known answers, variants, thresholds saved as a label set and reused, the clip cache,
and one clear error for each bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from band_encoder import BandEncoder, burst_in_noise
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from indexer.errors import BadInput
from search.core.samples import read_sample
from search.demo_audio import synthesize

SR = 48_000
CLASSES = ["bell", "noise", "tone"]  # sorted, as the report orders the class names
TEXTS = ["a bell ringing", "noise", "tone"]  # what --labels maps them to
LABELS_OPTION = 'bell="a bell ringing", noise, tone'
TEMPLATE = "This is a sound of {}."


def _write(path, audio):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SR, subtype="FLOAT")
    return path


# -- reading samples --------------------------------------------------------------------------------
def test_every_layout_is_read(tmp_path):
    tone = synthesize("tone", 1.0, SR)
    for kind in ("dog", "cat"):
        for i in range(2):
            _write(tmp_path / "folders" / kind / f"{kind}{i}.wav", tone)
    (tmp_path / "folders" / "README.txt").write_text("notes")  # not audio, not a class
    sample = read_sample(tmp_path / "folders")
    assert sample.layout == "folders" and sample.classes == ["cat", "dog"] and len(sample.clips) == 4

    esc = tmp_path / "esc"
    _write(esc / "audio" / "1-1-A-0.wav", tone)
    _write(esc / "audio" / "1-2-A-1.wav", tone)
    (esc / "meta").mkdir()
    (esc / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,True,1,A\n"
        "1-2-A-1.wav,1,1,rooster,False,2,A\n1-9-A-1.wav,1,1,rooster,False,9,A\n"
    )
    sample = read_sample(esc)  # audio/ and meta/ are not taken for classes
    assert sample.layout == "esc50" and sample.classes == ["dog", "rooster"] and len(sample.clips) == 2
    assert [s.reason.split(":")[0] for s in sample.skipped] == ["no such file"]

    us = tmp_path / "us8k"
    _write(us / "audio" / "fold3" / "100-1-0-0.wav", tone)
    _write(us / "fold5" / "101-2-0-0.wav", tone)
    (us / "metadata").mkdir()
    (us / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "100-1-0-0.wav,100,17.5,21.5,1,3,1,car_horn\n101-2-0-0.wav,101,3.0,7.0,1,5,2,siren\n"
    )
    sample = read_sample(us)
    assert sample.layout == "urbansound8k" and sample.classes == ["car_horn", "siren"]
    assert all(c.start == 0.0 and c.end is None for c in sample.clips)  # the CSV's times are in the source recording

    absolute = _write(tmp_path / "elsewhere" / "x.wav", tone)
    (tmp_path / "m.csv").write_text(
        f"path,start,end,label\nfolders/dog/dog0.wav,0.25,0.75,dog\n{absolute},,,dog;cat\nfolders/cat/cat0.wav,,,\n"
        "folders/cat/cat1.wav,2,1,cat\n"
    )
    sample = read_sample(tmp_path / "m.csv")
    assert sample.layout == "manifest-csv" and sample.multilabel
    assert [(c.path, c.start, c.end, c.labels) for c in sample.clips] == [
        (tmp_path / "folders/dog/dog0.wav", 0.25, 0.75, ("dog",)),
        (absolute, 0.0, None, ("dog", "cat")),
    ]
    assert [s.where for s in sample.skipped] == ["m.csv:4", "m.csv:5"]

    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": "folders/dog/dog1.wav", "label": "dog", "start": 0.5})
        + "\n\n"
        + json.dumps({"path": "folders/cat/cat1.wav", "label": ["cat"]})
        + "\n"
    )
    sample = read_sample(tmp_path / "m.jsonl")
    assert sample.layout == "manifest-jsonl" and [c.labels for c in sample.clips] == [("dog",), ("cat",)]


def test_bad_samples_are_one_clear_error_each(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no labelled clips"):
        read_sample(tmp_path / "empty")
    (tmp_path / "cols.csv").write_text("file,category\na.wav,dog\n")
    with pytest.raises(
        BadInput, match=r"unknown column\(s\) 'file', 'category' and missing column\(s\) 'path', 'label'"
    ):
        read_sample(tmp_path / "cols.csv")
    (tmp_path / "header.csv").write_text("path,label\n")
    with pytest.raises(BadInput, match="no labelled clips"):
        read_sample(tmp_path / "header.csv")
    with pytest.raises(BadInput, match="no such sample"):
        read_sample(tmp_path / "nothing-here")


# -- metrics against the transformers pipeline -----------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_sample(tmp_path_factory):
    """Two clips per class (each <= 10 s), one a segment of a longer file; a missing and an undecodable row."""
    root = tmp_path_factory.mktemp("eval-sample")
    audio = {}
    for kind in CLASSES:
        for i in range(2):
            audio[f"{kind}{i}.wav"] = synthesize(kind, 2.0 + 1.5 * i, SR, seed=i)
            _write(root / "clips" / f"{kind}{i}.wav", audio[f"{kind}{i}.wav"])
    (root / "clips" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    rows = [("clips/" + name, "", "", name[:-5]) for name in audio]
    rows[1] = ("clips/bell1.wav", "0.5", "2.5", "bell")  # a segment: what the pipeline is given is the same crop
    rows += [("clips/missing.wav", "", "", "tone"), ("clips/broken.wav", "", "", "noise")]
    manifest = root / "sample.csv"
    manifest.write_text("path,start,end,label\n" + "".join(",".join(r) + "\n" for r in rows))
    return root, manifest, audio


def _clip_audio(audio, row):
    _, start, end, _ = row
    return audio[int(round(float(start) * SR)) : int(round(float(end) * SR))] if start else audio


@pytest.fixture(scope="module")
def pipeline_scores(pipeline_sample, tiny_model_dir):
    """Per clip, the transformers pipeline's scores (labels in CLASSES order), computed on each clip alone."""
    from transformers import pipeline

    root, manifest, audio = pipeline_sample
    clap = pipeline("zero-shot-audio-classification", model=str(tiny_model_dir), device="cpu")
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:7]]
    scores, truth = [], []
    for row in rows:
        clip = _clip_audio(audio[row[0].split("/")[1]], row)
        out = {r["label"]: r["score"] for r in clap(clip, candidate_labels=TEXTS, hypothesis_template=TEMPLATE)}
        scores.append([out[t] for t in TEXTS])
        truth.append(CLASSES.index(row[3]))
    return np.array(scores), np.array(truth)


def _f1_threshold(y, s):
    """The threshold with the best F1 among the scores themselves, computed with f1_score (ties: the lower)."""
    best = max(sorted(set(s)), key=lambda t: (f1_score(y, s >= t), -t))
    return best


@pytest.fixture(scope="module")
def cli_eval(pipeline_sample, tiny_model_dir):
    """One `soundsift eval` run: JSON report, HTML report and the best variant saved as a label set."""
    import subprocess
    import sys

    from conftest import REPO, cli_env

    root, manifest, _ = pipeline_sample
    html, saved = root / "report.html", root / "qa.toml"
    args = ["eval", manifest, "--labels", LABELS_OPTION, "--policy", "margin", "--json", "--out", html]
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", *map(str, args), "--save-label-set", str(saved)],
        capture_output=True,
        text=True,
        env=cli_env(tiny_model_dir),
        cwd=REPO,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), html, saved


def test_eval_report_equals_scikit_learn_on_pipeline_scores(pipeline_sample, pipeline_scores, cli_eval):
    root, manifest, _ = pipeline_sample
    report, html, _ = cli_eval
    scores, y = pipeline_scores
    pred = scores.argmax(axis=1)
    assert report["clips"] == 6 and report["labels"] == CLASSES and report["multilabel"] is False
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-6)
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-6)
    assert report["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-6)
    assert report["top5_accuracy"] == 1.0  # three labels: the true one is always among the best five
    ap = [average_precision_score(y == j, scores[:, j]) for j in range(3)]
    assert report["map"] == pytest.approx(np.mean(ap), abs=1e-6)
    assert report["confusion"] == {"labels": CLASSES, "matrix": confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()}
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    for j, row in enumerate(report["per_label"]):
        assert (row["label"], row["text"]) == (CLASSES[j], TEXTS[j])
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[j], r[j], f[j]), abs=1e-6)
        assert row["ap"] == pytest.approx(ap[j], abs=1e-6) and row["support"] == support[j] == 2
        assert row["threshold"] == pytest.approx(_f1_threshold(y == j, scores[:, j]), abs=1e-5)
    # calibration: the top-1 confidence against correctness, ten equal bins
    conf, correct = scores.max(axis=1), pred == y
    which = np.minimum((conf * 10).astype(int), 9)
    ece = sum(np.sum(which == b) / 6 * abs(correct[which == b].mean() - conf[which == b].mean()) for b in set(which))
    assert report["calibration"]["ece"] == pytest.approx(ece, abs=1e-6)
    assert sum(b["count"] for b in report["calibration"]["bins"]) == 6
    wrong = [i for i in range(6) if pred[i] != y[i]]
    assert len(report["misclassified"]) == len(wrong)
    assert sorted(m["score"] for m in report["misclassified"]) == pytest.approx(
        sorted(scores[i, pred[i]] for i in wrong), abs=1e-5
    )
    # the missing row and the undecodable file are listed with their reasons; the rest was evaluated
    reasons = {s["where"]: s["reason"] for s in report["skipped"]}
    assert reasons["sample.csv:8"].startswith("no such file")
    assert reasons[str(root / "clips" / "broken.wav")].startswith("cannot decode")
    assert report["embedded_windows"] == 6 and report["variants"][0]["rank"] == 1
    page = html.read_text()
    assert json.dumps(report["labels"]) in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_multilabel_metrics_at_the_chosen_thresholds(pipeline_sample, pipeline_scores, tiny_encoder, tmp_path):
    from plugins.manager import default_plugins
    from search.core.eval_clips import embed_sample
    from search.core.eval_setup import label_set_variant
    from search.core.evaluate import evaluate
    from search.core.label_set import LabelSet
    from search.sound_index import load_settings

    root, _, _ = pipeline_sample
    scores, y = pipeline_scores
    names = ["bell0", "bell1", "noise0", "noise1", "tone0", "tone1"]
    multi = {"bell1": "bell;tone", "noise1": "noise;bell"}
    manifest = tmp_path / "multi.jsonl"
    manifest.write_text(
        "".join(
            json.dumps(
                {"path": str(root / "clips" / f"{n}.wav"), "label": multi.get(n, n[:-1])}
                | ({"start": 0.5, "end": 2.5} if n == "bell1" else {})
            )
            + "\n"
            for n in names
        )
    )
    settings = load_settings(model=str(tiny_encoder.identity.model_id), device="cpu", decode_workers=1)
    plugins = default_plugins()
    variant = label_set_variant("v", LabelSet(CLASSES, dict(zip(CLASSES, TEXTS))), tiny_encoder, settings, plugins)
    report = evaluate(embed_sample(read_sample(manifest), tiny_encoder, settings, plugins), [variant])
    Y = np.zeros((6, 3), bool)
    for i, n in enumerate(names):
        for label in multi.get(n, n[:-1]).split(";"):
            Y[i, CLASSES.index(label)] = True
    thresholds = [_f1_threshold(Y[:, j], scores[:, j]) for j in range(3)]
    decided = scores >= np.array(thresholds)[None, :]
    assert report.multilabel and report.clips == 6
    ap = [average_precision_score(Y[:, j], scores[:, j]) for j in range(3)]
    assert [p.ap for p in report.per_label] == pytest.approx(ap, abs=1e-6)
    assert report.map == pytest.approx(np.mean(ap), abs=1e-6)
    assert [p.threshold for p in report.per_label] == pytest.approx(thresholds, abs=1e-5)
    assert report.macro_f1 == pytest.approx(f1_score(Y, decided, average="macro"), abs=1e-6)
    assert report.micro_f1 == pytest.approx(f1_score(Y, decided, average="micro"), abs=1e-6)
    assert [p.f1 for p in report.per_label] == pytest.approx(f1_score(Y, decided, average=None), abs=1e-6)


# -- a sample whose answers are known ---------------------------------------------------------------------
class CountingBand(BandEncoder):
    """The band encoder, counting the windows it embeds."""

    embedded = 0

    def embed_windows(self, windows):
        CountingBand.embedded += len(windows)
        return super().embed_windows(windows)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """Tones and noise: the band encoder separates them exactly ("tone" texts point at the tone's band)."""
    root = tmp_path_factory.mktemp("known")
    for i in range(3):
        _write(root / "steady" / f"t{i}.wav", burst_in_noise(2.0 + i, 0.0, 2.0 + i, seed=i))
        _write(root / "hiss" / f"n{i}.wav", burst_in_noise(1.5 + i, 0.0, 0.0, seed=10 + i))
    _write(root / "hiss" / "long.wav", burst_in_noise(25.0, 0.0, 0.0, seed=20))  # three windows, one clip
    return root


def test_known_answers_accuracy_one_diagonal_and_separating_thresholds(known, tiny_encoder, tmp_path):
    from plugins.manager import default_plugins
    from search.core.eval_clips import embed_sample
    from search.core.eval_setup import label_set_variant, parse_label_map, plan_variants
    from search.core.evaluate import clip_scores, evaluate
    from search.sound_index import SoundIndex, load_settings

    settings = load_settings(
        index=tmp_path / "idx", model=str(tiny_encoder.identity.model_id), device="cpu", decode_workers=1
    )
    encoder = CountingBand(tiny_encoder)
    plugins = default_plugins()
    plan = plan_variants(
        parse_label_map('steady="a steady tone", hiss=static'),
        ["This is a sound of {}.", "{}"],
        ["hiss=tone hiss"],  # a phrasing that points the wrong way: ranked last
        ["softmax", "margin"],
        {},
        TEMPLATE,
    )
    variants = [label_set_variant(n, ls, encoder, settings, plugins) for n, ls in plan.label_sets()]
    assert len(variants) == 8
    sample = read_sample(known)
    with SoundIndex.open(settings.index, settings=settings, create=True, encoder=encoder) as sx:
        first = embed_sample(sample, encoder, settings, plugins, store=sx.store)
        assert first.embedded_windows == CountingBand.embedded == 3 + 3 + 3 and first.cached_clips == 0
        CountingBand.embedded = 0
        again = embed_sample(sample, encoder, settings, plugins, store=sx.store)
        assert CountingBand.embedded == 0 and again.embedded_windows == 0 and again.cached_clips == 7
        assert np.array_equal(again.vectors, first.vectors)
    report = evaluate(again, variants, source=str(known), layout=sample.layout)
    assert report.accuracy == 1.0 and report.macro_f1 == 1.0 and report.map == 1.0
    assert report.confusion.matrix == [[3, 0], [0, 4]]  # labels in the order given: steady, hiss
    assert report.misclassified == [] and report.labels == ["steady", "hiss"]
    assert report.variants[-1].texts["hiss"] == "tone hiss" and report.variants[-1].macro_f1 < 1.0
    best = next(v for v in variants if v.name == report.variant)
    scores, _ = clip_scores(again, best)
    hiss = np.array([c.labels[0] == "hiss" for c in again.clips])
    for j, label in enumerate(report.per_label):
        positive = hiss if label.label == "hiss" else ~hiss
        assert scores[positive, j].min() >= label.threshold > scores[~positive, j].max()
    assert report.retrieval.map == 1.0 and report.retrieval.recall_at_10 == 1.0
    assert [p.recall_at_1 for p in report.retrieval.per_label] == pytest.approx([1 / 3, 1 / 4])


# -- the command line: label sets saved and reused, errors ------------------------------------------------
def test_saved_label_set_is_reused_by_classify_file(pipeline_sample, cli_eval, run_cli, tiny_encoder):
    from search.sound_index import classify_file, load_settings

    root, _, _ = pipeline_sample
    report, _, saved = cli_eval
    text = saved.read_text()
    assert 'bell = "a bell ringing"' in text and 'policy = "margin"' in text and "[thresholds]" in text
    thresholds = {p["label"]: p["threshold"] for p in report["per_label"]}
    clip = root / "clips" / "tone1.wav"
    one = run_cli("classify-file", clip, "--label-set", saved, "--json").json
    settings = load_settings(model=str(tiny_encoder.identity.model_id), device="cpu", decode_workers=1)
    plain = classify_file(clip, TEXTS, tiny_encoder, settings, policy="margin")
    assert one["labels"] == CLASSES and one["policy"] == "margin"
    assert list(one["file"]["scores"].values()) == pytest.approx(list(plain.file.scores.values()), abs=1e-6)
    scores = one["file"]["scores"]
    best = max(scores, key=scores.get)
    assert one["file"]["label"] == (best if scores[best] >= thresholds[best] else None)


def test_bad_input_is_one_clear_error(tmp_path, run_cli, pipeline_sample):
    root, manifest, _ = pipeline_sample
    (tmp_path / "empty").mkdir()
    (tmp_path / "cols.csv").write_text("file,label\nx.wav,dog\n")
    cases = [
        (("eval", tmp_path / "empty"), "has no labelled clips"),
        (("eval", tmp_path / "cols.csv"), "unknown column(s) 'file'"),
        (("eval", manifest, "--labels", 'dog="dog barking", cat'), "map none of the sample's classes"),
        (("eval", manifest, "--variant", "owl=hoot"), "--variant names classes that are not labels: owl"),
        (("eval", manifest, "--prompt-template", "no braces"), "prompt_template must contain {}"),
        (("classify-file", manifest, "--label-set", tmp_path / "none.toml"), "no such label set file"),
    ]
    for args, message in cases:
        proc = run_cli(*args, check=False)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, proc.stderr)


def test_label_set_commands_store_list_show_and_remove(open_index, tmp_path):
    from typer.testing import CliRunner

    from search.cli import app
    from search.core.label_set import LabelSet, load_label_set

    sx = open_index()
    index_dir = sx.store.index_dir
    sx.close()
    path = LabelSet(["bearing", "normal"], {"bearing": "轴承异响"}, thresholds={"bearing": 0.61}).save(
        tmp_path / "qa.toml"
    )
    run = CliRunner().invoke
    assert run(app, ["label-set", "add", "qa", str(path), "--index", str(index_dir)]).exit_code == 0
    listed = run(app, ["label-set", "list", "--index", str(index_dir), "--json"])
    assert json.loads(listed.stdout) == {"label_sets": ["qa"]}
    shown = run(app, ["label-set", "show", "qa", "--index", str(index_dir)]).stdout
    (tmp_path / "back.toml").write_text(shown)
    assert load_label_set(tmp_path / "back.toml") == load_label_set(path)
    assert run(app, ["label-set", "remove", "qa", "--index", str(index_dir)]).exit_code == 0
    gone = run(app, ["label-set", "remove", "qa", "--index", str(index_dir)])
    assert gone.exit_code != 0 and "no label set named 'qa'" in str(gone.exception)
    bad = run(app, ["label-set", "add", "no spaces", str(path), "--index", str(index_dir)])
    assert bad.exit_code != 0 and "a label set name is letters" in str(bad.exception)
