"""Content-addressed, crash-safe cache of LLM responses (one JSON file per response).

The key is the sha256 of everything that determines a request: provider, model, API,
prompt version, the messages (system message by hash, user message verbatim) and the
sampling / output-format options. A response is written the moment it arrives, to a
temporary file renamed over ``<dir>/<kk>/<key>.json`` (``os.replace`` is atomic), so a
kill at any moment leaves either no entry or a complete one; a half-written or unreadable
file is treated as a miss and replaced. The cache is shared across runs and datasets
(same metadata + same prompt = same key) and never holds API keys: requests carry no
headers and every stored string is passed through :func:`redact`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.provenance import now_iso

#: environment variable that overrides the default cache folder
CACHE_ENV = "BST_LLM_CACHE"
_KEY_RE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._~+/=\-]+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECRET_ENV = ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "AZURE_OPENAI_API_KEY")


def default_cache_dir() -> Path:
    """``$BST_LLM_CACHE``, else ``$XDG_CACHE_HOME/bst-hac/llm`` (``~/.cache/bst-hac/llm``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bst-hac" / "llm"


def redact(text: Any) -> str:
    """``text`` as str with API keys (from the environment, ``sk-…``, bearer tokens) masked."""
    s = str(text)
    for var in _SECRET_ENV:
        v = os.environ.get(var)
        if v and len(v) >= 4:
            s = s.replace(v, "***")
    return _KEY_RE.sub("***", s)


def redact_obj(obj: Any) -> Any:
    """``obj`` (JSON-like) with :func:`redact` applied to every string in it."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(str(k)): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return redact(str(obj))


_HEADS: dict[str, hashlib._Hash] = {}


def request_key(
    *,
    provider: str,
    model: str,
    api: str,
    prompt_version: str,
    system_sha256: str,
    user: str,
    options: dict[str, Any],
) -> str:
    """The content address of one request (hex sha256)."""
    head = json.dumps(
        {
            "provider": provider,
            "model": model,
            "api": api,
            "prompt_version": prompt_version,
            "system_sha256": system_sha256,
            "options": options,
        },
        sort_keys=True,
        default=str,
    )
    base = _HEADS.get(head)
    if base is None:
        if len(_HEADS) > 64:
            _HEADS.clear()
        base = _HEADS[head] = hashlib.sha256(head.encode() + b"\0")
    h = base.copy()
    h.update(user.encode())
    return h.hexdigest()


@dataclass
class CachedResponse:
    key: str
    text: str  # the model's answer text (possibly unusable: parsing decides)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # request facts, response id, sent params


class ResponseCache:
    """Folder of ``<kk>/<key>.json`` files; counts hits, misses and writes."""

    def __init__(self, directory: str | Path | None = None, fsync: bool = False):
        self.dir = Path(directory) if directory else default_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._dir = str(self.dir)
        self.fsync = fsync
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.corrupt = 0

    def path(self, key: str) -> Path:
        return Path(self._path(key))

    def _path(self, key: str) -> str:
        if not _HEX64.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        return os.path.join(self._dir, key[:2], key + ".json")

    def get(self, key: str) -> CachedResponse | None:
        """The cached response for ``key``, or None (a miss). Corrupt entries count as misses."""
        try:
            with open(self._path(key), "rb") as fh:
                data = json.loads(fh.read())
            resp = CachedResponse(
                key, str(data["text"]), dict(data.get("usage") or {}), dict(data.get("meta") or {})
            )
        except FileNotFoundError:
            self.misses += 1
            return None
        except (ValueError, KeyError, TypeError, OSError):
            self.corrupt += 1
            self.misses += 1
            return None
        self.hits += 1
        return resp

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def put(
        self, key: str, text: str, usage: dict[str, int] | None = None, meta: dict[str, Any] | None = None
    ) -> Path:
        """Store one response atomically (temp file in the same folder, then rename)."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "key": key,
            "created": now_iso(),
            "text": redact(text) if text else "",
            "usage": usage or {},
            "meta": redact_obj(meta or {}),
        }
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, ensure_ascii=False)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.writes += 1
        return p

    def keys(self) -> list[str]:
        """Every complete entry's key (temp files excluded)."""
        return sorted(p.stem for p in self.dir.glob("??/*.json") if not p.name.startswith(".tmp-"))

    def counts(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes, "corrupt": self.corrupt}
