"""The provider interface and registry.

Two kinds of providers:

* :class:`ChatProvider` (remote, e.g. ``openai``, ``openai-batch``): given chat requests
  that missed the response cache, it obtains the answer texts and hands each one to a
  callback the moment it arrives (the runner writes it to the cache there, so a kill loses
  at most the requests in flight). Parsing is the runner's job.
* :class:`LocalProvider` (offline, e.g. ``embedded``, ``embedded-knn``): computes priors or
  summaries directly from the clips' metadata.

Adding a provider = one module in ``extract/llm/providers/`` that subclasses one of them
and decorates it with ``@register_provider("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..config import LLMConfig
from ..costs import UsageTally


@dataclass
class ChatRequest:
    """One request: its cache key and its two messages (system, user)."""

    key: str
    messages: list[dict[str, str]]
    kind: str  # "priors" | "summaries"


@dataclass
class ChatResult:
    """What came back for one request: the answer text, or an error reason (text None)."""

    key: str
    text: str | None
    usage: dict[str, int] = field(default_factory=dict)
    error: str = ""  # e.g. "http_500", "timeout", "empty_body" (when text is None)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.text is not None


ResultCallback = Callable[[ChatResult], None]


class Provider:
    """Base of every provider. ``config`` is the resolved :class:`LLMConfig`."""

    name: ClassVar[str] = ""
    remote: ClassVar[bool] = False

    def __init__(self, config: LLMConfig):
        self.config = config

    @property
    def model(self) -> str:
        return self.config.model or ""

    def provenance(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.model}


class ChatProvider(Provider):
    """A provider that answers chat requests (see module docstring)."""

    remote = True
    #: multiply list prices by this (the Batch API is half price)
    price_discount: ClassVar[float] = 1.0

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        self.usage = UsageTally()

    @property
    def api(self) -> str:
        return self.config.api

    def request_options(self, kind: str) -> dict[str, Any]:
        """Options that shape a request besides its messages (part of the cache key)."""
        raise NotImplementedError

    def run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        """Obtain an answer (or a final error) for every request, calling ``on_result`` for each."""
        raise NotImplementedError


@dataclass
class LocalTask:
    """Input of a local provider: the dataset's clips and their metadata."""

    config: LLMConfig
    dataset_root: Path
    ids: list[str]
    title: list[str]
    tags: list[str]
    description: list[str]
    class_texts: list  # list[prompts.ClassText]
    class_source: str
    manifest: Any = None  # the cache.manifest.Manifest the rows come from (all rows, non-targets kept)


@dataclass
class LocalOutput:
    """Output of a local provider. For priors: ``prior`` (N, 23) and ``missing``; for
    summaries: ``text``; ``reason`` says why a row is missing; ``attrs`` adds provenance;
    ``answer`` (optional) the raw answer of each missing row; ``report`` (optional) extra lines
    of the run report, e.g. what an import matched."""

    missing: np.ndarray
    reason: list[str]
    prior: np.ndarray | None = None
    text: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    evaluation_ids: dict[str, list[str]] = field(default_factory=dict)  # split part -> ids to score
    answer: list[str] | None = None
    report: dict[str, Any] = field(default_factory=dict)


class LocalProvider(Provider):
    remote = False

    def priors(self, task: LocalTask) -> LocalOutput:
        raise NotImplementedError(f"provider {self.name!r} does not make priors")

    def summaries(self, task: LocalTask) -> LocalOutput:
        raise NotImplementedError(f"provider {self.name!r} does not make summaries")


_REGISTRY: dict[str, type[Provider]] = {}


def register_provider(name: str) -> Callable[[type[Provider]], type[Provider]]:
    """Class decorator: make a provider available under ``name``."""

    def deco(cls: type[Provider]) -> type[Provider]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"provider {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def import_provider_modules() -> None:
    """Import every provider module of this folder, so that each registers itself (once): adding a
    provider is adding one file here."""
    import importlib
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__package__}.{info.name}")


def available_providers() -> list[str]:
    import_provider_modules()
    return sorted(_REGISTRY)


def build_provider(config: LLMConfig) -> Provider:
    """The provider named by ``config.provider``; unknown names raise listing the known ones."""
    names = available_providers()
    if config.provider not in _REGISTRY:
        raise ValueError(f"unknown LLM provider {config.provider!r}; available: {', '.join(names)}")
    return _REGISTRY[config.provider](config)
