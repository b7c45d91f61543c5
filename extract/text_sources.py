"""The texts a text tower embeds: cleaned metadata of the manifest, its tags as keywords, or cached LLM
summaries read from a summaries table (``llm/summaries/<name>``) of the same store (``cache.tables`` owns
those paths)."""

from __future__ import annotations

from cache.manifest import Manifest
from cache.schema import MissingIdsError
from cache.store import Store
from cache.tables import SUMMARIES, read_summaries, summaries_path, table_names

from .config import TEXT_SOURCES, ExtractionError
from .text import clean_metadata, tags_text


def check_text_source(backbone_name: str, has_text_tower: bool, text_source: str | None) -> None:
    """A text tower needs a text source; a backbone without one refuses it."""
    if has_text_tower and text_source is None:
        raise ExtractionError(
            f"backbone {backbone_name} has a text tower: pass --text-source {'|'.join(TEXT_SOURCES)}"
        )
    if not has_text_tower and text_source is not None:
        raise ExtractionError(f"backbone {backbone_name} has no text tower; drop --text-source")


def resolve_summaries(store: Store, name: str | None) -> str:
    """The name of the summaries table to read: ``name`` if the store has it, else the only one there."""
    names = table_names(store, SUMMARIES)
    if name:
        if name not in names:
            raise ExtractionError(
                f"no summaries '{summaries_path(name)}' in {store.path}; it has: "
                f"{', '.join(names) or 'none'} (run: python -m extract summaries …)"
            )
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise ExtractionError(
            f"--text-source summary: no {SUMMARIES}/* table in {store.path}; "
            "run `python -m extract summaries …` first or use --text-source metadata"
        )
    raise ExtractionError(
        f"several summary tables in {store.path} ({', '.join(names)}); choose one with --summaries"
    )


def clip_texts(
    manifest: Manifest, source: str, store: Store | None = None, summaries: str | None = None
) -> list[str]:
    """The text of every clip for a text tower: cleaned metadata, the tags as keywords (``""`` for a clip
    without tags), or the cached LLM summary."""
    if source == "metadata":
        return [
            clean_metadata(t, g, d)
            for t, g, d in zip(manifest.title, manifest.tags, manifest.description, strict=True)
        ]
    if source == "tags":
        return [tags_text(g) for g in manifest.tags]
    try:
        texts, missing = read_summaries(store, summaries, manifest.ids.tolist())
    except MissingIdsError as e:
        raise ExtractionError(f"{summaries_path(summaries)} lacks clips of {manifest.name}: {e}") from None
    if missing.any():
        bad = manifest.ids[missing].tolist()
        more = f" … and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ExtractionError(
            f"{summaries_path(summaries)} has no summary for {len(bad)} clip(s): "
            f"{', '.join(map(str, bad[:20]))}{more}; re-run `python -m extract summaries` "
            "for them or use --text-source metadata"
        )
    return texts


def texts_for_run(
    manifest: Manifest, store: Store, text_source: str, summaries: str | None
) -> tuple[list[str], str | None]:
    """``(texts of every clip, summaries table used or None)`` for ``text_source``."""
    name = resolve_summaries(store, summaries) if text_source == "summary" else None
    return clip_texts(manifest, text_source, store, name), name
