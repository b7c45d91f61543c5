"""Trainer on cached features: K head configurations trained together (K = 1 for a single run).

All inputs live on the device as tensors; a batch is an index gather, not a DataLoader.
The recipe (docs/heads.md, "The recipe and its defaults"): AdamW (weight decay 0.01), batch 18,
the reference schedule stepped per update, gradient clipping at norm 1.0, the loss of
:mod:`heads.losses` (class-frequency weighted CE + λ·soft CE to pseudo-labels) in its fused form,
early stopping on validation hF (patience 10) keeping the best epoch.

Every configuration owns random generators seeded with its ``seed``: a ``torch.Generator``
draws the initial weights (through a forked global RNG) and the epoch permutations, and the
dropout masks (on a CPU from :func:`heads.stacked.mask_generator`, on a GPU from the same
``torch.Generator``). Configurations never share random numbers, so a configuration trained
alone gives the same result as inside a search (up to float rounding of the batched matmuls).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from cache.metric import hierarchical_scores
from cache.taxonomy import NUM_CLASSES

from .data import HeadData
from .early_stopping import EarlyStopping
from .losses import class_frequency_weights, item_weights, loss_targets
from .model import FusionHead
from .schedule import schedule_parts, schedule_steps
from .stacked import BatchedAdamW, StackedHeads, mask_generator

#: fields that may differ between the configurations of one stacked run
PER_CONFIG = ("lr", "lam", "weight_decay", "seed")


@dataclass
class TrainConfig:
    """One head training run. Defaults = the reference recipe; the lr default is ours (frozen features)."""

    preset: str = "submitted"
    hidden: int | None = None
    dropout: float = 0.1
    missing_prior: str = "zero"
    lr: float = 1e-3
    lam: float = 0.0  # pseudo-label weight λ
    epochs: int = 30
    batch_size: int = 18
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    decay_start_epoch: float = 1.0
    final_lr: float = 1e-7
    patience: int = 10
    grad_clip: float = 1.0  # 0 = off
    class_weights: bool = True
    seed: int = 0
    never_predicted: str = "zero"
    device: str = "auto"  # "auto" = cuda if available, else cpu

    def head_kwargs(self) -> dict:
        return {"preset": self.preset, "hidden": self.hidden, "dropout": self.dropout,
                "missing_prior": self.missing_prior}

    def shared(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in PER_CONFIG}


@dataclass
class RunResult:
    """Outcome of one configuration: best-epoch weights, validation scores and the curves."""

    config: TrainConfig
    head_config: dict
    state_dict: dict[str, Tensor]
    best_epoch: int
    best_val: dict = field(default_factory=dict)  # hP, hR, hF, accuracy at the best epoch
    history: list[dict] = field(default_factory=list)  # one row per epoch trained
    n_parameters: int = 0

    def head(self) -> FusionHead:
        head = FusionHead(**self.head_config)
        head.load_state_dict(self.state_dict)
        return head.eval()

    def summary(self) -> dict:
        return {"lr": self.config.lr, "lam": self.config.lam, "seed": self.config.seed,
                "best_epoch": self.best_epoch, "epochs_trained": len(self.history), **self.best_val}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_head(in_dim: int, config: TrainConfig, init_state: dict | None = None) -> FusionHead:
    """A FusionHead initialised from ``config.seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = FusionHead(in_dim, NUM_CLASSES, **config.head_kwargs())
    if init_state is not None:
        head.load_state_dict(init_state)
    return head


def _check_compatible(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise ValueError("no configurations to train")
    ref = configs[0].shared()
    for i, c in enumerate(configs[1:], start=1):
        diff = {k for k, v in c.shared().items() if ref[k] != v}
        if diff:
            raise ValueError(f"configuration {i} differs from configuration 0 in {sorted(diff)}; only "
                             f"{', '.join(PER_CONFIG)} may vary within one stacked run")


def _schedule_parts(step: int, steps_per_epoch: int, c: TrainConfig) -> tuple[float, float]:
    """lr(step) = a·base_lr + b·final_lr (same a, b for every configuration of a run): heads.schedule."""
    return schedule_parts(step, *schedule_steps(steps_per_epoch, c.epochs, c.warmup_epochs, c.decay_start_epoch))


@torch.no_grad()
def stacked_logits(stacked: StackedHeads, data: HeadData, chunk: int = 2048) -> Tensor:
    """Evaluation-mode logits (K, N, C) of every head on ``data`` (already on the device)."""
    out = []
    for lo in range(0, len(data), chunk):
        sl = slice(lo, lo + chunk)
        out.append(stacked(data.X[sl], None if data.prior is None else data.prior[sl],
                           None if data.missing is None else data.missing[sl]))
    if not out:
        return torch.zeros(stacked.K, 0, NUM_CLASSES, device=stacked.flat.device)
    return torch.cat(out, dim=1)


#: on a CPU, a run whose step touches fewer (configuration × item × parameter) products than
#: this trains on one thread: its operations are too small to gain from a second thread and
#: waking the thread team costs more than it saves (measured: 1.3× faster for the demo's
#: 55 k-parameter head alone; two threads win from two such heads stacked)
SINGLE_THREAD_WORK = 1_500_000


@contextlib.contextmanager
def _threads_for(configs: Sequence[TrainConfig], dim: int):
    c0 = configs[0]
    if resolve_device(c0.device).type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    with torch.device("meta"):
        n_params = FusionHead(dim, NUM_CLASSES, **c0.head_kwargs()).n_parameters()
    if len(configs) * c0.batch_size * n_params >= SINGLE_THREAD_WORK:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per OS thread (OpenMP), restored below
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_stacked(configs: Sequence[TrainConfig], train: HeadData, val: HeadData | None,
                  init_state: dict | None = None, progress: bool = False, desc: str = "train") -> list[RunResult]:
    """Train ``len(configs)`` heads together; returns one :class:`RunResult` per configuration.

    ``train`` items with label −1 contribute only through their pseudo-label; ``init_state``
    (a FusionHead state dict) starts every configuration from the same weights (stage 3).
    Small runs on a CPU use one thread (see :data:`SINGLE_THREAD_WORK`).
    """
    configs = list(configs)
    _check_compatible(configs)
    with _threads_for(configs, train.dim):
        return _train_stacked(configs, train, val, init_state, progress, desc)


def _train_stacked(configs: list[TrainConfig], train: HeadData, val: HeadData | None,
                   init_state: dict | None, progress: bool, desc: str) -> list[RunResult]:
    c0 = configs[0]
    K = len(configs)
    device = resolve_device(c0.device)
    if len(train) == 0:
        raise ValueError("empty training set")
    if val is not None and len(val) and (val.labels < 0).any():
        raise ValueError("validation items need labels")
    needs_pseudo = any(c.lam > 0 for c in configs)
    if needs_pseudo and train.pseudo is None:
        raise ValueError("λ > 0 needs pseudo-labels on the training data")
    train = train.to(device)
    val = val.to(device) if val is not None else None
    heads = [build_head(train.dim, c, init_state) for c in configs]
    stacked = StackedHeads.from_heads(heads, device)
    gflat, gviews = stacked.grad_buffer()
    opt = BatchedAdamW(stacked.flat, [c.lr for c in configs], [c.weight_decay for c in configs])
    opt.set_grads(gflat)  # the optimizer's gradient views stay bound to this buffer
    gens = [torch.Generator(device=device).manual_seed(int(c.seed)) for c in configs]
    # dropout masks: on a CPU from a faster per-configuration numpy generator
    mask_gens = [mask_generator(c.seed) for c in configs] if device.type == "cpu" else gens
    labelled = train.labels[train.labels >= 0]
    weights = class_frequency_weights(labelled.cpu()).to(device) if (c0.class_weights and len(labelled)) else None
    lam = torch.tensor([c.lam for c in configs], dtype=torch.float32, device=device)
    base_lr = np.array([c.lr for c in configs])
    final_lr = c0.final_lr
    N, B = len(train), c0.batch_size
    spe = math.ceil(N / B)
    W = stacked.dropout_width if c0.dropout > 0 else 0
    # dropout uniforms are drawn per configuration in chunks of whole steps; the chunk length
    # depends only on the head and the batch size, so each generator is consumed the same way
    # whether its configuration trains alone or inside a search
    chunk_steps = max(1, min(spe, (1 << 22) // max(1, B * W))) if W else spe
    use_pseudo = train.pseudo is not None and needs_pseudo
    row_floats = train.dim + (2 * NUM_CLASSES + 3)
    prepermute = K * N * row_floats * 4 <= (256 << 20)
    stoppers = [EarlyStopping(c.patience, "max") for c in configs]
    best = stacked.snapshot()
    histories: list[list[dict]] = [[] for _ in configs]
    best_val: list[dict] = [{} for _ in configs]
    active = np.ones(K, dtype=bool)
    y_val = val.labels.cpu().numpy() if val is not None else None
    step = 0
    clip = c0.grad_clip if c0.grad_clip and c0.grad_clip > 0 else 0.0
    bar = tqdm(range(c0.epochs), desc=desc, disable=not progress, leave=False)

    def take(t: Tensor | None, idx: Tensor) -> Tensor | None:
        return None if t is None else t[idx]

    # per-item inputs prepared once: the prior as the step consumes it, clamped labels, CE weights
    y_all, w_all = item_weights(train.labels, weights)
    qx_all = None
    if stacked.template.uses_prior:
        if train.prior is None:
            raise ValueError(f"head preset {c0.preset!r} fuses an LLM prior but the training data has none")
        qx_all = stacked.prior_inputs(train.prior, train.missing)
    src = {"X": train.X if stacked.template.uses_h else None, "q": qx_all}
    tgt = {"y": y_all, "w": w_all, "pseudo": train.pseudo if use_pseudo else None,
           "has": train.has_pseudo.to(torch.float32) if use_pseudo else None}

    for epoch in bar:
        perms = torch.stack([torch.randperm(N, generator=g, device=device) for g in gens])
        if prepermute:  # one gather per epoch; batches are then slices
            ep = {k: take(v, perms) for k, v in src.items()}
        loss_sum = torch.zeros(K, device=device)
        for c_lo in range(0, spe, chunk_steps):
            c_hi = min(spe, c_lo + chunk_steps)
            item_lo, item_hi = c_lo * B, min(N, c_hi * B)
            masks = None
            if W:
                masks = stacked.dropout_masks_from(mask_gens, item_hi - item_lo)
            # loss targets of the block's batches (they do not depend on the weights)
            idx = perms[:, item_lo:item_hi]
            blk = {k: take(v, idx) for k, v in tgt.items()}
            T, tsum = loss_targets(blk["y"], blk["w"], lam, blk["pseudo"], blk["has"], B, NUM_CLASSES)
            for s in range(c_lo, c_hi):
                lo, hi = s * B, min(N, (s + 1) * B)
                if prepermute:
                    X, q = (None if v is None else v[:, lo:hi] for v in ep.values())
                else:
                    X, q = (take(v, perms[:, lo:hi]) for v in src.values())
                r = slice(lo - item_lo, hi - item_lo)
                losses = stacked.fast_loss_and_grads(X, q, None if masks is None else masks[:, r], T[:, r], tsum[:, r],
                                                     gviews)
                a, bb = _schedule_parts(step, spe, c0)
                opt.set_lr((a * base_lr + bb * final_lr).tolist())
                opt.step(clip_grad_norm=clip)
                loss_sum += losses
                step += 1
        train_loss = (loss_sum / spe).cpu().numpy()
        lr_now = (a * base_lr + bb * final_lr)
        improved = np.zeros(K, dtype=bool)
        if val is not None and len(val):
            preds = stacked_logits(stacked, val).argmax(-1).cpu().numpy()
        for k in range(K):
            if not active[k]:
                continue
            row = {"epoch": epoch, "train_loss": float(train_loss[k]), "lr": float(lr_now[k])}
            if val is not None and len(val):
                sc = hierarchical_scores(y_val, preds[k], c0.never_predicted)
                row.update({"val_hP": sc.hP, "val_hR": sc.hR, "val_hF": sc.hF, "val_accuracy": sc.accuracy})
                if stoppers[k].step(sc.hF, epoch):
                    improved[k] = True
                    best_val[k] = {"hP": sc.hP, "hR": sc.hR, "hF": sc.hF, "accuracy": sc.accuracy}
                if stoppers[k].should_stop:
                    active[k] = False
            else:  # no validation: keep the last epoch
                improved[k] = True
                stoppers[k].best_epoch = epoch
            histories[k].append(row)
        if improved.any():
            stacked.copy_rows_(best, torch.as_tensor(improved, device=device))
        if progress and val is not None and len(val):
            bar.set_postfix(best_hF=f"{max(s.best for s in stoppers):.4f}", active=int(active.sum()))
        if not active.any():
            break
    n_params = stacked.n_parameters_per_head()
    results = []
    for k, c in enumerate(configs):
        sd = stacked.state_dict_from(best[k])
        results.append(RunResult(config=copy.deepcopy(c), head_config=heads[k].config(), state_dict=sd,
                                 best_epoch=int(stoppers[k].best_epoch if stoppers[k].best_epoch is not None else -1),
                                 best_val=best_val[k], history=histories[k], n_parameters=n_params))
    return results


def train_head(config: TrainConfig, train: HeadData, val: HeadData | None, init_state: dict | None = None,
               progress: bool = False) -> RunResult:
    """Train one configuration (a stacked run with K = 1)."""
    return train_stacked([config], train, val, init_state=init_state, progress=progress)[0]


@torch.no_grad()
def predict_logits(results: Sequence[RunResult] | Sequence[FusionHead], data: HeadData,
                   device: str = "auto") -> np.ndarray:
    """Evaluation-mode logits (K, N, C) of trained heads on ``data``."""
    heads = [r.head() if isinstance(r, RunResult) else r for r in results]
    dev = resolve_device(device)
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(heads):
        groups.setdefault(repr(sorted(h.config().items())), []).append(i)
    data = data.to(dev)
    out = np.zeros((len(heads), len(data), NUM_CLASSES), dtype=np.float32)
    for idx in groups.values():
        st = StackedHeads.from_heads([heads[i] for i in idx], dev)
        out[idx] = stacked_logits(st, data).cpu().numpy()
    return out
