"""Prediction and scoring over a whole clip set, split across ranks.

Each rank runs its share of length-grouped batches (:func:`finetune.data.eval_plan`) through
the unwrapped model; the per-clip logits are padded to a common count, gathered with
``accelerator.gather_for_metrics`` and put back in clip order, so every rank holds the same
(N, 23) matrix as a single-process evaluation of the same weights.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from cache.metric import HierarchicalScores, hierarchical_scores
from cache.taxonomy import NUM_CLASSES

from .data import ClipAudio, ClipSet, PlanBatches, estimate_windows, eval_batches, make_loader


def window_counts(clips: ClipSet, spec, accelerator=None) -> np.ndarray:
    """Window counts of every clip (read from headers on the main process, shared with the others)."""
    if accelerator is None or accelerator.num_processes == 1:
        return estimate_windows(clips.paths, spec.sample_rate, spec.window_samples)
    from accelerate.utils import broadcast_object_list

    box = [
        estimate_windows(clips.paths, spec.sample_rate, spec.window_samples)
        if accelerator.is_main_process
        else None
    ]
    broadcast_object_list(box, from_process=0)
    return box[0]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "windows": batch["windows"],
        "lengths": batch["lengths"],
        "clip_of_window": batch["clip_of_window"],
        "n_clips": int(batch["index"].shape[0]),
        "prior": batch["prior"],
        "prior_missing": batch["prior_missing"],
        "texts": batch["texts"],
    }


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    clips: ClipSet,
    *,
    accelerator=None,
    n_windows: np.ndarray | None = None,
    max_windows: int = 64,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    desc: str = "predict",
    progress: bool = True,
    loaders: dict[Any, Any] | None = None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Logits (N, 23) float32 of every clip in ``clips`` order, and {clip id: decode error}.

    ``model`` is the unwrapped :class:`finetune.model.FinetuneModel`; with an ``accelerator``
    the work is split over its processes and gathered (every rank gets the full result).
    ``loaders``: a dict in which the DataLoader for ``clips`` is kept with persistent workers
    (the trainer's per-epoch validation reuses it instead of starting workers every epoch).
    """
    spec = model.backbone.spec
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else torch.device(device or "cpu")
    if n_windows is None:
        n_windows = window_counts(clips, spec, accelerator)
    batches = eval_batches(n_windows, max_windows)
    mine = batches[rank::world]
    per_rank = [sum(len(b) for b in batches[r::world]) for r in range(world)]
    plan = [b.tolist() for b in mine]
    if loaders is None:
        loader = make_loader(
            ClipAudio(clips, spec.sample_rate, spec.window_samples, spec.padding), plan, num_workers
        )
    else:
        key = (id(clips), max_windows, num_workers)
        if key not in loaders:
            sampler = PlanBatches()
            loaders[key] = (
                sampler,
                make_loader(
                    ClipAudio(clips, spec.sample_rate, spec.window_samples, spec.padding),
                    sampler,
                    num_workers,
                    persistent=True,
                ),
            )
        sampler, loader = loaders[key]
        sampler.batches = plan
    was_training = model.training
    model.eval()
    idx_parts, logit_parts, errors = [], [], {}
    it = loader
    if progress and rank == 0:
        from cache.progress import progress as progress_bar

        it = progress_bar(loader, desc=desc, unit="batch", leave=False, total=len(mine))
    for batch in it:
        for i, e in zip(batch["index"].tolist(), batch["errors"], strict=True):
            if e:
                errors[str(clips.ids[i])] = e
        batch = to_device(batch, device)
        with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
            logits = model(**model_inputs(batch))
        idx_parts.append(batch["index"].to(device))
        logit_parts.append(logits.float())
    model.train(was_training)
    idx = torch.cat(idx_parts) if idx_parts else torch.zeros(0, dtype=torch.long, device=device)
    logits = torch.cat(logit_parts) if logit_parts else torch.zeros(0, NUM_CLASSES, device=device)
    if world > 1:
        pad = max(per_rank) - idx.shape[0]
        idx = torch.cat([idx, torch.full((pad,), -1, dtype=torch.long, device=device)])
        logits = torch.cat([logits, torch.zeros(pad, NUM_CLASSES, device=device)])
        idx, logits = accelerator.gather_for_metrics((idx, logits))
        from accelerate.utils import gather_object

        for part in gather_object([errors]):
            errors.update(part)
    idx, logits = idx.cpu().numpy(), logits.cpu().numpy()
    keep = idx >= 0
    out = np.full((len(clips), NUM_CLASSES), np.nan, dtype=np.float32)
    out[idx[keep]] = logits[keep]
    covered = np.zeros(len(clips), dtype=bool)
    covered[idx[keep]] = True
    if keep.sum() != len(clips) or not covered.all():
        raise RuntimeError(
            f"prediction of {clips.dataset} covered {int(covered.sum())} of {len(clips)} clips"
        )
    return out, errors


def score(logits: np.ndarray, labels: np.ndarray, never_predicted: str = "zero") -> HierarchicalScores:
    """Hierarchical scores of argmax predictions (labelled clips only)."""
    lab = np.asarray(labels) >= 0
    return hierarchical_scores(
        np.asarray(labels)[lab], np.asarray(logits)[lab].argmax(1), never_predicted=never_predicted
    )


def summary(scores: HierarchicalScores) -> dict[str, float]:
    return {
        "hP": scores.hP,
        "hR": scores.hR,
        "hF": scores.hF,
        "accuracy": scores.accuracy,
        "top_accuracy": scores.top_accuracy,
        "n_items": scores.n_items,
    }
