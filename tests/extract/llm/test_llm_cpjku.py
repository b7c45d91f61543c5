"""The default prompt template `cpjku`: the reference's rules, formats and request settings."""

from __future__ import annotations

import numpy as np
import pytest

from cache.manifest import load_manifest
from cache.store import Store
from cache.tables import read_priors, read_summaries
from cache.taxonomy import CLASS_INDEX, CLASSES
from extract.llm.cli import main
from extract.llm.config import LLMConfig
from extract.llm.prompts import build_template
from extract.llm.reference_answers import normalise_answer, parse_live_prior

from .conftest import openai_args


def _args(kind, root, server, cache, *extra):
    return openai_args(kind, root, server.base_url, cache, *extra, model="gpt-5.4-mini", backoff_base=0.02)


def test_cpjku_is_the_default_and_v1_stays_available():
    assert LLMConfig().prompt == "cpjku"
    assert build_template("priors").name == "cpjku" and build_template("priors").version == "cpjku-prior-v1"
    assert build_template("summaries", name="v1").version == "summary-v1"
    with pytest.raises(ValueError, match="unknown prompt template 'v9'; available: cpjku, v1"):
        build_template("priors", name="v9")


def test_metadata_is_given_raw_with_a_three_decimal_duration():
    t = build_template("priors")
    msgs = t.messages('Dog "Rex" <b>barks</b>', "dog,bark", "see http://x.org", 3.14159)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"] == (
        'Clip metadata:\n- title="Dog "Rex" <b>barks</b>"\n- tags="dog,bark"\n'
        '- description="see http://x.org"\n- duration=3.142 sec\n'
    )
    assert "duration" not in t.user_message("a", "b", "c", None)
    assert t.messages("x", "", "", 1.0)[0] == msgs[0]  # the instructions are the same for every clip


def test_prior_instructions_list_every_class_and_ask_for_a_json_array():
    system = build_template("priors").system
    for code in CLASSES:
        assert f"- {code}: " in system
    assert "JSON array" in system and '"other"' in system and "most specific" in system
    assert build_template("summaries").class_source == "none"


def test_live_prior_answers_are_read_like_the_reference():
    assert (
        normalise_answer('  [{"label": "fx-a", "probability": 1}] Because it barks.')
        == '[{"label": "fx-a", "probability": 1}]'
    )
    assert normalise_answer("   ") is None
    p = parse_live_prior(
        '[{"label": "fx-a", "probability": 0.6}, {"label": "other", "probability": 0.4}]\nok'
    )
    assert p.ok and p.prior[CLASS_INDEX["fx-a"]] == pytest.approx(1.0)
    assert parse_live_prior('{"labels": []}').reason == "not a JSON list (a JSON dict)"
    assert parse_live_prior("").reason == "empty answer"


def test_prior_requests_use_the_reference_settings(server, make_dataset, mrow, tmp_path):
    root = make_dataset([mrow("1", "fx-a", "dog", "fx-a, dog"), mrow("2", "fx-o", "[[other]] thing")])
    assert main(_args("priors", root, server, tmp_path / "c")) == 0
    body = server.hits[0].body
    assert body["reasoning"] == {"effort": "medium"} and body["max_output_tokens"] == 1024
    assert "text" not in body and "temperature" not in body and "top_p" not in body
    assert body["input"][1]["content"].startswith('Clip metadata:\n- title="')
    store = Store(root / "cache.zarr", mode="r")
    prior, missing = read_priors(store, "openai", ["1", "2"])
    assert missing.tolist() == [False, True]
    assert prior[0, CLASS_INDEX["fx-a"]] == pytest.approx(0.75) and prior[
        0, CLASS_INDEX["is-p"]
    ] == pytest.approx(0.25)
    attrs = store.attrs("llm/priors/openai")
    assert attrs["prompt_template"] == "cpjku" and attrs["prompt_version"] == "cpjku-prior-v1"
    assert attrs["request_options"]["max_output_tokens"] == 1024


def test_summary_requests_use_the_reference_settings_and_keep_empty_answers(
    server, make_dataset, mrow, tmp_path
):
    root = make_dataset([mrow("1", "fx-a", "dog barking"), mrow("2", "fx-o", "nothing [[empty]]")])
    assert main(_args("summaries", root, server, tmp_path / "c")) == 0
    body = server.hits[0].body
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0 and body["max_output_tokens"] == 256
    assert "reasoning" not in body and "text" not in body
    text, missing = read_summaries(Store(root / "cache.zarr", mode="r"), "openai", ["1", "2"])
    assert text == ["A sound of dog barking.", ""] and not missing.any()


def test_explicit_settings_win_over_the_template(server, make_dataset, mrow, tmp_path):
    root = make_dataset([mrow("1", "fx-a", "dog")])
    assert (
        main(
            _args(
                "summaries",
                root,
                server,
                tmp_path / "c",
                "--set",
                "llm.max_output_tokens=64",
                "--set",
                "llm.reasoning_effort_summaries=low",
            )
        )
        == 0
    )
    body = server.hits[0].body
    assert body["max_output_tokens"] == 64 and body["reasoning"] == {"effort": "low"}


def test_text_tower_extraction_accepts_an_empty_summary(make_dataset, mrow):
    from extract.text_sources import clip_texts

    root = make_dataset([mrow("1", "fx-a", "dog"), mrow("2", "fx-o", "x")])
    store = Store(root / "cache.zarr")
    store.write_table(
        "llm/summaries/s",
        ["1", "2"],
        {"text": ["A dog.", ""], "missing": np.array([False, False]), "reason": ["", ""]},
        {"producer": "test"},
    )
    manifest = load_manifest(root, require_audio=False, keep_non_targets=True)
    assert clip_texts(manifest, "summary", store, "s") == ["A dog.", ""]
