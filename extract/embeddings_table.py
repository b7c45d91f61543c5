"""The embeddings table of one run: its name, columns and provenance attributes, and opening it
(create, or reopen to resume when the recorded settings match)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache.errors import SchemaError
from cache.manifest import Manifest
from cache.provenance import base_provenance, sha256_file
from cache.row_tables import RowWriter
from cache.store import Store

from .backbones.base import Backbone, BackboneSpec
from .config import EmbeddingsConfig, ExtractionError
from .ranks import Ranks

PRODUCER = "extract.embeddings"
#: attributes that must match to resume (reopen) an existing table instead of overwriting it
RESUME_KEYS = (
    "backbone",
    "variant",
    "checkpoint_sha256",
    "random_init",
    "seed",
    "text_source",
    "summaries",
    "manifest_digest",
    "dtype",
    "overrides",
    "window_samples",
    "padding",
)


def checkpoint_hash(checkpoint: Path | None, backbone: Backbone) -> str | None:
    """sha256 of the loaded weights: the backbone's own record, else the checkpoint file's hash."""
    sha = backbone.provenance().get("checkpoint_sha256")
    if sha:
        return str(sha)
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():  # a weights folder (M2D): hash of the sorted files' hashes
        from cache.provenance import sha256_json

        files = sorted(p for p in path.rglob("*") if p.is_file())
        return sha256_json([[str(p.relative_to(path)), sha256_file(p)] for p in files])
    raise ExtractionError(f"checkpoint not found: {path}")


def group_name(backbone: str, sha: str | None, random_init: bool, text_source: str | None) -> str:
    """``embeddings/<backbone>@<hash8>[~<text-source>]``; hash8 is ``none`` (weight-free) or ``random``."""
    from cache.tables import embeddings_path

    return embeddings_path(backbone, "random" if random_init else (sha[:8] if sha else "none"), text_source)


def table_columns(spec: BackboneSpec, kind: str, dtype: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Columns of a ``kind`` run ("audio", "text" or "precomputed"): embeddings in ``dtype`` (+ duration,
    n_windows)."""
    cols: dict[str, tuple[tuple[int, ...], str]] = {}
    if kind in ("audio", "precomputed"):
        cols["audio"] = ((spec.audio_dim,), dtype)
    if kind == "precomputed" or spec.text_dim is not None:
        cols["text"] = ((spec.text_dim,), dtype)
    if kind == "audio":
        cols["duration"] = ((), "float32")
        cols["n_windows"] = ((), "int32")
    return cols


def table_attrs(
    cfg: EmbeddingsConfig,
    backbone: Backbone,
    manifest: Manifest,
    *,
    sha: str | None,
    text_source: str | None,
    summaries: str | None,
    world_size: int,
) -> dict[str, Any]:
    """The provenance attributes of the table (``cfg`` resolved: the auto settings filled in)."""
    spec = backbone.spec
    return base_provenance(
        PRODUCER,
        backbone=spec.name,
        variant=spec.variant,
        checkpoint=str(Path(cfg.checkpoint).resolve()) if cfg.checkpoint else None,
        checkpoint_sha256=sha,
        random_init=bool(cfg.random_init),
        seed=int(cfg.seed),
        sample_rate=spec.sample_rate,
        window_seconds=spec.window_seconds,
        window_samples=spec.window_samples,
        padding=spec.padding,
        pooling=backbone.pooling_description,
        front_end=spec.front_end,
        audio_dim=spec.audio_dim,
        text_dim=spec.text_dim,
        text_source=text_source,
        summaries=summaries,
        tokenizer=str(cfg.tokenizer) if cfg.tokenizer else None,
        dataset=manifest.name,
        dataset_root=str(manifest.root),
        manifest_digest=manifest.digest(),
        n_clips=len(manifest),
        dtype=cfg.dtype,
        overrides=dict(cfg.arch),
        spec=spec.as_dict(),
        backbone_provenance=backbone.provenance(),
        config=cfg.as_dict(),
        world_size=world_size,
    )


def _norm(v: Any) -> Any:
    """Attribute values compared after a JSON round trip (tuples become lists, paths strings)."""
    return json.loads(json.dumps(v, default=str))


def check_resumable(store: Store, group: str, attrs: dict[str, Any]) -> None:
    """SchemaError when the existing table ``group`` was made with other settings (:data:`RESUME_KEYS`)."""
    old = store.attrs(group)
    diff = [k for k in RESUME_KEYS if _norm(old.get(k)) != _norm(attrs.get(k))]
    if diff:
        raise SchemaError(
            f"table '{group}' in {store.path} was made with other settings "
            f"({', '.join(f'{k}: {old.get(k)!r} -> {attrs.get(k)!r}' for k in diff)}); "
            "pass --overwrite to replace it or --group to write elsewhere"
        )


def open_table(
    store: Store,
    group: str,
    ids: list[str],
    columns: dict[str, tuple[tuple[int, ...], str]],
    attrs: dict[str, Any],
    *,
    chunk_rows: int,
    overwrite: bool,
    ranks: Ranks,
    log: Callable[..., None],
) -> tuple[RowWriter, int]:
    """``(writer, chunks already done)``: rank 0 creates/reopens and verifies the table; every rank then opens
    it."""
    skipped = 0
    if store.has(group) and not overwrite:  # checked on every rank, so all of them stop
        check_resumable(store, group, attrs)
    ranks.barrier()  # every rank has checked before rank 0 touches the table
    if ranks.is_main:
        writer = store.create_rows(
            group, ids, columns, chunk_rows=chunk_rows, attrs=attrs, overwrite=overwrite
        )
        bad = writer.verify()
        if bad:
            log(f"{group}: {len(bad)} chunk(s) marked done failed verification and will be redone: {bad}")
        skipped = int(writer.done_mask().sum())
    ranks.barrier()
    if not ranks.is_main:
        writer = store.open_rows(group)
    return writer, skipped
