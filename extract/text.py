"""Cleaning of Freesound metadata text (title, tags, description), and the keyword text of a tag string."""

from __future__ import annotations

import html
import re

_TAG_RE = re.compile(r"<[^>]+>")
_URL_RE = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")


def strip_html(text: str) -> str:
    """Remove HTML tags and links, unescape entities, collapse whitespace."""
    text = _TAG_RE.sub(" ", text or "")
    text = html.unescape(text)
    text = _URL_RE.sub(" ", text)
    return _WS_RE.sub(" ", text).strip()


def split_tags(tags: str) -> list[str]:
    """Freesound tags come as one string separated by commas or spaces."""
    parts = re.split(r"[,\s]+", tags or "")
    return [p for p in (x.strip() for x in parts) if p]


def tags_text(tags: str | None) -> str:
    """The keyword text of a clip's tag string as the metadata CSV has it: semicolons count as commas,
    the comma-separated tags are stripped, empty ones dropped, and the rest joined by single spaces
    (``"metal; impact, hit"`` -> ``"metal impact hit"``; no tags -> ``""``). The text a LAION-CLAP
    keyword model encodes; nothing else (no HTML stripping, case kept)."""
    parts = (p.strip() for p in (tags or "").replace(";", ",").split(","))
    return " ".join(p for p in parts if p)


def clean_metadata(title: str, tags: str, description: str, max_chars: int = 1000) -> str:
    """One cleaned line: ``title. Tags: a, b, c. description`` (HTML and links stripped, capped)."""
    parts = []
    t = strip_html(title)
    if t:
        parts.append(t.rstrip(".") + ".")
    tg = split_tags(strip_html(tags))
    if tg:
        parts.append("Tags: " + ", ".join(tg) + ".")
    d = strip_html(description)
    if d:
        parts.append(d)
    return " ".join(parts)[:max_chars].strip()
