"""The content-addressed response cache: keys, atomic entries, corrupt entries, secrets."""

from __future__ import annotations

import json

import pytest

from extract.llm.response_cache import ResponseCache, redact, request_key

BASE = dict(
    provider="openai",
    model="m",
    api="responses",
    prompt_version="prior-v1",
    system_sha256="ab" * 32,
    user="hello",
    options={"temperature": 0.0},
)


@pytest.mark.parametrize(
    "field,value",
    [
        ("provider", "openai-batch"),
        ("model", "m2"),
        ("api", "chat"),
        ("prompt_version", "prior-v2"),
        ("system_sha256", "cd" * 32),
        ("user", "hello!"),
        ("options", {"temperature": 0.2}),
    ],
)
def test_every_component_changes_the_key(field, value):
    assert request_key(**BASE) == request_key(**dict(BASE))
    assert request_key(**{**BASE, field: value}) != request_key(**BASE)


def test_put_get_counts_and_corrupt_entries(tmp_path):
    c = ResponseCache(tmp_path)
    k1, k2 = request_key(**BASE), request_key(**{**BASE, "user": "x"})
    assert c.get(k1) is None
    c.put(k1, '{"fx-a": 1}', {"input_tokens": 5}, {"response_id": "r1"})
    got = c.get(k1)
    assert (got.text, got.usage, got.meta["response_id"]) == ('{"fx-a": 1}', {"input_tokens": 5}, "r1")
    c.path(k2).parent.mkdir(parents=True, exist_ok=True)
    c.path(k2).write_text('{"key": "half-writ')  # a torn file is a miss, never an error
    assert c.get(k2) is None
    assert c.counts() == {"hits": 1, "misses": 2, "writes": 1, "corrupt": 1}
    c.put(k2, "ok")
    assert c.get(k2).text == "ok"
    assert c.keys() == sorted([k1, k2])
    assert not list(tmp_path.glob("**/.tmp-*"))  # no temp files left behind
    with pytest.raises(ValueError):
        c.path("../../etc/passwd")


def test_secrets_never_stored(tmp_path, secret):
    SECRET = secret
    c = ResponseCache(tmp_path)
    k = request_key(**BASE)
    c.put(k, f"echo {SECRET}", meta={"error": f"Bearer {SECRET}", "other": "sk-abcdefghijkl"})
    raw = c.path(k).read_text()
    assert SECRET not in raw and "sk-abcdefghijkl" not in raw
    assert json.loads(raw)["text"] == "echo ***"
    assert redact(f"key={SECRET}") == "key=***"
