"""``openai``: the official ``openai`` client against any OpenAI-compatible base URL.

* ``api = "responses"`` (``/v1/responses``, what the reference used) or ``"chat"``
  (``/v1/chat/completions``, for servers that only speak that).
* Structured output: a strict JSON schema where the server accepts one; with
  ``structured = "auto"`` a 400 that names the format switches the rest of the run to
  plain JSON (the prompt asks for JSON anyway). Sampling parameters (temperature, top_p,
  seed) go only to models that accept them (not to reasoning models, unless
  ``sampling = "always"``); a 400 naming one of them drops it for the rest of the run.
  What was actually sent is recorded with every cached response.
* Async, at most ``concurrency`` requests in flight, ``timeout`` seconds per request,
  retries with exponential backoff and jitter honouring ``Retry-After`` on 429/5xx,
  timeouts, connection errors and empty or malformed bodies (the client's own retries
  are off so every attempt is counted here).
* A rejected API key (401/403) or an unknown model stops the run at the first such answer:
  the first request goes out alone and the others only once its first attempt is answered,
  so a wrong key or model name costs one request; :attr:`OpenAIProvider.fatal` then holds
  the one line to show.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from typing import Any

from ..config import LLMConfig
from ..costs import normalise_usage
from ..errors import UserError, fatal_message, is_fatal_status
from ..prompts import SCHEMA_NAMES, answer_schema, apply_request_defaults
from ..response_cache import redact
from ..retry import RetryPolicy, is_retryable_status, parse_retry_after
from .base import ChatProvider, ChatRequest, ChatResult, ResultCallback, register_provider

DEFAULT_MODEL = "gpt-5.4-mini"
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
_REASONING_RE = re.compile(r"^(o\d|gpt-5|gpt-oss)", re.IGNORECASE)
_FORMAT_ERR_RE = re.compile(
    r"response_format|json_schema|text\.format|structured output|\bformat\b", re.IGNORECASE
)
_PARAM_NAMES = (
    "temperature",
    "top_p",
    "seed",
    "reasoning_effort",
    "reasoning",
    "max_output_tokens",
    "max_completion_tokens",
)


def is_reasoning_model(model: str) -> bool:
    """Reasoning models (o-series, gpt-5*, gpt-oss) reject sampling parameters."""
    return bool(_REASONING_RE.match(model.split("/")[-1]))


def resolve_base_url(config: LLMConfig) -> str:
    return config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE


def api_key_from_env(base_url: str) -> str:
    """The API key, only ever from ``OPENAI_API_KEY``. Local servers need none ('EMPTY' is sent)."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    if "api.openai.com" in base_url:
        raise UserError(
            "OPENAI_API_KEY is not set: export it in the environment (it is never read from "
            "options or config files)"
        )
    return "EMPTY"


class RequestBuilder:
    """Builds request bodies for one model/API; remembers run-time fallbacks (format, dropped params)."""

    def __init__(self, config: LLMConfig, model: str):
        self.config = config
        self.model = model
        self.api = config.api
        self.structured = "json" if config.structured == "json" else "json_schema"
        self.dropped: set[str] = set()
        self.fallbacks: list[str] = []

    def sends_sampling(self) -> bool:
        s = self.config.sampling
        return s == "always" or (s == "auto" and not is_reasoning_model(self.model))

    def sampling(self) -> dict[str, Any]:
        """Sampling parameters to send (before run-time drops)."""
        out: dict[str, Any] = {}
        if self.sends_sampling():
            for k in ("temperature", "top_p"):
                v = getattr(self.config, k)
                if v is not None:
                    out[k] = v
            if self.config.seed is not None and self.api == "chat":
                out["seed"] = self.config.seed
        return out

    def reasoning_effort(self, kind: str) -> str | None:
        effort = getattr(self.config, f"reasoning_effort_{kind}")
        return effort if effort and is_reasoning_model(self.model) else None

    def key_options(self, kind: str) -> dict[str, Any]:
        """What goes into the cache key besides the messages (the configured request shape)."""
        return {
            "structured": self.config.structured,
            "schema": SCHEMA_NAMES[kind] if self.config.structured != "json" else None,
            "sampling": self.sampling(),
            "reasoning_effort": self.reasoning_effort(kind),
            "max_output_tokens": self.config.max_output_tokens,
        }

    def body(self, kind: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        """Keyword arguments of ``responses.create`` / ``chat.completions.create`` (= the JSON body)."""
        body: dict[str, Any] = {"model": self.model}
        effort = self.reasoning_effort(kind)
        if self.api == "responses":
            body["input"] = [dict(m) for m in messages]
            if self.structured == "json_schema":
                body["text"] = {
                    "format": {
                        "type": "json_schema",
                        "name": SCHEMA_NAMES[kind],
                        "schema": answer_schema(kind),
                        "strict": True,
                    }
                }
            if effort:
                body["reasoning"] = {"effort": effort}
            if self.config.max_output_tokens:
                body["max_output_tokens"] = self.config.max_output_tokens
        else:
            body["messages"] = [dict(m) for m in messages]
            if self.structured == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": SCHEMA_NAMES[kind],
                        "schema": answer_schema(kind),
                        "strict": True,
                    },
                }
            if effort:
                body["reasoning_effort"] = effort
            if self.config.max_output_tokens:
                body["max_completion_tokens"] = self.config.max_output_tokens
        body.update(self.sampling())
        for k in self.dropped:
            body.pop(k, None)
        return body

    def sent_params(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body without messages: what to record next to a response."""
        out = {k: v for k, v in body.items() if k not in ("input", "messages", "text", "response_format")}
        out["structured"] = self.structured
        return out

    def adapt(self, message: str) -> bool:
        """React to a 400 error message: fall back to plain JSON or drop a rejected parameter.
        Returns True if the request should be re-sent right away."""
        msg = message.lower()
        for p in _PARAM_NAMES:
            if p in msg and (
                "unsupported" in msg
                or "not supported" in msg
                or "unrecognized" in msg
                or "unknown" in msg
                or "not allowed" in msg
                or "does not support" in msg
            ):
                names = {"reasoning_effort", "reasoning"} if p.startswith("reasoning") else {p}
                if not names <= self.dropped:
                    self.dropped |= names
                    self.fallbacks.append(f"dropped {'/'.join(sorted(names))}")
                    return True
        if (
            self.structured == "json_schema"
            and self.config.structured == "auto"
            and _FORMAT_ERR_RE.search(message)
        ):
            self.structured = "json"
            self.fallbacks.append("structured output -> plain JSON")
            return True
        return False


# ---------------------------------------------------------------------------- body parsing
class BodyError(ValueError):
    """A 2xx response whose body is empty or not the expected JSON."""


def answer_text(api: str, body: dict[str, Any]) -> str:
    """The model's answer text from a Responses or chat-completions body ('' for a refusal)."""
    if api == "responses":
        if isinstance(body.get("output_text"), str):
            return body["output_text"]
        if "output" not in body:
            raise BodyError("response body has no 'output'")
        parts = []
        for item in body.get("output") or []:
            if isinstance(item, dict) and item.get("type") == "message":
                for c in item.get("content") or []:
                    if (
                        isinstance(c, dict)
                        and c.get("type") in ("output_text", "text")
                        and isinstance(c.get("text"), str)
                    ):
                        parts.append(c["text"])
        return "".join(parts)
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise BodyError("chat completion body has no 'choices'")
    if not choices:
        return ""
    msg = (choices[0] or {}).get("message") or {}
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def decode_body(raw: bytes) -> dict[str, Any]:
    if not raw or not raw.strip():
        raise BodyError("empty_body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BodyError("malformed_body") from None
    if not isinstance(body, dict):
        raise BodyError("malformed_body")
    return body


# ---------------------------------------------------------------------------- provider
@register_provider("openai")
class OpenAIProvider(ChatProvider):
    """Direct requests through ``openai.AsyncOpenAI`` (see module docstring)."""

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        self.builder = RequestBuilder(apply_request_defaults(config), self.model)  # the template's settings
        self.policy = RetryPolicy(
            config.max_retries, config.backoff_base, config.backoff_max, config.max_retry_after
        )
        self.rng = random.Random()
        self.base_url = resolve_base_url(config)
        self.fatal = ""  # set on a rejected key or an unknown model: the run stops
        self._first_answered: asyncio.Event | None = None

    @property
    def model(self) -> str:
        return self.config.model or DEFAULT_MODEL

    def request_options(self, kind: str) -> dict[str, Any]:
        return self.builder.key_options(kind)

    def provenance(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "model": self.model,
            "api": self.api,
            "base_url": redact(self.base_url),
            "structured_effective": self.builder.structured,
            "fallbacks": list(self.builder.fallbacks),
            "dropped_params": sorted(self.builder.dropped),
        }

    def make_client(self):
        import openai

        return openai.AsyncOpenAI(
            api_key=api_key_from_env(self.base_url),
            base_url=self.base_url,
            max_retries=0,
            timeout=self.config.timeout,
        )

    def run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        if requests:
            asyncio.run(self._run(requests, on_result))

    async def _run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        client = self.make_client()
        queue: asyncio.Queue[ChatRequest] = asyncio.Queue()
        for r in requests:
            queue.put_nowait(r)
        first = self._first_answered = asyncio.Event()

        async def worker(i: int) -> None:
            if i > 0:  # the first request goes alone: a wrong key or model costs one request
                await first.wait()
            while not self.fatal:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                on_result(await self.complete(client, req))
                first.set()

        try:
            await asyncio.gather(*(worker(i) for i in range(min(self.config.concurrency, len(requests)))))
        finally:
            first.set()
            await client.close()

    async def _send(self, client, body: dict[str, Any]) -> dict[str, Any]:
        api = client.responses if self.api == "responses" else client.chat.completions
        coro = api.with_raw_response.create(**body, timeout=self.config.timeout)
        raw = await asyncio.wait_for(coro, timeout=self.config.timeout + 5.0)
        return decode_body(raw.http_response.content)

    async def complete(self, client, req: ChatRequest) -> ChatResult:
        """One request with retries; never raises for HTTP/network faults (the result says why)."""
        import openai

        attempt, adaptations, last = 0, 0, ""
        while True:
            retry_after = None
            body = self.builder.body(req.kind, req.messages)
            try:
                self.usage.requests += 1
                data = await self._send(client, body)
                text = answer_text(self.api, data)
                usage = normalise_usage(data.get("usage"))
                self.usage.add_usage(usage)
                self.usage.note_status("ok")
                meta = {
                    "response_id": data.get("id"),
                    "status": data.get("status"),
                    "sent": self.builder.sent_params(body),
                    "attempts": attempt + 1,
                }
                return ChatResult(req.key, text, usage, "", meta)
            except openai.APIStatusError as e:
                status = e.status_code
                last = f"http_{status}"
                self.usage.note_status(last)
                message = redact(getattr(e, "message", "") or str(e))
                fatal = is_fatal_status(status, message, getattr(e, "code", None))
                if fatal:
                    if not self.fatal:
                        self.fatal = fatal_message(
                            fatal, self.base_url, self.model, f"{last}: {message[:200]}"
                        )
                    return ChatResult(req.key, None, error=f"{last}: {message[:300]}")
                # a 400 that made the builder fall back, or one for a body built before another
                # request's fallback (requests in flight when it happened): re-send with the current body
                if (
                    status == 400
                    and adaptations < 4
                    and (self.builder.adapt(message) or self.builder.body(req.kind, req.messages) != body)
                ):
                    adaptations += 1
                    continue
                if not is_retryable_status(status):
                    return ChatResult(req.key, None, error=f"{last}: {message[:300]}")
                retry_after = parse_retry_after(dict(e.response.headers))
            except (TimeoutError, openai.APITimeoutError):
                last = "timeout"
                self.usage.note_status(last)
            except openai.APIConnectionError:
                last = "connection_error"
                self.usage.note_status(last)
            except BodyError as e:
                last = str(e) if str(e) in ("empty_body", "malformed_body") else "malformed_body"
                self.usage.note_status(last)
            if self._first_answered is not None:
                self._first_answered.set()  # the first attempt is answered (not a key/model error)
            delay = self.policy.delay(attempt, retry_after, self.rng)
            if delay is None:
                return ChatResult(req.key, None, error=last)
            attempt += 1
            self.usage.retries += 1
            await asyncio.sleep(delay)
