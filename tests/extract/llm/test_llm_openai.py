"""The `openai` provider end to end (CLI → fake server on 127.0.0.1 → cache → store)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from cache.tables import read_priors, read_summaries
from cache.taxonomy import CLASS_INDEX
from extract.llm.cli import main
from extract.llm.response_cache import ResponseCache

from .conftest import openai_args

FAULTS = {  # sound_id -> (title, tags)
    "1": ("dog barking", "dog, fx-a"),
    "2": ("car passing [[429:1]]", "car, fx-v"),
    "3": ("band [[500]]", "music, m-m"),
    "4": ("band [[503]]", "music, m-si"),
    "5": ("talk [[hang]]", "voice, sp-s"),
    "6": ("cup [[badbody]]", "cup, fx-o"),
    "7": ("cup [[emptybody]]", "cup, fx-h"),
    "8": ("rain [[truncated]]", "rain, fx-n"),
    "9": ("rain [[malformed]]", "rain"),
    "10": ("x [[unknown]]", "x"),
    "11": ("x [[unknownonly]]", "x"),
    "12": ("steps [[other]]", "steps"),
    "13": ("cup [[unnormalised]]", "cup"),
    "14": ("bird [[fenced]]", "bird, fx-a"),
    "15": ("bird [[prose]]", "bird, ss-n"),
    "16": ("void [[empty]]", "void"),
    "17": ("void [[negative]]", "void"),
    "18": ("broken [[always500]]", "x"),
}
REJECTED = {
    "8": "rejected: truncated JSON",
    "9": "rejected: malformed JSON",
    "11": "rejected: no known class labels",
    "12": "rejected: only 'other'",
    "16": "rejected: empty answer",
    "17": "rejected: no positive probability on a known class",
}
FAILED = {"18": "request failed: http_500"}


def _dataset(make_dataset, mrow, faults=FAULTS, sub="d"):
    rows = [
        mrow(i, "fx-o", title, tags, "<p>Recorded with a <b>Zoom</b> H4n.</p>")
        for i, (title, tags) in faults.items()
    ]
    return make_dataset(rows, sub=sub)


def _args(root: Path, server, cache: Path, api: str = "responses", *extra: str) -> list[str]:
    # these tests check the v1 template (test_llm_cpjku.py: cpjku)
    return openai_args(
        "priors",
        root,
        server.base_url,
        cache,
        "--api",
        api,
        "--timeout",
        "0.5",
        "--concurrency",
        "8",
        *extra,
        backoff_base=0.02,
        max_retries=2,
        prompt="v1",
    )


def _all_text_under(path: Path) -> str:
    out = []
    for p in path.rglob("*"):
        if p.is_file():
            out.append(p.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(out)


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_fault_matrix(api, server, make_dataset, mrow, tmp_path, capsys, secret):
    root = _dataset(make_dataset, mrow)
    cache_dir = tmp_path / "cache"
    assert main(_args(root, server, cache_dir, api)) == 3  # a request failed after its retries
    first = capsys.readouterr().out
    assert "FAILED: 1 of 18 request(s) got no answer after their retries" in first
    assert "written with 7 missing row(s) (exit status 3)" in first
    path = "/v1/responses" if api == "responses" else "/v1/chat/completions"
    assert server.count() == server.count(path)

    # retries: each transient fault cost exactly one extra attempt; Retry-After was honoured
    for marker in ("429", "[[500]]", "503", "hang", "badbody", "emptybody"):
        assert server.count(title_contains=marker) == 2, marker
    t429 = [h.t for h in server.hits_for("[[429")]
    assert t429[1] - t429[0] >= 1.0  # Retry-After: 1 (the backoff alone would be ~0.02 s)
    assert server.count(title_contains="always500") == 3  # 1 + max_retries
    for marker in ("dog", "truncated", "other]]", "unknown]]", "fenced"):
        assert server.count(title_contains=marker) == 1

    store = Store(root / "cache.zarr", mode="r")
    ids = [str(i) for i in range(1, 19)]
    prior, missing = read_priors(store, "openai", ids)
    t = store.read_table("llm/priors/openai", ids=ids)
    row = {i: k for k, i in enumerate(ids)}

    def p(i, code):
        return float(prior[row[i], CLASS_INDEX[code]])

    assert p("1", "fx-a") == pytest.approx(0.75) and p("1", "is-p") == pytest.approx(0.25)
    assert p("2", "fx-v") == pytest.approx(0.75)
    assert p("10", "fx-a") == pytest.approx(1.0)  # "Animals" mapped, fx-zz / Dogs / other dropped
    assert p("13", "fx-a") == pytest.approx(0.75) and p("13", "fx-o") == pytest.approx(0.25)
    assert p("14", "fx-a") == pytest.approx(0.75) and p("15", "ss-n") == pytest.approx(0.75)
    expected_missing = set(REJECTED) | set(FAILED)
    assert {i for i in ids if missing[row[i]]} == expected_missing
    assert np.allclose(prior[~missing].sum(1), 1.0) and np.all(prior[missing] == 0)
    for i, reason in {**REJECTED, **FAILED}.items():
        assert str(t["reason"][row[i]]).startswith(reason), (i, t["reason"][row[i]])
    assert str(t["answer"][row["8"]]).startswith('{"labels": [{"label": "fx-n"')  # rejected answer kept
    assert t["answer"][row["1"]] == ""
    attrs = store.attrs("llm/priors/openai")
    assert attrs["prompt_version"] == "prior-v1" and len(attrs["prompt_sha256"]) == 64
    assert attrs["counts"]["failed_by_reason"]["http_500"] == 1
    assert attrs["request_options"]["sampling"] == {"temperature": 0.0}

    # cache: one entry per answered request, holding exactly what the server answered
    cache = ResponseCache(cache_dir)
    assert len(cache.keys()) == 18 - len(FAILED)
    texts = sorted(cache.get(k).text for k in cache.keys())
    assert any("```json" in x for x in texts) and "" in texts

    report = json.loads((root / "llm_reports" / "priors-openai.json").read_text())
    expected = {**REJECTED, **FAILED}
    assert {r["id"] for r in report["rejected"]} == set(expected)
    assert all(r["reason"].startswith(expected[r["id"]]) for r in report["rejected"])
    assert report["report"]["answered"] == 18 - len(expected_missing)
    assert report["report"]["failed_requests"] == 1
    assert (root / "llm_reports" / "priors-openai.toml").read_text().startswith("[llm]\n")

    # second run: everything answered comes from the cache; only the failed request is re-sent
    before = server.count()
    assert main(_args(root, server, cache_dir, api)) == 3
    assert server.count() - before == 3  # always500 (1 + 2 retries)
    out = capsys.readouterr()
    assert "cached 17, sent 1" in out.out

    # the API key never leaks: not in the cache, the store, the reports, or what was printed
    assert secret not in _all_text_under(cache_dir)
    assert secret not in _all_text_under(root)
    assert secret not in out.out + out.err


def test_structured_output_and_sampling_fallbacks(make_dataset, mrow, tmp_path):
    from testkit.fake_llm_server import FakeOpenAIServer

    root = _dataset(make_dataset, mrow, {str(i): (f"clip {i}", "fx-a") for i in range(6)})
    with FakeOpenAIServer(supports_json_schema=False, reject_params=("temperature",)) as srv:
        assert main(_args(root, srv, tmp_path / "c", "chat", "--concurrency", "1")) == 0
        statuses = [h.status for h in srv.hits]
        bodies = [h.body for h in srv.hits]
    assert statuses[:2] == [400, 400] and statuses[2:] == [200] * 6  # two fallbacks, then all fine
    assert "response_format" not in bodies[-1] and "temperature" not in bodies[-1]
    attrs = Store(root / "cache.zarr", mode="r").attrs("llm/priors/openai")
    assert attrs["structured_effective"] == "json"
    assert set(attrs["fallbacks"]) == {"structured output -> plain JSON", "dropped temperature"}
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", [str(i) for i in range(6)])
    assert not missing.any() and np.allclose(prior[:, CLASS_INDEX["fx-a"]], 0.75)


def test_reasoning_models_get_no_sampling_params(server, make_dataset, mrow, tmp_path):
    root = _dataset(make_dataset, mrow, {"1": ("dog", "fx-a")})
    args = _args(root, server, tmp_path / "c")
    args[args.index("test-model")] = "gpt-5-mini"
    assert main(args) == 0
    body = server.hits[0].body
    assert "temperature" not in body and body["reasoning"] == {"effort": "medium"}
    assert body["text"]["format"]["type"] == "json_schema" and body["text"]["format"]["strict"] is True
    assert [m["role"] for m in body["input"]] == ["system", "user"]


def test_summaries_and_bounded_concurrency(make_dataset, mrow, tmp_path):
    from testkit.fake_llm_server import FakeOpenAIServer

    faults = {str(i): (f"rain on roof {i}", "rain") for i in range(12)}
    faults["99"] = ("nothing [[empty]]", "")
    root = _dataset(make_dataset, mrow, faults)
    with FakeOpenAIServer(latency=0.1) as srv:
        args = _args(root, srv, tmp_path / "c", "chat", "--concurrency", "3")
        args[0] = "summaries"
        assert main(args) == 0
        assert srv.max_inflight == 3
    ids = list(faults)
    text, missing = read_summaries(Store(root / "cache.zarr", mode="r"), "openai", ids)
    assert text[0] == "A sound of rain on roof 0." and not missing[:12].any()
    assert missing[12] and text[12] == ""


def test_dry_run_sends_nothing(server, make_dataset, mrow, tmp_path, capsys):
    root = _dataset(make_dataset, mrow, {str(i): (f"clip {i}", "fx-a") for i in range(5)})
    args = _args(root, server, tmp_path / "c", "responses", "--dry-run")
    args[args.index("test-model")] = "gpt-5-mini"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert server.count() == 0 and not (root / "cache.zarr").exists()
    assert "dry run: 5 request(s) to send (0 answered from the cache)" in out
    assert "estimated cost $" in out and "table:gpt-5-mini" in out


def test_missing_key_for_the_openai_api_is_a_clear_error(make_dataset, mrow, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    root = _dataset(make_dataset, mrow, {"1": ("dog", "fx-a")})
    rc = main(
        [
            "priors",
            "--dataset",
            str(root),
            "--provider",
            "openai",
            "--cache-dir",
            str(tmp_path / "c"),
            "--no-progress",
        ]
    )
    assert rc == 2 and "OPENAI_API_KEY is not set" in capsys.readouterr().err
