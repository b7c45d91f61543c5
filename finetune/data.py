"""Data of the fine-tune tier: clips with labels, priors, pseudo-labels and text by id; audio
decoded in DataLoader workers; distributed-correct batch plans.

* :class:`ClipSet`: one dataset part (ids, audio paths, labels, LLM priors, pseudo-labels,
  text), everything joined by clip id from the dataset's cache store.
* :class:`ClipAudio`: a map-style dataset that decodes a clip with soundfile, resamples it to
  the backbone's rate (``extract.audio.load_audio``) and cuts it into windows with the
  backbone's padding policy (``extract.windowing.split_windows``), inside the worker.
* Training plan (:func:`train_plan`): an epoch is a seeded permutation cut into global
  batches; each global batch is split into processes × accumulation micro-batches, so every
  clip is seen exactly once per epoch across all ranks (no padding, no dropped clips). A
  rank whose share of the last, smaller global batch is empty gets a dummy item with weight
  zero, so every rank runs the same number of forward/backward passes.
* Evaluation plan (:func:`eval_plan`): clips sorted by their number of windows and grouped
  into batches of at most ``max_windows`` windows; batch j goes to rank j % world.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from cache.config import ConfigError
from cache.manifest import Manifest
from cache.store import Store
from cache.tables import priors_path, pseudo_labels_path, read_priors, read_summaries, summaries_path
from cache.taxonomy import NUM_CLASSES


@dataclass
class ClipSet:
    """Clips of one dataset (or a part of it) and everything the trainer needs per clip."""

    dataset: str
    ids: np.ndarray  # (N,) object
    paths: list[str]
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    prior: np.ndarray | None = None  # (N, 23) float32
    prior_missing: np.ndarray | None = None  # (N,) bool
    pseudo: np.ndarray | None = None  # (N, 23) float32
    has_pseudo: np.ndarray | None = None  # (N,) bool
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> ClipSet:
        idx = np.asarray(index, dtype=np.int64)
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(
            self,
            ids=self.ids[idx],
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            prior=take(self.prior),
            prior_missing=take(self.prior_missing),
            pseudo=take(self.pseudo),
            has_pseudo=take(self.has_pseudo),
            texts=None if self.texts is None else [self.texts[i] for i in idx],
        )

    def select_ids(self, ids: Sequence[str]) -> ClipSet:
        pos = {str(i): k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if str(i) not in pos]
        if missing:
            raise KeyError(
                f"{len(missing)} id(s) not among the clips of {self.dataset}: "
                f"{', '.join(map(str, missing[:10]))}"
            )
        return self.subset([pos[str(i)] for i in ids])


def read_pseudo_partial(store: Store, name: str, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-labels for ``ids`` from ``pseudo_labels/<name>``; ids without one get zeros and False."""
    table = store.read_table(pseudo_labels_path(name))
    pos = {str(i): k for k, i in enumerate(table.ids)}
    probs = np.zeros((len(ids), NUM_CLASSES), dtype=np.float32)
    has = np.zeros(len(ids), dtype=bool)
    src = np.asarray(table["probs"], dtype=np.float32)
    for k, i in enumerate(ids):
        j = pos.get(str(i))
        if j is not None:
            probs[k], has[k] = src[j], True
    return probs, has


def clip_set(
    manifest: Manifest,
    store: Store | None,
    *,
    prior: str = "",
    summary: str = "",
    text_source: str = "none",
    pseudo_labels: str = "",
) -> ClipSet:
    """All clips of a manifest with priors / text / pseudo-labels read from ``store`` by id."""
    from extract.text import clean_metadata, tags_text

    ids = [str(i) for i in manifest.ids]
    out = ClipSet(
        dataset=manifest.name,
        ids=np.asarray(ids, dtype=object),
        paths=[str(p) for p in manifest.audio_paths],
        labels=np.asarray(manifest.labels, dtype=np.int64),
    )
    need_store = bool(prior) or bool(pseudo_labels) or text_source == "summary"
    if need_store and store is None:
        raise ConfigError(
            f"dataset {manifest.name}: priors, summaries or pseudo-labels are configured but it has no "
            "cache store (set data.*_store, or write the tables first)"
        )
    for key, path, how in (
        ("data.prior", priors_path(prior) if prior else "", "python -m extract priors"),
        (
            "data.summary",
            summaries_path(summary) if text_source == "summary" else "",
            "python -m extract summaries",
        ),
        (
            "data.pseudo_labels",
            pseudo_labels_path(pseudo_labels) if pseudo_labels else "",
            "python -m heads pseudo-labels",
        ),
    ):
        if path and path not in store.tables(path):
            raise ConfigError(f"{key}: no table {path} in {store.path} (make it with `{how}`, or fix {key})")
    if prior:
        out.prior, out.prior_missing = read_priors(store, prior, ids)
    else:
        out.prior_missing = np.ones(len(ids), dtype=bool)
    if pseudo_labels:
        out.pseudo, out.has_pseudo = read_pseudo_partial(store, pseudo_labels, ids)
    else:
        out.has_pseudo = np.zeros(len(ids), dtype=bool)
    if text_source == "summary":
        texts, missing = read_summaries(store, summary, ids)
        if missing.any():
            bad = [ids[i] for i in np.flatnonzero(missing)]
            raise ValueError(
                f"dataset {manifest.name}: {len(bad)} clip(s) have no summary in {summaries_path(summary)}: "
                f"{', '.join(bad[:10])}{' …' if len(bad) > 10 else ''} (re-run the summary job, or use "
                "backbone.text_source = 'metadata')"
            )
        out.texts = texts
    elif text_source == "metadata":
        out.texts = [
            clean_metadata(manifest.title[i], manifest.tags[i], manifest.description[i])
            for i in range(len(ids))
        ]
    elif text_source == "tags":
        # the tag string as keywords, as `python -m extract embeddings --text-source tags`
        out.texts = [tags_text(manifest.tags[i]) for i in range(len(ids))]
    return out


def estimate_windows(paths: Sequence[str], sample_rate: int, window_samples: int) -> np.ndarray:
    """Number of windows of every clip from its file header (for length grouping; unreadable → 1)."""
    out = np.ones(len(paths), dtype=np.int64)
    for k, p in enumerate(paths):
        try:
            info = sf.info(p)
            n = int(np.ceil(info.frames * sample_rate / max(1, info.samplerate)))
            out[k] = max(1, -(-n // window_samples))
        except Exception:  # noqa: BLE001 (decode errors are reported when the clip is read)
            pass
    return out


# ------------------------------------------------------------------------------------------ audio
class ClipAudio(torch.utils.data.Dataset):
    """Decodes clip ``i`` (or ``(i, valid)``) and cuts it into windows; runs in DataLoader workers.

    A clip that fails to decode becomes one window of silence with ``ok=False`` (its id is
    reported by the trainer); nothing else is lost.
    """

    def __init__(self, clips: ClipSet, sample_rate: int, window_samples: int, padding: str):
        self.clips, self.sample_rate, self.window_samples, self.padding = (
            clips,
            sample_rate,
            window_samples,
            padding,
        )

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        from extract.audio import AudioDecodeError, load_audio
        from extract.windowing import split_windows

        i, valid = key if isinstance(key, tuple) else (key, True)
        error = ""
        try:
            wave = load_audio(self.clips.paths[i], self.sample_rate)
        except AudioDecodeError as e:
            wave, error = torch.zeros(self.window_samples), str(e)
        windows, lengths = split_windows(wave, self.window_samples, self.padding)
        return {"index": int(i), "valid": bool(valid), "error": error, "windows": windows, "lengths": lengths}


class Collate:
    """Stacks items into a batch: windows (W, L), lengths (W,), clip_of_window (W,) and per-clip data."""

    def __init__(self, clips: ClipSet):
        self.clips = clips

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        c = self.clips
        idx = np.array([it["index"] for it in items], dtype=np.int64)
        counts = torch.tensor([it["windows"].shape[0] for it in items])
        batch: dict[str, Any] = {
            "index": torch.from_numpy(idx),
            "valid": torch.tensor([it["valid"] for it in items]),
            "errors": [it["error"] for it in items],
            "windows": torch.cat([it["windows"] for it in items]).float(),
            "lengths": torch.cat([it["lengths"] for it in items]),
            "clip_of_window": torch.repeat_interleave(torch.arange(len(items)), counts),
            "labels": torch.from_numpy(c.labels[idx]),
            "prior_missing": torch.from_numpy(np.asarray(c.prior_missing[idx], dtype=bool)),
            "has_pseudo": torch.from_numpy(np.asarray(c.has_pseudo[idx], dtype=bool)),
        }
        batch["prior"] = (
            torch.from_numpy(c.prior[idx]) if c.prior is not None else torch.zeros(len(idx), NUM_CLASSES)
        )
        batch["pseudo"] = (
            torch.from_numpy(c.pseudo[idx]) if c.pseudo is not None else torch.zeros(len(idx), NUM_CLASSES)
        )
        batch["texts"] = [c.texts[i] for i in idx] if c.texts is not None else None
        return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class PlanBatches:
    """A batch sampler whose batches are replaced per epoch (``.batches = [...]``), so one
    DataLoader with persistent workers serves every epoch: its workers start once per run."""

    def __init__(self, batches: list[list[Any]] | None = None):
        self.batches = list(batches or [])

    def __iter__(self):
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: ClipAudio,
    batches: list[list[Any]] | PlanBatches,
    num_workers: int,
    seed: int = 0,
    pin_memory: bool | None = None,
    persistent: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over explicit batches (lists of indices or (index, valid) pairs, or a
    :class:`PlanBatches`).

    It has its own generator, so creating it never draws from torch's global RNG (resuming
    mid-epoch then reproduces the dropout masks of an uninterrupted run). ``persistent``
    keeps the worker processes between iterations (set new ``PlanBatches.batches`` before each).
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=Collate(dataset.clips),
        worker_init_fn=_worker_init if num_workers else None,
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=2 if num_workers else None,
        persistent_workers=bool(persistent and num_workers),
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )


# ------------------------------------------------------------------------------------------ plans
def epoch_batches(n_items: int, global_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Global batches of one epoch: a permutation seeded by (seed, epoch) cut into ``global_batch`` items."""
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n_items)
    return [perm[s : s + global_batch] for s in range(0, n_items, global_batch)]


def micro_batches(batch: np.ndarray, processes: int, accumulation: int, rank: int) -> list[np.ndarray]:
    """This rank's share of one global batch, one array per accumulation step.

    The global batch is split into ``processes × accumulation`` near-equal slots; slot
    ``a·processes + rank`` is the rank's micro-batch for accumulation step ``a``.
    """
    slots = np.array_split(np.asarray(batch), processes * accumulation)
    return [slots[a * processes + rank] for a in range(accumulation)]


@dataclass
class MicroStep:
    batch: int  # index of the global batch in the epoch
    step: int  # accumulation step inside it
    items: np.ndarray  # this rank's clip indices (may be empty)
    global_items: np.ndarray  # all items of the global batch (for loss normalisers)


def train_plan(
    n_items: int,
    global_batch: int,
    processes: int,
    accumulation: int,
    rank: int,
    seed: int,
    epoch: int,
    start_batch: int = 0,
) -> list[MicroStep]:
    """Every micro-step of this rank in an epoch, from global batch ``start_batch`` on."""
    out = []
    for b, gb in enumerate(epoch_batches(n_items, global_batch, seed, epoch)):
        if b < start_batch:
            continue
        for a, items in enumerate(micro_batches(gb, processes, accumulation, rank)):
            out.append(MicroStep(b, a, items, gb))
    return out


def loader_batches(plan: list[MicroStep]) -> list[list[tuple[int, bool]]]:
    """DataLoader batches of a training plan; an empty micro-batch becomes one dummy (invalid) item."""
    out = []
    for m in plan:
        out.append([(int(i), True) for i in m.items] if len(m.items) else [(int(m.global_items[0]), False)])
    return out


def steps_per_epoch(n_items: int, global_batch: int) -> int:
    return max(1, -(-n_items // global_batch))


def eval_batches(n_windows: np.ndarray, max_windows: int) -> list[np.ndarray]:
    """Clips sorted by window count (stable) and grouped into batches of ≤ ``max_windows`` windows."""
    order = np.argsort(np.asarray(n_windows), kind="stable")
    out, cur, total = [], [], 0
    for i in order:
        w = int(n_windows[i])
        if cur and total + w > max_windows:
            out.append(np.asarray(cur, dtype=np.int64))
            cur, total = [], 0
        cur.append(int(i))
        total += w
    if cur:
        out.append(np.asarray(cur, dtype=np.int64))
    return out


def eval_plan(n_windows: np.ndarray, max_windows: int, processes: int, rank: int) -> list[np.ndarray]:
    """This rank's evaluation batches (batch j of :func:`eval_batches` goes to rank j % processes)."""
    return eval_batches(n_windows, max_windows)[rank::processes]


def store_for(root: str | Path, store: str = "") -> Path:
    from cache.store import default_store_path

    return Path(store) if store else default_store_path(root)
