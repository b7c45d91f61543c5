"""LLM tier: metadata summaries and class priors, cached, from any OpenAI-compatible endpoint
or offline (MiniLM). See docs/llm.md.

Public API: :func:`run` (one run from a config), :class:`LLMConfig` (the ``[llm]`` section of
:class:`LLMRunConfig`, read by :func:`load_config`), the provider registry
(:func:`available_providers`, :func:`register_provider`), :func:`parse_prior` /
:func:`parse_summary`, :class:`ResponseCache`, :func:`build_template`; the CLI is
:func:`extract.llm.cli.main`.
"""

from __future__ import annotations

from .config import ConfigError, LLMConfig, LLMRunConfig, load_config
from .parsing import LabelMapper, PriorParse, SummaryParse, parse_prior, parse_summary
from .prompts import PROMPT_VERSIONS, PromptTemplate, build_template, class_texts, load_class_texts
from .providers import available_providers, build_provider, register_provider
from .response_cache import ResponseCache, default_cache_dir, redact, request_key


def run(config: LLMConfig):
    """Run one LLM-tier job; returns (exit code, :class:`extract.llm.run_report.RunReport`)."""
    from .runner import Runner

    return Runner(config).run()


__all__ = [
    "ConfigError",
    "LLMConfig",
    "LabelMapper",
    "PROMPT_VERSIONS",
    "PriorParse",
    "PromptTemplate",
    "LLMRunConfig",
    "ResponseCache",
    "SummaryParse",
    "available_providers",
    "build_provider",
    "build_template",
    "class_texts",
    "default_cache_dir",
    "load_class_texts",
    "load_config",
    "parse_prior",
    "parse_summary",
    "redact",
    "register_provider",
    "request_key",
    "run",
]
