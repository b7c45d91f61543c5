"""Fixtures of the LLM-tier tests: a local fake OpenAI server, a dummy API key, tiny datasets."""

from __future__ import annotations

import pytest

from testkit.bsd_dataset import labelled_row
from testkit.fake_llm_server import FakeOpenAIServer

#: the dummy key every test runs with; it must never show up in caches, stores, reports or errors
SECRET = "sk-test-DUMMYKEY0123456789abcdef"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("BST_LLM_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def server():
    """A fake OpenAI server on 127.0.0.1 (started, stopped after the test)."""
    srv = FakeOpenAIServer(hang_s=10.0, batch_steps=2)
    srv.start()
    yield srv
    srv.stop()


def meta_row(sound_id: str, code: str, title: str, tags: str = "", description: str = "") -> dict[str, str]:
    return labelled_row(sound_id, code, uploader="u", title=title, tags=tags, description=description)


@pytest.fixture
def secret() -> str:
    """The dummy API key set in the environment of every test."""
    return SECRET


@pytest.fixture
def mrow():
    """``mrow(sound_id, code, title, tags="", description="")`` -> one labelled metadata row."""
    return meta_row


def openai_args(
    kind: str, root, base_url: str, cache, *extra: str, model: str = "test-model", **settings
) -> list[str]:
    """``python -m extract priors|summaries`` arguments against a local server: the ``openai`` provider,
    no progress, its own response cache; ``settings`` become ``--set llm.KEY=VALUE``."""
    args = [kind, "--dataset", str(root), "--provider", "openai", "--model", model, "--base-url", base_url]
    args += ["--cache-dir", str(cache), "--no-progress"]
    for key, value in settings.items():
        args += ["--set", f"llm.{key}={value}"]
    return [*args, *extra]
