"""The embedding extraction runner behind ``python -m extract embeddings``: setup, the three run loops
and the summary.

One row per clip of a dataset goes into the table ``embeddings/<backbone>@<hash8>[~<text-source>]``
of the dataset's cache store (a resumable ``cache.row_tables.RowWriter`` table, ``extract.embeddings_table``).
Three kinds of backbones are handled:

* audio backbones (optionally with a text tower): clips are decoded and resampled ahead of the model
  (``extract.decode_loader``), cut into windows that run in batches under ``torch.inference_mode()``
  (float16 autocast on GPU) and are pooled per clip (``extract.window_batches``); columns ``audio``
  [+ ``text``], ``duration``, ``n_windows``;
* text-only encoders (``minilm``): column ``text`` (texts from ``extract.text_sources``);
* precomputed features (``shipped``): read per clip by the decode loader; columns ``audio``, ``text``.

Rows are processed chunk by chunk (clips of a chunk sorted by duration, ``extract.chunks``); a chunk
is written and marked done only when all its rows are decided, so a killed run loses at most the
chunks in flight and a re-run completes only the missing ones. Under ``accelerate launch`` every rank
writes its own chunks (chunk k belongs to rank k % world_size) of the same store (``extract.ranks``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.errors import SchemaError
from cache.manifest import Manifest, load_manifest
from cache.provenance import code_version, now_iso
from cache.row_tables import RowWriter
from cache.schema import FAILED, OK, WARNING
from cache.store import Store

from .audio import duration_seconds
from .backbones.base import Backbone, BackboneConfig, build_backbone
from .chunks import Chunk, check_dtype, open_chunks, rows_in_order
from .config import EmbeddingsConfig, ExtractionError
from .decode_loader import AudioLoader, ClipSource, PrecomputedLoader, iterate_clips, resolve_loader
from .embeddings_table import checkpoint_hash, group_name, open_table, table_attrs, table_columns
from .ranks import Ranks
from .text_sources import check_text_source, texts_for_run
from .window_batches import WindowBatcher
from .windowing import forward_windows

__all__ = ["ExtractionError", "Prepared", "RunSummary", "main", "prepare", "run_embeddings"]

#: what ``write(chunk)`` does: fill the chunk's text column, check its values, write it and mark it done
WriteChunk = Callable[[Chunk], None]


# ---------------------------------------------------------------------------------------------- result
@dataclass
class RunSummary:
    group: str
    store: Path
    n_rows: int
    n_ok: int
    n_failed: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip id, reason), whole table
    # (clip id, warning): embedded, input suspicious
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0  # by this process in this run
    chunks_skipped: int = 0  # already done before this run (all ranks)
    rows_processed: int = 0  # by this process in this run
    seconds: float = 0.0
    world_size: int = 1

    def format(self, max_failures: int = 20) -> str:
        rate = self.rows_processed / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.group} in {self.store}: {self.n_rows} rows, {self.n_ok} ok, {self.n_failed} failed, "
            f"{len(self.warnings)} with warnings; "
            f"this run{f' (rank 0 of {self.world_size})' if self.world_size > 1 else ''}: "
            f"{self.chunks_written} chunk(s) written, {self.chunks_skipped} already done, "
            f"{self.rows_processed} clips in {self.seconds:.1f} s ({rate:.1f} clips/s)"
        ]
        for title, rows in (("failed clips", self.failures), ("clips embedded with warnings", self.warnings)):
            if rows:
                lines.append(f"{title} ({len(rows)}):")
                lines += [f"  {cid}: {text}" for cid, text in rows[:max_failures]]
                if len(rows) > max_failures:
                    lines.append(
                        f"  … and {len(rows) - max_failures} more (all listed by: python -m cache failures "
                        f"--store {self.store})"
                    )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Prepared:
    """Everything the run loops need, built by :func:`prepare`."""

    cfg: EmbeddingsConfig  # resolved: batch_size and num_workers filled in for the device
    manifest: Manifest
    backbone: Backbone
    kind: str  # "audio" (+ text tower), "text" (text-only encoder) or "precomputed" (shipped)
    store: Store
    texts: list[str] | None  # a text tower's input per clip
    group: str
    columns: dict[str, tuple[tuple[int, ...], str]]
    attrs: dict[str, Any]


def run_kind(backbone: Backbone) -> str:
    """``precomputed`` (features read from files), ``audio`` (audio tower [+ text]) or ``text`` (text
    only)."""
    if getattr(backbone, "precomputed", False):
        return "precomputed"
    return "audio" if backbone.spec.audio_dim is not None else "text"


def resolve_auto(cfg: EmbeddingsConfig, backbone: Backbone, device: torch.device) -> EmbeddingsConfig:
    """``cfg`` with the auto settings resolved for ``device``, so the recorded configuration holds them."""
    if not cfg.batch_size:
        cfg = dataclasses.replace(cfg, batch_size=backbone.default_batch_size(device))
    if cfg.num_workers < 0:
        cfg = dataclasses.replace(cfg, num_workers=0 if device.type == "cpu" else 2)
    return dataclasses.replace(cfg, loader=resolve_loader(cfg.loader))


def open_store(path: Path, ranks: Ranks) -> Store:
    """Rank 0 creates the store; the others open it after the barrier."""
    store = Store(path) if ranks.is_main else None
    ranks.barrier()
    return store if store is not None else Store(path)


def prepare(cfg: EmbeddingsConfig, ranks: Ranks, log: Callable[..., None]) -> Prepared:
    """Manifest, backbone (on the device), store, texts and the table's name, columns and attributes."""
    manifest = load_manifest(cfg.dataset, require_audio=False, keep_non_targets=True)
    if manifest.report.errors:
        log(manifest.report.format(max_lines=10))
    torch.manual_seed(int(cfg.seed))  # random-init weights are reproducible (and equal on every rank)
    backbone = build_backbone(
        BackboneConfig(
            name=cfg.backbone,
            variant=cfg.variant,
            checkpoint=cfg.checkpoint,
            tokenizer=cfg.tokenizer,
            allow_missing=tuple(cfg.allow_missing),
            allow_unexpected=tuple(cfg.allow_unexpected),
            random_init=cfg.random_init,
            overrides=dict(cfg.arch),
        )
    )
    backbone.eval().to(ranks.device)
    cfg = resolve_auto(cfg, backbone, ranks.device)
    spec, kind = backbone.spec, run_kind(backbone)
    has_text = spec.text_dim is not None and kind != "precomputed"
    check_text_source(spec.name, has_text, cfg.text_source)
    store = open_store(cfg.store_path, ranks)
    texts, summaries = (
        texts_for_run(manifest, store, cfg.text_source, cfg.summaries) if has_text else (None, None)
    )
    sha = checkpoint_hash(cfg.checkpoint, backbone)
    text_source = cfg.text_source if has_text else None
    group = cfg.group or group_name(spec.name, sha, cfg.random_init, text_source)
    attrs = table_attrs(
        cfg,
        backbone,
        manifest,
        sha=sha,
        summaries=summaries,
        world_size=ranks.world,
        text_source=text_source or ("shipped" if kind == "precomputed" else None),
    )
    return Prepared(
        cfg=cfg,
        manifest=manifest,
        backbone=backbone,
        kind=kind,
        store=store,
        texts=texts,
        group=group,
        columns=table_columns(spec, kind, cfg.dtype),
        attrs=attrs,
    )


# ---------------------------------------------------------------------------------------------- processing
def autocast(device: torch.device, enabled: bool):
    """float16 autocast on a CUDA device when ``enabled``; nothing otherwise."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def chunk_writer(writer: RowWriter, prep: Prepared, device: torch.device) -> WriteChunk:
    """``write(chunk)``: embed the texts of its ok rows (text towers), fail rows the dtype cannot hold,
    write."""
    cfg, backbone, texts = prep.cfg, prep.backbone, prep.texts

    def write(chunk: Chunk) -> None:
        if texts is not None:
            ok = np.flatnonzero(chunk.status == OK)
            if len(ok):
                with torch.inference_mode(), autocast(device, cfg.autocast):
                    emb = backbone.embed_texts([texts[chunk.lo + int(i)] for i in ok], cfg.batch_size)
                chunk.values["text"][ok] = emb
        check_dtype(chunk, cfg.dtype)
        writer.write_chunk(chunk.k, chunk.values, chunk.status, chunk.errors, warnings=chunk.warnings)

    return write


def run_text_only(writer: RowWriter, pending: Sequence[int], write: WriteChunk, bar) -> int:
    """Text-only encoders: every row is ok; the texts are embedded when a chunk is written."""
    n = 0
    for k in pending:
        lo, hi = writer.chunk_range(k)
        chunk = Chunk(k, lo, hi, writer.columns)
        chunk.status[:] = OK
        write(chunk)
        bar.update(hi - lo)
        n += hi - lo
    return n


def _settle(chunks: dict[int, Chunk], k: int, write: WriteChunk) -> None:
    """Write chunk ``k`` once every row of it is decided."""
    if chunks[k].finished:
        write(chunks.pop(k))


def run_precomputed(
    writer: RowWriter,
    pending: Sequence[int],
    write: WriteChunk,
    bar,
    *,
    backbone: Backbone,
    manifest: Manifest,
    num_workers: int,
    loader: str,
) -> int:
    """Precomputed features (``shipped``): each clip's vectors read by the decode loader."""
    chunks = open_chunks(writer, pending)
    source = ClipSource(
        rows_in_order(writer, pending, None),
        PrecomputedLoader(backbone, manifest.root, manifest.ids.tolist()),
    )
    n = 0
    for row, value, err in iterate_clips(source, num_workers, loader):
        k = row // writer.chunk_rows
        if err:
            chunks[k].fail(row, err)
        else:
            chunks[k].set(row, **value)
        n += 1
        bar.update(1)
        _settle(chunks, k, write)
    return n


def run_audio(
    writer: RowWriter,
    pending: Sequence[int],
    write: WriteChunk,
    bar,
    *,
    backbone: Backbone,
    manifest: Manifest,
    cfg: EmbeddingsConfig,
    device: torch.device,
) -> int:
    """Audio backbones: decode (longest clips of a chunk first), window, batch, pool, write by chunk."""
    spec, paths = backbone.spec, manifest.audio_paths
    chunks = open_chunks(writer, pending)
    source = ClipSource(
        rows_in_order(writer, pending, lambda i: duration_seconds(paths[i])),
        AudioLoader(paths, spec.sample_rate),
    )

    def forward(windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, cfg.autocast):
            return forward_windows(backbone, windows, lengths).float().cpu()

    batcher = WindowBatcher(
        forward,
        spec.window_samples,
        spec.padding,
        cfg.batch_size,
        trims_padding=bool(getattr(backbone, "trims_padding", False)),
        min_window_samples=int(getattr(backbone, "min_window_samples", 1)),
        pool=backbone.pool_windows,
    )
    n_done = 0

    def finish(done: list[tuple[int, np.ndarray]]) -> None:
        nonlocal n_done
        for row, pooled in done:
            k = row // writer.chunk_rows
            chunks[k].set(row, audio=pooled)
            n_done += 1
            bar.update(1)
            _settle(chunks, k, write)

    for row, loaded, err in iterate_clips(source, cfg.num_workers, cfg.loader):
        k = row // writer.chunk_rows
        if err:
            chunks[k].fail(row, err)
            n_done += 1
            bar.update(1)
            _settle(chunks, k, write)
            continue
        wave, warning = loaded
        chunks[k].warn(row, warning)
        i = row - chunks[k].lo
        chunks[k].values["duration"][i] = len(wave) / spec.sample_rate
        n_windows, done = batcher.add(row, wave)
        chunks[k].values["n_windows"][i] = n_windows
        finish(done)
    finish(batcher.finish())
    if chunks:
        raise RuntimeError(f"internal error: chunks {sorted(chunks)} were not completed")
    return n_done


# ---------------------------------------------------------------------------------------------- entry point
def summarize(
    writer: RowWriter,
    store: Store,
    group: str,
    *,
    chunks_written: int,
    chunks_skipped: int,
    rows_processed: int,
    seconds: float,
    world_size: int,
) -> RunSummary:
    """Rows ok / failed of the whole table (with every failure's reason and every warning) and this run's
    counts."""
    status = np.asarray(writer.g["status"][...])
    errors = np.asarray(writer.g["error"][...], dtype=object)
    ids = writer.ids
    failed = np.flatnonzero(status == FAILED)
    warned = (
        np.asarray(writer.g[WARNING][...], dtype=object)
        if writer.has_warnings
        else np.array([], dtype=object)
    )
    return RunSummary(
        group=group,
        store=store.path,
        n_rows=writer.n_rows,
        n_ok=int((status == OK).sum()),
        n_failed=len(failed),
        failures=[(str(ids[i]), str(errors[i])) for i in failed],
        warnings=[(str(ids[i]), str(w)) for i, w in enumerate(warned) if w],
        chunks_written=chunks_written,
        chunks_skipped=chunks_skipped,
        rows_processed=rows_processed,
        seconds=seconds,
        world_size=world_size,
    )


def run_embeddings(cfg: EmbeddingsConfig, ranks: Ranks | None = None) -> RunSummary | None:
    """Run one extraction (see the module docstring); the summary on rank 0, None on the other ranks."""
    cfg = cfg.validate()
    ranks = ranks or Ranks(cfg.device)
    log = ranks.logger()
    prep = prepare(cfg, ranks, log)
    cfg, group = prep.cfg, prep.group
    writer, skipped = open_table(
        prep.store,
        group,
        prep.manifest.ids.tolist(),
        prep.columns,
        prep.attrs,
        chunk_rows=cfg.chunk_rows,
        overwrite=cfg.overwrite,
        ranks=ranks,
        log=log,
    )
    pending = writer.pending_chunks(ranks.rank, ranks.world)
    run_chunks = writer.pending_chunks()  # what every rank writes in this run (verified before finalizing)
    if pending and not writer.has_warnings and ranks.is_main and prep.kind == "audio":
        log(
            f"note: {group} was created before the '{WARNING}' column; warnings about suspicious audio "
            "are not recorded (--overwrite recreates the table with it)"
        )
    n_rows = sum(writer.chunk_range(k)[1] - writer.chunk_range(k)[0] for k in pending)
    log(
        f"{group}: {writer.n_rows} clips in {writer.n_chunks} chunk(s); "
        f"{skipped} chunk(s) already done; rank {ranks.rank}/{ranks.world} on {ranks.device}"
    )
    from cache.progress import progress

    bar = progress(
        total=n_rows,
        unit="clip",
        desc=group.removeprefix("embeddings/"),
        enable=bool(cfg.progress and ranks.is_main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    write = chunk_writer(writer, prep, ranks.device)
    t1 = time.perf_counter()
    with bar:
        if prep.kind == "precomputed":
            done = run_precomputed(
                writer,
                pending,
                write,
                bar,
                backbone=prep.backbone,
                manifest=prep.manifest,
                num_workers=cfg.num_workers,
                loader=cfg.loader,
            )
        elif prep.kind == "audio":
            done = run_audio(
                writer,
                pending,
                write,
                bar,
                backbone=prep.backbone,
                manifest=prep.manifest,
                cfg=cfg,
                device=ranks.device,
            )
        else:
            done = run_text_only(writer, pending, write, bar)
    seconds = time.perf_counter() - t1
    ranks.barrier()
    if not ranks.is_main:
        return None
    bad = writer.verify(run_chunks)  # the chunks done before this run were verified when it was opened
    if bad:
        raise SchemaError(f"{group}: chunks {bad} failed verification after writing; re-run to redo them")
    writer.finalize({"finalized": now_iso(), "finalized_by": code_version(), "complete": True})
    return summarize(
        writer,
        prep.store,
        group,
        chunks_written=len(pending),
        chunks_skipped=skipped,
        rows_processed=done,
        seconds=seconds,
        world_size=ranks.world,
    )


def main(argv: Sequence[str]) -> int:
    """``python -m extract embeddings …``: exit 0 when the table is complete (failed clips are listed)."""
    from cache.locks import LockedError
    from cache.manifest import ManifestError

    from .checkpoints import CheckpointError
    from .config import parse_config

    try:
        summary = run_embeddings(parse_config(argv))
    except (
        ExtractionError,
        SchemaError,
        LockedError,
        CheckpointError,
        ManifestError,
        FileNotFoundError,
        KeyError,
        ValueError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only dataset folder without --store, ...
        from cache.errors import describe_os_error

        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    if summary is not None:
        print(summary.format())
    return 0
