"""Parsing and normalisation of LLM answers into priors and summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cache.taxonomy import CLASS_INDEX, NUM_CLASSES
from extract.llm.parsing import AnswerError, LabelMapper, extract_json, parse_prior, parse_summary


def _p(code: str, prior: np.ndarray) -> float:
    return float(prior[CLASS_INDEX[code]])


def test_array_form_drops_other_and_renormalises():
    r = parse_prior(
        json.dumps(
            [
                {"label": "fx-a", "probability": 0.6},
                {"label": "fx-o", "probability": 0.2},
                {"label": "other", "probability": 0.2},
            ]
        )
    )
    assert r.ok and r.prior.shape == (NUM_CLASSES,) and r.prior.dtype == np.float32
    assert _p("fx-a", r.prior) == pytest.approx(0.75) and _p("fx-o", r.prior) == pytest.approx(0.25)
    assert r.prior.sum() == pytest.approx(1.0)
    assert r.dropped == [("other", "other")]


@pytest.mark.parametrize(
    "text",
    [
        '{"labels": [{"label": "fx-a", "probability": 0.3}, {"label": "ss-n", "probability": 0.1}]}',
        '{"fx-a": 0.3, "ss-n": 0.1}',
        '```json\n[{"label": "fx-a", "probability": 0.3}, {"label": "ss-n", "probability": 0.1}]\n```',
        'Sure! ```\n{"fx-a": 0.3, "ss-n": 0.1}\n``` hope this helps',
        '{"fx-a": 0.3, "ss-n": 0.1}\nThe clip is a dog in a forest.',
        '[["fx-a", 0.3], ["ss-n", "0.1"]]',
        '{"predictions": {"FX-A ": "30%", "ss_n": "10%"}}',
        '[{"class": "Animals", "score": 3}, {"class": "nature", "score": 1}]',
        '[{"label": "fx-a (animals)", "p": 0.3}, {"label": "SS - N", "p": 0.1}]',
    ],
)
def test_accepted_forms_give_the_same_prior(text):
    r = parse_prior(text)
    assert r.ok, r.reason
    assert _p("fx-a", r.prior) == pytest.approx(0.75, abs=1e-6)
    assert _p("ss-n", r.prior) == pytest.approx(0.25, abs=1e-6)


def test_unknown_top_level_non_positive_and_duplicate_labels():
    text = json.dumps(
        [
            {"label": "fx-zz", "probability": 0.5},
            {"label": "fx", "probability": 0.1},
            {"label": "fx-other", "probability": 0.1},
            {"label": "m-m", "probability": -1},
            {"label": "is-p", "probability": 0},
            {"label": "is-s", "probability": "lots"},
            {"label": "sp-s", "probability": 0.2},
            {"label": "Solo speech", "probability": 0.2},
        ]
    )
    r = parse_prior(text)
    assert r.ok
    assert _p("sp-s", r.prior) == pytest.approx(1.0)
    assert sorted(w for _, w in r.dropped) == [
        "non-numeric",
        "non-positive",
        "non-positive",
        "other",
        "top-level",
        "unknown",
    ]


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty answer"),
        ("   ", "empty answer"),
        ('{"labels": [{"label": "other", "probability": 1.0}]}', "only 'other'"),
        (
            '[{"label": "fx-zz", "probability": 0.9}, {"label": "banana", "probability": 0.1}]',
            "no known class labels",
        ),
        (
            '[{"label": "fx-a", "probability": -0.5}, {"label": "fx-o", "probability": 0}]',
            "no positive probability on a known class",
        ),
        ("I cannot tell from this metadata.", "no JSON value found"),
        ("[]", "no (label, probability) entries in the JSON answer"),
    ],
)
def test_unusable_answers_are_missing_with_a_reason(text, reason):
    r = parse_prior(text)
    assert not r.ok and r.prior is None
    assert r.reason == reason


def test_truncated_and_malformed_json_are_told_apart():
    good = json.dumps(
        {"labels": [{"label": "fx-a", "probability": 0.6}, {"label": "fx-o", "probability": 0.4}]}
    )
    cut = parse_prior(good[:40])
    assert not cut.ok and cut.reason.startswith("truncated JSON")
    bad = parse_prior('{"labels": [{"label": "fx-a", probability: 0.6}]}')
    assert not bad.ok and bad.reason.startswith("malformed JSON")
    with pytest.raises(AnswerError):
        extract_json('{"a": 1')


def test_first_json_value_wins_and_prose_after_is_ignored():
    assert extract_json('[1, 2] and then {"x": 3}') == [1, 2]
    assert extract_json('Answer: {"x": [1, {"y": "}"}]} done') == {"x": [1, {"y": "}"}]}


def test_label_mapper_uses_dataset_class_names():
    m = LabelMapper({"fx-el": "Electronic / Design FX"})
    assert m.map("electronic design fx") == ("fx-el", "")
    assert m.map("Sound effects: vehicles") == ("fx-v", "")
    assert m.map("Speech") == (None, "top-level")
    assert m.map(3) == (None, "unknown")


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"summary": "A dog barks twice."}', "A dog barks twice."),
        ('```json\n{"summary": "Rain  on a\\nroof."}\n```', "Rain on a roof."),
        ("A car passes by.", "A car passes by."),
        ('"Birds sing."', "Birds sing."),
    ],
)
def test_summary_forms(text, expected):
    r = parse_summary(text)
    assert r.ok and r.text == expected


@pytest.mark.parametrize("text", ["", '{"summary": ""}', '{"summary": "A sound of', '{"caption_x": "a"}'])
def test_unusable_summaries(text):
    assert not parse_summary(text).ok


def test_plain_summary_with_brackets_stays_text():
    assert (
        parse_summary("A dog barks [twice] near {the} door.").text == "A dog barks [twice] near {the} door."
    )
