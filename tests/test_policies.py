"""Each built-in scoring policy's numbers on hand-computed logits, through the registered plugins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.contract import ArchiveStats, LabelTexts, PolicyOptionError
from plugins.manager import build_plugin_manager

LABELS = [LabelTexts("a", ("a",)), LabelTexts("b", ("b",)), LabelTexts("c", ("c",))]
NO_NEGATIVES = np.full((1, 3), -np.inf, dtype=np.float32)


@pytest.fixture(scope="module")
def policies():
    return build_plugin_manager().policies


def score(policies, name, logits, options=None, negative=None, stats=None, labels=LABELS):
    logits = np.asarray(logits, dtype=np.float32)
    negative = np.full(logits.shape, -np.inf, np.float32) if negative is None else np.asarray(negative, np.float32)
    return policies[name].score(
        logits, negative, labels, stats, {"threshold": None, "logit_scale": 10.0, **(options or {})}
    )


def test_softmax_is_exp_over_sum_and_only_the_best_label_fires(policies):
    r = score(policies, "softmax", [[1.0, 2.0, 3.0]])
    total = math.e + math.e**2 + math.e**3
    np.testing.assert_allclose(r.scores[0], [math.e / total, math.e**2 / total, math.e**3 / total], rtol=1e-6)
    np.testing.assert_allclose(r.scores[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)
    assert r.fired.tolist() == [[False, False, True]]
    # shifting every logit changes nothing (stable softmax), huge logits do not overflow
    np.testing.assert_allclose(score(policies, "softmax", [[1001.0, 1002.0, 1003.0]]).scores, r.scores, rtol=1e-6)
    assert score(policies, "softmax", [[1.0, 2.0, 3.0]], {"threshold": 0.7}).fired.tolist() == [[False, False, False]]
    assert score(policies, "softmax", [[1.0, 2.0, 3.0]], {"threshold": {"c": 0.6}}).fired.tolist() == [
        [False, False, True]
    ]


def test_multilabel_sigmoid_with_center_and_per_label_thresholds(policies):
    # logit_scale 10, center 0.25 -> a label scores 0.5 at logit 2.5
    r = score(policies, "multilabel", [[3.0, 2.5, 0.0]])
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))
    np.testing.assert_allclose(r.scores[0], [sig(0.5), 0.5, sig(-2.5)], rtol=1e-6)
    np.testing.assert_allclose(r.scores[0], [0.62245933, 0.5, 0.07585818], rtol=1e-6)
    assert r.fired.tolist() == [[True, True, False]]  # two labels fire on one window
    r = score(policies, "multilabel", [[3.0, 2.5, 0.0]], {"thresholds": {"a": 0.7}})
    assert r.fired.tolist() == [[False, True, False]]
    r = score(policies, "multilabel", [[3.0, 2.5, 0.0]], {"threshold": 0.6, "thresholds": {"c": 0.05}})
    assert r.fired.tolist() == [[True, False, True]]  # b keeps the global 0.6, c has its own
    r = score(policies, "multilabel", [[3.0, 2.5, 0.0]], {"center": {"c": 0.0}, "thresholds": [0.9, 0.9, 0.5]})
    np.testing.assert_allclose(r.scores[0, 2], 0.5, rtol=1e-6)
    assert r.fired.tolist() == [[False, False, True]]
    # no overflow warnings for extreme logits
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        extreme = score(policies, "multilabel", [[1e4, -1e4, 0.0]])
    assert extreme.scores[0, 0] == 1.0 and extreme.scores[0, 1] == 0.0


def test_margin_confidence_is_the_gap_between_best_and_second(policies):
    r = score(policies, "margin", [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], {"min_margin": 0.3})
    total = math.e + math.e**2 + math.e**3
    np.testing.assert_allclose(r.extras["confidence"], [(math.e**3 - math.e**2) / total, 0.0], atol=1e-6)
    np.testing.assert_allclose(r.extras["confidence"][0], 0.42051249, rtol=1e-6)
    assert r.fired.tolist() == [[False, False, True], [False, False, False]]
    assert score(policies, "margin", [[1.0, 2.0, 3.0]], {"min_margin": 0.5}).fired.tolist() == [[False, False, False]]


def test_contrast_penalty_is_weight_times_softplus_of_negative_minus_positive(policies):
    two = LABELS[:2]
    logits, negative = [[2.0, 1.0]], [[3.0, -np.inf]]
    r = score(policies, "contrast", logits, negative=negative, labels=two)
    penalty = math.log1p(math.exp(3.0 - 2.0))  # 1.3132617: only label a has a negative text
    adjusted = np.array([2.0 - penalty, 1.0])
    expected = np.exp(adjusted) / np.exp(adjusted).sum()
    np.testing.assert_allclose(r.scores[0], expected, rtol=1e-6)
    np.testing.assert_allclose(r.scores[0], [0.42231882, 0.57768118], rtol=1e-6)
    assert r.fired.tolist() == [[False, True]]  # "a but not <its negative>" lost to b
    r = score(policies, "contrast", logits, {"weight": 0.5}, negative=negative, labels=two)
    adjusted = np.array([2.0 - 0.5 * penalty, 1.0])
    np.testing.assert_allclose(r.scores[0], np.exp(adjusted) / np.exp(adjusted).sum(), rtol=1e-6)
    # no negatives: exactly softmax
    np.testing.assert_allclose(
        score(policies, "contrast", [[1.0, 2.0, 3.0]]).scores,
        score(policies, "softmax", [[1.0, 2.0, 3.0]]).scores,
        rtol=1e-7,
    )


def test_archive_z_scores_against_each_labels_own_statistics(policies):
    stats = ArchiveStats(
        mean=np.array([1.0, 10.0, 0.0], np.float32), std=np.array([2.0, 0.5, 0.0], np.float32), count=100
    )
    r = score(policies, "archive", [[7.0, 10.5, 0.0]], stats=stats)
    np.testing.assert_allclose(r.scores[0], [(7 - 1) / 2, (10.5 - 10) / 0.5, 0.0], rtol=1e-6)  # std 0 gives z 0
    assert r.fired.tolist() == [[True, False, False]]  # default threshold: z >= 3
    r = score(policies, "archive", [[7.0, 10.5, 0.0]], {"threshold": 1.0}, stats=stats)
    assert r.fired.tolist() == [[True, True, False]]
    with pytest.raises(ValueError, match="archive statistics"):
        score(policies, "archive", [[7.0, 10.5, 0.0]])


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("softmax", {"treshold": 0.3}, "no option 'treshold'"),
        ("multilabel", {"thresholds": {"dog": 0.3}}, "not in the label set: 'dog'"),
        ("multilabel", {"thresholds": [0.3, 0.4]}, "2 values for 3 labels"),
        ("margin", {"min_margin": "high"}, "min_margin must be a number"),
        ("contrast", {"weight": {"a": "x"}}, "weight must be a number"),
    ],
)
def test_bad_options_are_refused_with_a_message_naming_them(policies, name, options, message):
    with pytest.raises(PolicyOptionError, match=message):
        score(policies, name, [[1.0, 2.0, 3.0]], options)


def test_every_builtin_policy_declares_its_options(policies):
    assert set(policies) >= {"softmax", "multilabel", "margin", "contrast", "archive"}
    assert set(policies["multilabel"].option_help) == {"center", "threshold", "thresholds"}
    assert set(policies["margin"].option_help) == {"min_margin", "threshold"}
    assert set(policies["contrast"].option_help) == {"weight", "threshold"}
