"""The LLM tier's error kinds and how an API error reads in one line.

* :class:`UserError`: something the user can fix (config, API key, model name, input files);
  the command exits 2 with its one line.
* :class:`APIFailure`: the server failed in a way a later re-run may fix (server errors,
  network); the command exits 3 and a re-run continues where this one stopped.
"""

from __future__ import annotations

import re
from typing import Any

from .response_cache import redact

_MODEL_RE = re.compile(
    r"model\b.*\b(does not exist|not found|not exist|unknown|no such|not available"
    r"|do not have access)|(unknown|invalid) model|model_not_found",
    re.IGNORECASE,
)


class UserError(ValueError):
    """A mistake the user can fix; the message names what and what to do (exit 2)."""


class APIFailure(RuntimeError):
    """The API failed; re-running the same command later continues the run (exit 3)."""


def is_fatal_status(status: int | None, message: str, code: Any = None) -> str:
    """``"key"`` for a rejected API key (401/403), ``"model"`` for an unknown model, ``"endpoint"``
    for any other 404 (a wrong base URL or API), else ``""``.

    Such an error repeats for every request, so the run stops at the first one.
    """
    if status in (401, 403):
        return "key"
    if code == "model_not_found" or (status in (400, 404) and _MODEL_RE.search(message or "")):
        return "model"
    if status == 404:
        return "endpoint"
    return ""


def fatal_message(what: str, base_url: str, model: str, detail: str) -> str:
    """The one line for a rejected key or an unknown model."""
    if what == "key":
        return (
            f"the server at {redact(base_url)} rejected the API key ({detail}): check OPENAI_API_KEY "
            "(and --base-url); no further requests were sent"
        )
    if what == "model":
        return (
            f"the server at {redact(base_url)} does not serve model {model!r} ({detail}): check --model "
            "(llm.model); no further requests were sent"
        )
    return (
        f"the server at {redact(base_url)} has no such endpoint ({detail}): check --base-url (it usually "
        "ends in /v1) and --api; no further requests were sent"
    )


def describe_api_error(e: BaseException) -> str:
    """``"POST /v1/files: http_500 <message>"`` for an ``openai`` client error (key masked)."""
    import openai

    where = ""
    request = getattr(e, "request", None)
    if request is not None:
        try:
            where = f"{request.method} {request.url.path}: "
        except AttributeError:
            where = ""
    if isinstance(e, openai.APIStatusError):
        message = getattr(e, "message", "") or str(e)
        what = f"http_{e.status_code} {message}"
    elif isinstance(e, openai.APITimeoutError):
        what = "timeout"
    elif isinstance(e, openai.APIConnectionError):
        what = f"connection error ({getattr(e, '__cause__', None) or e})"
    else:
        what = f"{type(e).__name__}: {e}"
    return " ".join(redact(where + what).split())[:500]
