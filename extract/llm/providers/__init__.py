"""LLM-tier providers: one module per provider, each registering itself by name.

``openai`` (Responses / chat completions, any OpenAI-compatible server), ``openai-batch``
(the OpenAI Batch API), ``embedded`` (offline MiniLM similarity to class descriptions) and
``embedded-knn`` (offline MiniLM nearest labelled training clips).
"""

from .base import (
    ChatProvider,
    ChatRequest,
    ChatResult,
    LocalOutput,
    LocalProvider,
    LocalTask,
    Provider,
    available_providers,
    build_provider,
    register_provider,
)

__all__ = [
    "ChatProvider",
    "ChatRequest",
    "ChatResult",
    "LocalOutput",
    "LocalProvider",
    "LocalTask",
    "Provider",
    "available_providers",
    "build_provider",
    "register_provider",
]
