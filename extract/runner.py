"""The embedding extraction runner behind ``python -m extract embeddings``.

One row per clip of a dataset goes into the table ``embeddings/<backbone>@<hash8>[~<text-source>]``
of the dataset's cache store (a resumable ``cache.store.RowWriter`` table). Three kinds of
backbones are handled:

* audio backbones (optionally with a text tower): clips are decoded with soundfile and
  resampled in DataLoader workers, cut into windows (``extract.windowing``), the windows run
  in batches under ``torch.inference_mode()`` (float16 autocast on GPU) and are pooled per clip;
  columns ``audio`` [+ ``text``], ``duration``, ``n_windows``;
* text-only encoders (``minilm``): column ``text``;
* precomputed features (``shipped``): read per clip in the workers; columns ``audio``, ``text``.

Rows are processed chunk by chunk (clips of a chunk sorted by duration); a chunk is written
and marked done only when all its rows are decided, so a killed run loses at most the chunks
in flight and a re-run completes only the missing ones. Under ``accelerate launch`` every rank
writes its own chunks (chunk k belongs to rank k % world_size) of the same store.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cache.manifest import Manifest, load_manifest
from cache.provenance import base_provenance, code_version, now_iso, sha256_file
from cache.store import FAILED, OK, PENDING, RowWriter, SchemaError, Store

from .audio import AudioDecodeError, duration_seconds, load_audio
from .backbones.base import Backbone, BackboneConfig, build_backbone
from .config import EmbeddingsConfig
from .text import clean_metadata
from .windowing import forward_windows, n_windows, pool_windows, split_windows

PRODUCER = "extract.embeddings"
#: attributes that must match to resume (reopen) an existing table instead of overwriting it
RESUME_KEYS = ("backbone", "variant", "checkpoint_sha256", "random_init", "seed", "text_source", "summaries",
               "manifest_digest", "dtype", "overrides", "window_samples", "padding")


class ExtractionError(RuntimeError):
    """The run cannot start (bad option combination, missing summaries, mismatching table…)."""


# ---------------------------------------------------------------------------------------------- ranks
class Ranks:
    """Rank, world size, device and barrier: accelerate's PartialState under ``accelerate launch``."""

    def __init__(self, device: str = "auto"):
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            cpu = (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
                   or device == "cpu" or not torch.cuda.is_available())
            self.state = PartialState(cpu=cpu)
        self.rank = self.state.process_index if self.state else 0
        self.world = self.state.num_processes if self.state else 1
        if device != "auto":
            self.device = torch.device(device)
        elif self.state is not None:
            self.device = self.state.device
        else:
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


# ---------------------------------------------------------------------------------------------- data
class _ClipSource(torch.utils.data.Dataset):
    """Map-style dataset of (row, clip) in processing order; decoding happens in workers."""

    def __init__(self, rows: Sequence[int], load: Callable[[int], Any]):
        self.rows = list(rows)
        self.load = load

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, Any, str]:
        row = self.rows[i]
        try:
            return row, self.load(row), ""
        except (AudioDecodeError, ValueError, OSError, RuntimeError) as e:
            return row, None, str(e) if isinstance(e, AudioDecodeError) else f"{type(e).__name__}: {e}"


class _AudioLoader:
    def __init__(self, paths: Sequence[Path], sample_rate: int):
        self.paths, self.sample_rate = list(paths), int(sample_rate)

    def __call__(self, row: int) -> torch.Tensor:
        return load_audio(self.paths[row], self.sample_rate)


class _PrecomputedLoader:
    def __init__(self, backbone: Backbone, root: Path, ids: Sequence[str]):
        self.backbone, self.root, self.ids = backbone, root, list(ids)

    def __call__(self, row: int) -> dict[str, np.ndarray]:
        return self.backbone.read_clip(self.root, self.ids[row])


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _iterate_threads(source: _ClipSource, num_workers: int, prefetch: int = 4):
    """Items in order, loaded by a pool of threads (soundfile and torch release the GIL).

    Each decode thread runs torch single-threaded, as DataLoader workers do (torch's thread count is
    per OS thread): otherwise every decode thread opens its own team of intra-op threads next to the
    model's, and on a small CPU the teams stall each other (measured: resampling a 10 s clip took
    25 ms instead of 1 ms on 2 cores).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(num_workers, thread_name_prefix="decode", initializer=torch.set_num_threads,
                            initargs=(1,)) as pool:
        todo = iter(range(len(source)))
        queue = deque(pool.submit(source.__getitem__, i) for _, i in zip(range(num_workers * prefetch), todo))
        while queue:
            item = queue.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                queue.append(pool.submit(source.__getitem__, nxt))
            yield item


def resolve_loader(loader: str, device: torch.device) -> str:
    """The decode loader actually used: ``auto`` means threads.

    Measured (benchmarks/extract_bench.py): DataLoader worker processes were slower than threads on
    a 2-core CPU and slower than decoding in the main process on a 16-core H200 host (moving every
    waveform between processes costs more than it saves); soundfile and torch release the GIL, so
    threads overlap decoding with the model. ``--loader processes`` keeps worker processes.
    """
    if loader != "auto":
        return loader
    return "threads"


def _iterate(source: _ClipSource, num_workers: int, loader: str = "processes"):
    """Items of ``source`` in order: in this process, in DataLoader worker processes, or in threads."""
    if num_workers == 0:
        return (source[i] for i in range(len(source)))
    if loader == "threads":
        return _iterate_threads(source, num_workers)
    return iter(torch.utils.data.DataLoader(source, batch_size=None, shuffle=False, num_workers=num_workers,
                                            collate_fn=_identity, worker_init_fn=_worker_init,
                                            prefetch_factor=4))


# ---------------------------------------------------------------------------------------------- chunks
class _Chunk:
    """Rows of one chunk being filled; written when every row is decided."""

    def __init__(self, k: int, lo: int, hi: int, columns: dict[str, tuple[tuple[int, ...], str]]):
        self.k, self.lo, self.hi = k, lo, hi
        n = hi - lo
        self.values = {c: np.zeros((n, *shape), dtype=np.float32 if c in ("audio", "text", "duration") else dtype)
                       for c, (shape, dtype) in columns.items()}
        self.status = np.full(n, PENDING, dtype=np.uint8)
        self.errors = [""] * n

    def fail(self, row: int, reason: str) -> None:
        i = row - self.lo
        self.status[i] = FAILED
        self.errors[i] = reason
        for v in self.values.values():
            v[i] = 0

    def set(self, row: int, **cols: Any) -> None:
        i = row - self.lo
        for c, v in cols.items():
            self.values[c][i] = v
        self.status[i] = OK

    @property
    def finished(self) -> bool:
        return bool((self.status != PENDING).all())


def _check_dtype(chunk: _Chunk, dtype: str) -> None:
    """Rows whose finite float32 values overflow the stored dtype, or that are not finite, fail."""
    for c in ("audio", "text"):
        if c not in chunk.values:
            continue
        v = chunk.values[c]
        ok = chunk.status == OK
        finite32 = np.isfinite(v).all(axis=1)
        finite_out = np.isfinite(v.astype(dtype)).all(axis=1)
        for i in np.flatnonzero(ok & ~finite32):
            chunk.fail(chunk.lo + int(i), f"non-finite {c} embedding (NaN/inf) from the backbone")
        for i in np.flatnonzero(ok & finite32 & ~finite_out):
            chunk.fail(chunk.lo + int(i), f"{c} embedding overflows {dtype}; extract with --dtype float32")


# ---------------------------------------------------------------------------------------------- result
@dataclass
class RunSummary:
    group: str
    store: Path
    n_rows: int
    n_ok: int
    n_failed: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip id, reason), whole table
    chunks_written: int = 0  # by this process in this run
    chunks_skipped: int = 0  # already done before this run (all ranks)
    rows_processed: int = 0  # by this process in this run
    seconds: float = 0.0
    world_size: int = 1

    def format(self, max_failures: int = 20) -> str:
        rate = self.rows_processed / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{self.group} in {self.store}: {self.n_rows} rows, {self.n_ok} ok, {self.n_failed} failed; "
                 f"this run{f' (rank 0 of {self.world_size})' if self.world_size > 1 else ''}: "
                 f"{self.chunks_written} chunk(s) written, {self.chunks_skipped} already done, "
                 f"{self.rows_processed} clips in {self.seconds:.1f} s ({rate:.1f} clips/s)"]
        if self.failures:
            lines.append(f"failed clips ({len(self.failures)}):")
            lines += [f"  {cid}: {reason}" for cid, reason in self.failures[:max_failures]]
            if len(self.failures) > max_failures:
                lines.append(f"  … and {len(self.failures) - max_failures} more "
                             "(all listed in the store: cache.store.Store.failures())")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- helpers
def checkpoint_hash(cfg: EmbeddingsConfig, backbone: Backbone) -> str | None:
    """sha256 of the loaded weights: the backbone's own record, else the checkpoint file's hash."""
    sha = backbone.provenance().get("checkpoint_sha256")
    if sha:
        return str(sha)
    if cfg.checkpoint is None:
        return None
    path = Path(cfg.checkpoint)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():  # a weights folder (M2D): hash of the sorted files' hashes
        from cache.provenance import sha256_json

        files = sorted(p for p in path.rglob("*") if p.is_file())
        return sha256_json([[str(p.relative_to(path)), sha256_file(p)] for p in files])
    raise ExtractionError(f"checkpoint not found: {path}")


def group_name(backbone: str, sha: str | None, random_init: bool, text_source: str | None) -> str:
    """``embeddings/<backbone>@<hash8>[~<text-source>]``; hash8 is ``none`` (weight-free) or ``random``."""
    hash8 = "random" if random_init else (sha[:8] if sha else "none")
    return f"embeddings/{backbone}@{hash8}" + (f"~{text_source}" if text_source else "")


def resolve_summaries(store: Store, name: str | None) -> str:
    names = [t.removeprefix("llm/summaries/") for t in store.tables("llm/summaries")]
    if name:
        if name not in names:
            raise ExtractionError(f"no summaries 'llm/summaries/{name}' in {store.path}; it has: "
                                  f"{', '.join(names) or 'none'} (run: python -m extract summaries …)")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise ExtractionError(f"--text-source summary: no llm/summaries/* table in {store.path}; "
                              "run `python -m extract summaries …` first or use --text-source metadata")
    raise ExtractionError(f"several summary tables in {store.path} ({', '.join(names)}); choose one with --summaries")


def clip_texts(manifest: Manifest, source: str, store: Store | None = None, summaries: str | None = None) -> list[str]:
    """The text of every clip for a text tower: cleaned metadata, or the cached LLM summary."""
    if source == "metadata":
        return [clean_metadata(t, g, d) for t, g, d in zip(manifest.title, manifest.tags, manifest.description)]
    from cache.features import read_summaries
    from cache.store import MissingIdsError

    try:
        texts, missing = read_summaries(store, summaries, manifest.ids.tolist())
    except MissingIdsError as e:
        raise ExtractionError(f"llm/summaries/{summaries} lacks clips of {manifest.name}: {e}") from None
    if missing.any():
        bad = manifest.ids[missing].tolist()
        more = f" … and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ExtractionError(f"llm/summaries/{summaries} has no summary for {len(bad)} clip(s): "
                              f"{', '.join(map(str, bad[:20]))}{more}; re-run `python -m extract summaries` "
                              "for them or use --text-source metadata")
    return texts


# ---------------------------------------------------------------------------------------------- run
class EmbeddingRun:
    """One extraction run (see the module docstring); ``run()`` returns a RunSummary on rank 0."""

    def __init__(self, cfg: EmbeddingsConfig, ranks: Ranks | None = None):
        self.cfg = cfg.validate()
        self.ranks = ranks or Ranks(cfg.device)
        self.log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if self.ranks.is_main else (lambda *a: None)

    # -- setup --------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.cfg
        self.manifest = load_manifest(cfg.dataset, require_audio=False, keep_non_targets=True)
        if self.manifest.report.errors:
            self.log(self.manifest.report.format(max_lines=10))
        torch.manual_seed(int(cfg.seed))  # random-init weights are reproducible (and equal on every rank)
        self.backbone = build_backbone(BackboneConfig(
            name=cfg.backbone, variant=cfg.variant, checkpoint=cfg.checkpoint, tokenizer=cfg.tokenizer,
            allow_missing=tuple(cfg.allow_missing), allow_unexpected=tuple(cfg.allow_unexpected),
            random_init=cfg.random_init, overrides=dict(cfg.overrides)))
        self.backbone.eval().to(self.ranks.device)
        dev = self.ranks.device  # auto settings are resolved here, so the recorded configuration holds them
        if not cfg.batch_size:
            self.cfg = cfg = dataclasses.replace(cfg, batch_size=self.backbone.default_batch_size(dev))
        if cfg.num_workers < 0:
            self.cfg = cfg = dataclasses.replace(cfg, num_workers=0 if dev.type == "cpu" else 2)
        spec = self.spec = self.backbone.spec
        self.precomputed = bool(getattr(self.backbone, "precomputed", False))
        self.has_audio = spec.audio_dim is not None and not self.precomputed
        self.has_text = spec.text_dim is not None and not self.precomputed
        if self.has_text and cfg.text_source is None:
            raise ExtractionError(f"backbone {spec.name} has a text tower: pass --text-source summary|metadata")
        if not self.has_text and cfg.text_source is not None:
            raise ExtractionError(f"backbone {spec.name} has no text tower; drop --text-source")
        if self.ranks.is_main:  # rank 0 creates the store; the others open it after the barrier
            self.store = Store(cfg.store_path)
        self.ranks.barrier()
        if not self.ranks.is_main:
            self.store = Store(cfg.store_path)
        self.summaries = None
        self.texts: list[str] | None = None
        if self.has_text:
            if cfg.text_source == "summary":
                self.summaries = resolve_summaries(self.store, cfg.summaries)
            self.texts = clip_texts(self.manifest, cfg.text_source, self.store, self.summaries)
        self.sha = checkpoint_hash(cfg, self.backbone)
        self.group = cfg.group or group_name(spec.name, self.sha, cfg.random_init,
                                             cfg.text_source if self.has_text else None)

    def _columns(self) -> dict[str, tuple[tuple[int, ...], str]]:
        cols: dict[str, tuple[tuple[int, ...], str]] = {}
        if self.has_audio or self.precomputed:
            cols["audio"] = ((self.spec.audio_dim,), self.cfg.dtype)
        if self.has_text or self.precomputed:
            cols["text"] = ((self.spec.text_dim,), self.cfg.dtype)
        if self.has_audio:
            cols["duration"] = ((), "float32")
            cols["n_windows"] = ((), "int32")
        return cols

    def _attrs(self) -> dict[str, Any]:
        cfg, spec = self.cfg, self.spec
        return base_provenance(
            PRODUCER, backbone=spec.name, variant=spec.variant,
            checkpoint=str(Path(cfg.checkpoint).resolve()) if cfg.checkpoint else None,
            checkpoint_sha256=self.sha, random_init=bool(cfg.random_init), seed=int(cfg.seed),
            sample_rate=spec.sample_rate, window_seconds=spec.window_seconds, window_samples=spec.window_samples,
            padding=spec.padding, pooling="mean over windows with real samples", front_end=spec.front_end,
            audio_dim=spec.audio_dim, text_dim=spec.text_dim,
            text_source=(cfg.text_source if self.has_text else ("shipped" if self.precomputed else None)),
            summaries=self.summaries, tokenizer=str(cfg.tokenizer) if cfg.tokenizer else None,
            dataset=self.manifest.name, dataset_root=str(self.manifest.root),
            manifest_digest=self.manifest.digest(), n_clips=len(self.manifest), dtype=cfg.dtype,
            overrides=dict(cfg.overrides), spec=spec.as_dict(), backbone_provenance=self.backbone.provenance(),
            config=cfg.as_dict(), world_size=self.ranks.world,
        )

    def _open_table(self) -> tuple[RowWriter, int]:
        """Rank 0 creates/reopens and verifies the table; every rank then opens it."""
        cfg, attrs = self.cfg, self._attrs()
        skipped = 0
        if self.store.has(self.group) and not cfg.overwrite:  # checked on every rank, so all of them stop
            old = self.store.attrs(self.group)
            diff = [k for k in RESUME_KEYS if _norm(old.get(k)) != _norm(attrs.get(k))]
            if diff:
                raise SchemaError(
                    f"table '{self.group}' in {self.store.path} was made with other settings "
                    f"({', '.join(f'{k}: {old.get(k)!r} -> {attrs.get(k)!r}' for k in diff)}); "
                    "pass --overwrite to replace it or --group to write elsewhere")
        self.ranks.barrier()  # every rank has checked before rank 0 touches the table
        if self.ranks.is_main:
            writer = self.store.create_rows(self.group, self.manifest.ids.tolist(), self._columns(),
                                            chunk_rows=cfg.chunk_rows, attrs=attrs, overwrite=cfg.overwrite)
            bad = writer.verify()
            if bad:
                self.log(f"{self.group}: {len(bad)} chunk(s) marked done failed verification and will be redone: {bad}")
            skipped = int(writer.done_mask().sum())
        self.ranks.barrier()
        if not self.ranks.is_main:
            writer = self.store.open_rows(self.group)
        return writer, skipped

    # -- processing ---------------------------------------------------------------------------
    def _autocast(self):
        dev = self.ranks.device
        if dev.type == "cuda" and self.cfg.autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _write(self, writer: RowWriter, chunk: _Chunk) -> None:
        if self.has_text and self.texts is not None:
            ok = np.flatnonzero(chunk.status == OK)
            if len(ok):
                with torch.inference_mode(), self._autocast():
                    emb = self.backbone.embed_texts([self.texts[chunk.lo + int(i)] for i in ok], self.cfg.batch_size)
                chunk.values["text"][ok] = emb
        _check_dtype(chunk, self.cfg.dtype)
        writer.write_chunk(chunk.k, chunk.values, chunk.status, chunk.errors)

    def _rows_in_order(self, writer: RowWriter, pending: list[int], key: Callable[[int], float] | None) -> list[int]:
        rows: list[int] = []
        for k in pending:
            lo, hi = writer.chunk_range(k)
            r = list(range(lo, hi))
            if key is not None:
                r.sort(key=lambda i: -key(i))
            rows += r
        return rows

    def _run_text_only(self, writer: RowWriter, pending: list[int], bar) -> int:
        n = 0
        for k in pending:
            lo, hi = writer.chunk_range(k)
            chunk = _Chunk(k, lo, hi, writer.columns)
            for r in range(lo, hi):
                chunk.status[r - lo] = OK
            self._write(writer, chunk)
            bar.update(hi - lo)
            n += hi - lo
        return n

    def _run_precomputed(self, writer: RowWriter, pending: list[int], bar) -> int:
        chunks = {k: _Chunk(k, *writer.chunk_range(k), writer.columns) for k in pending}
        rows = self._rows_in_order(writer, pending, None)
        source = _ClipSource(rows, _PrecomputedLoader(self.backbone, self.manifest.root, self.manifest.ids.tolist()))
        n = 0
        for row, value, err in _iterate(source, self.cfg.num_workers, resolve_loader(self.cfg.loader, self.ranks.device)):
            k = row // writer.chunk_rows
            if err:
                chunks[k].fail(row, err)
            else:
                chunks[k].set(row, **value)
            n += 1
            bar.update(1)
            if chunks[k].finished:
                self._write(writer, chunks.pop(k))
        return n

    def _run_audio(self, writer: RowWriter, pending: list[int], bar) -> int:
        cfg, spec = self.cfg, self.spec
        paths = self.manifest.audio_paths
        chunks = {k: _Chunk(k, *writer.chunk_range(k), writer.columns) for k in pending}
        rows = self._rows_in_order(writer, pending, lambda i: duration_seconds(paths[i]))
        source = _ClipSource(rows, _AudioLoader(paths, spec.sample_rate))
        # windows waiting for a forward pass: (row, window index, window, real length). Backbones that trim
        # padding get full windows and partial ones in separate queues; partial windows are pooled and run
        # in order of length so each batch is cut to a length close to all of its windows.
        full: list[tuple[int, int, torch.Tensor, int]] = []
        partial: list[tuple[int, int, torch.Tensor, int]] = []
        trims = bool(getattr(self.backbone, "trims_padding", False)) and spec.padding == "zero"
        pool_size = cfg.batch_size * 8
        row_embs: dict[int, list] = {}
        row_lengths: dict[int, torch.Tensor] = {}
        n_done = 0

        def finish_row(row: int) -> None:
            nonlocal n_done
            k = row // writer.chunk_rows
            embs = torch.stack(row_embs.pop(row))
            lengths = row_lengths.pop(row)
            pooled = pool_windows(embs, torch.zeros(len(embs), dtype=torch.long), lengths, 1)[0]
            chunks[k].set(row, audio=pooled.numpy())
            n_done += 1
            bar.update(1)
            if chunks[k].finished:
                self._write(writer, chunks.pop(k))

        min_keep = int(getattr(self.backbone, "min_window_samples", 1))

        def run_batch(batch: list[tuple[int, int, torch.Tensor, int]]) -> None:
            sizes = [b[2].shape[0] for b in batch]
            width = max(max(sizes), min(min_keep, spec.window_samples))
            if all(n == width for n in sizes):
                windows = torch.stack([b[2] for b in batch])
            else:  # zero-pad the short (trimmed) windows to the batch's longest
                windows = torch.zeros(len(batch), width)
                for i, b in enumerate(batch):
                    windows[i, :sizes[i]] = b[2]
            lengths = torch.tensor([b[3] for b in batch], dtype=torch.long)
            with torch.inference_mode(), self._autocast():
                emb = forward_windows(self.backbone, windows, lengths).float().cpu()
            for (row, j, _, _), e in zip(batch, emb):
                row_embs[row][j] = e
            for row in dict.fromkeys(b[0] for b in batch):
                if row in row_embs and all(e is not None for e in row_embs[row]):
                    finish_row(row)

        def flush(queue: list, everything: bool = False) -> None:
            if queue is partial:
                queue.sort(key=lambda b: -b[3])
            while queue and (everything or len(queue) >= cfg.batch_size):
                run_batch(queue[:cfg.batch_size])
                del queue[:cfg.batch_size]
            if everything:
                queue.clear()

        for row, wave, err in _iterate(source, cfg.num_workers, resolve_loader(cfg.loader, self.ranks.device)):
            k = row // writer.chunk_rows
            if err:
                chunks[k].fail(row, err)
                n_done += 1
                bar.update(1)
                if chunks[k].finished:
                    self._write(writer, chunks.pop(k))
                continue
            ws = spec.window_samples
            if trims:  # no padded copy: full windows are views of the wave, partial ones short copies
                W = n_windows(len(wave), ws)
                lengths = torch.clamp(len(wave) - torch.arange(W, dtype=torch.long) * ws, min=0, max=ws)
            else:
                windows, lengths = split_windows(wave, ws, spec.padding)
                W = len(windows)
            lo = chunks[k].lo
            chunks[k].values["duration"][row - lo] = len(wave) / spec.sample_rate
            chunks[k].values["n_windows"][row - lo] = W
            row_embs[row] = [None] * W
            row_lengths[row] = lengths
            for j in range(W):
                n = int(lengths[j])
                if not trims:
                    full.append((row, j, windows[j], n))
                elif n == ws:
                    full.append((row, j, wave[j * ws:(j + 1) * ws], n))
                else:
                    partial.append((row, j, wave[j * ws:j * ws + n].clone(), n))
            if len(full) >= cfg.batch_size:
                flush(full)
            if len(partial) >= pool_size:
                flush(partial, everything=True)
        flush(full, everything=True)
        flush(partial, everything=True)
        if chunks:
            raise RuntimeError(f"internal error: chunks {sorted(chunks)} were not completed")
        return n_done

    # -- entry point --------------------------------------------------------------------------
    def run(self) -> RunSummary | None:
        self._build()
        writer, skipped = self._open_table()
        pending = writer.pending_chunks(self.ranks.rank, self.ranks.world)
        n_rows = sum(writer.chunk_range(k)[1] - writer.chunk_range(k)[0] for k in pending)
        self.log(f"{self.group}: {writer.n_rows} clips in {writer.n_chunks} chunk(s); "
                 f"{skipped} chunk(s) already done; rank {self.ranks.rank}/{self.ranks.world} on {self.ranks.device}")
        from tqdm.auto import tqdm

        bar = tqdm(total=n_rows, unit="clip", desc=self.group.removeprefix("embeddings/"), dynamic_ncols=True,
                   disable=not (self.cfg.progress and self.ranks.is_main), file=sys.stderr)
        t1 = time.perf_counter()
        with bar:
            if self.precomputed:
                done = self._run_precomputed(writer, pending, bar)
            elif self.has_audio:
                done = self._run_audio(writer, pending, bar)
            else:
                done = self._run_text_only(writer, pending, bar)
        seconds = time.perf_counter() - t1
        self.ranks.barrier()
        if not self.ranks.is_main:
            return None
        bad = writer.verify()
        if bad:
            raise SchemaError(f"{self.group}: chunks {bad} failed verification after writing; re-run to redo them")
        writer.finalize({"finalized": now_iso(), "finalized_by": code_version(), "complete": True})
        status = np.asarray(writer.g["status"][...])
        errors = np.asarray(writer.g["error"][...], dtype=object)
        ids = writer.ids
        failed = np.flatnonzero(status == FAILED)
        summary = RunSummary(
            group=self.group, store=self.store.path, n_rows=writer.n_rows, n_ok=int((status == OK).sum()),
            n_failed=len(failed), failures=[(str(ids[i]), str(errors[i])) for i in failed],
            chunks_written=len(pending), chunks_skipped=skipped, rows_processed=done,
            seconds=seconds, world_size=self.ranks.world)
        return summary


def _norm(v: Any) -> Any:
    """Attribute values compared after a JSON round trip (tuples become lists, paths strings)."""
    import json

    return json.loads(json.dumps(v, default=str))


def run_embeddings(cfg: EmbeddingsConfig) -> RunSummary | None:
    """Run one extraction (see :class:`EmbeddingRun`); returns the summary on rank 0, None elsewhere."""
    return EmbeddingRun(cfg).run()


def main(argv: Sequence[str]) -> int:
    """``python -m extract embeddings …``: exit 0 when the table is complete (failed clips are listed)."""
    from cache.locks import LockedError
    from cache.manifest import ManifestError

    from .checkpoints import CheckpointError
    from .config import parse_config

    try:
        summary = run_embeddings(parse_config(argv))
    except (ExtractionError, SchemaError, LockedError, CheckpointError, ManifestError, FileNotFoundError, KeyError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary is not None:
        print(summary.format())
    return 0
