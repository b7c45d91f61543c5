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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from cache.metric import hierarchical_scores
from cache.progress import progress as progress_bar
from cache.taxonomy import NUM_CLASSES

from .batched_adamw import BatchedAdamW
from .data import HeadData
from .early_stopping import EarlyStopping
from .losses import class_frequency_weights, item_weights, loss_targets
from .model import FusionHead
from .schedule import schedule_parts, schedule_steps
from .stacked import StackedHeads, mask_generator

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
        return {
            "preset": self.preset,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "missing_prior": self.missing_prior,
        }

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
    stopped_by: str = (
        ""  # "early-stopping", "halving" (successive halving dropped it) or "" (ran every epoch)
    )

    def head(self) -> FusionHead:
        head = FusionHead(**self.head_config)
        head.load_state_dict(self.state_dict)
        return head.eval()

    def summary(self) -> dict:
        return {
            "lr": self.config.lr,
            "lam": self.config.lam,
            "seed": self.config.seed,
            "best_epoch": self.best_epoch,
            "epochs_trained": len(self.history),
            "stopped_by": self.stopped_by,
            **self.best_val,
        }


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
            raise ValueError(
                f"configuration {i} differs from configuration 0 in {sorted(diff)}; only "
                f"{', '.join(PER_CONFIG)} may vary within one stacked run"
            )


@torch.no_grad()
def stacked_logits(stacked: StackedHeads, data: HeadData, chunk: int = 2048) -> Tensor:
    """Evaluation-mode logits (K, N, C) of every head on ``data`` (already on the device)."""
    out = []
    for lo in range(0, len(data), chunk):
        sl = slice(lo, lo + chunk)
        out.append(
            stacked(
                data.X[sl],
                None if data.prior is None else data.prior[sl],
                None if data.missing is None else data.missing[sl],
            )
        )
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


def train_stacked(
    configs: Sequence[TrainConfig],
    train: HeadData,
    val: HeadData | None,
    init_state: dict | None = None,
    progress: bool = False,
    desc: str = "train",
    shrink: bool = True,
) -> list[RunResult]:
    """Train ``len(configs)`` heads together; returns one :class:`RunResult` per configuration.

    ``train`` items with label −1 contribute only through their pseudo-label; ``init_state``
    (a FusionHead state dict) starts every configuration from the same weights (stage 3).
    A configuration that early-stops leaves the stack (``shrink=False`` keeps updating it
    unrecorded until the last one stops, the former behaviour: for benchmarks).
    Small runs on a CPU use one thread (see :data:`SINGLE_THREAD_WORK`).
    """
    run = StackedRun(configs, train, val, init_state, progress=progress, desc=desc, shrink=shrink)
    run.run_to(run.epochs)
    return run.results()


class StackedRun:
    """K configurations in training, advanced epoch by epoch (:meth:`run_to`), so that a search can
    pause them, compare them and stop some (:meth:`stop`, successive halving).

    Only the configurations still training are in the stack: when one stops (early stopping or
    :meth:`stop`), its row leaves the weights, gradients and AdamW moments before the next epoch,
    so an epoch costs what its remaining configurations cost. Each configuration consumes only its
    own random generators (shuffles, dropout masks) and its rows of every buffer, so removing
    others does not change it. Each history row records ``stacked``: the configurations trained
    together in that epoch.
    """

    def __init__(
        self,
        configs: Sequence[TrainConfig],
        train: HeadData,
        val: HeadData | None,
        init_state: dict | None = None,
        progress: bool = False,
        desc: str = "train",
        shrink: bool = True,
    ):
        configs = list(configs)
        _check_compatible(configs)
        c0 = configs[0]
        self.configs, self.K, self.shrink = configs, len(configs), shrink
        self.epochs, self.epoch, self.step = c0.epochs, 0, 0
        self.device = device = resolve_device(c0.device)
        if len(train) == 0:
            raise ValueError("empty training set")
        if val is not None and len(val) and (val.labels < 0).any():
            raise ValueError("validation items need labels")
        needs_pseudo = any(c.lam > 0 for c in configs)
        if needs_pseudo and train.pseudo is None:
            raise ValueError("λ > 0 needs pseudo-labels on the training data")
        self.train = train = train.to(device)
        self.val = val.to(device) if val is not None and len(val) else None
        self.y_val = self.val.labels.cpu().numpy() if self.val is not None else None
        self._dim = train.dim
        heads = [build_head(train.dim, c, init_state) for c in configs]
        self.head_configs = [h.config() for h in heads]
        self.stacked = StackedHeads.from_heads(heads, device)
        self.gflat, self.gviews = self.stacked.grad_buffer()
        self.opt = BatchedAdamW(self.stacked.flat, [c.lr for c in configs], [c.weight_decay for c in configs])
        self.opt.set_grads(self.gflat)  # the optimizer's gradient views stay bound to this buffer
        self.gens = [torch.Generator(device=device).manual_seed(int(c.seed)) for c in configs]
        # dropout masks: on a CPU from a faster per-configuration numpy generator
        self.mask_gens = [mask_generator(c.seed) for c in configs] if device.type == "cpu" else self.gens
        self.rows = list(range(self.K))  # configuration of each row of the stack
        self.lam_all = torch.tensor([c.lam for c in configs], dtype=torch.float32, device=device)
        self.base_lr_all = np.array([c.lr for c in configs])
        N, B = len(train), c0.batch_size
        self.spe = math.ceil(N / B)
        # (warm-up, decay start, total) updates: the same for every configuration and every step
        self.schedule = schedule_steps(self.spe, c0.epochs, c0.warmup_epochs, c0.decay_start_epoch)
        self.W = self.stacked.dropout_width if c0.dropout > 0 else 0
        # dropout uniforms are drawn per configuration in chunks of whole steps; the chunk length
        # depends only on the head and the batch size, so each generator is consumed the same way
        # whether its configuration trains alone or inside a search
        self.chunk_steps = max(1, min(self.spe, (1 << 22) // max(1, B * self.W))) if self.W else self.spe
        self.stoppers = [EarlyStopping(c.patience, "max") for c in configs]
        self.best = self.stacked.snapshot()
        self.histories: list[list[dict]] = [[] for _ in configs]
        self.best_val: list[dict] = [{} for _ in configs]
        self.active = np.ones(self.K, dtype=bool)
        self.stopped_by = [""] * self.K
        self.clip = c0.grad_clip if c0.grad_clip and c0.grad_clip > 0 else 0.0
        self.bar = progress_bar(total=c0.epochs, desc=desc, enable=progress, unit="epoch", leave=False)
        self.progress = progress
        labelled = train.labels[train.labels >= 0]
        weights = (
            class_frequency_weights(labelled.cpu()).to(device)
            if (c0.class_weights and len(labelled))
            else None
        )
        # per-item inputs prepared once: the prior as the step consumes it, clamped labels, CE weights
        y_all, w_all = item_weights(train.labels, weights)
        qx_all = None
        if self.stacked.template.uses_prior:
            if train.prior is None:
                raise ValueError(
                    f"head preset {c0.preset!r} fuses an LLM prior but the training data has none"
                )
            qx_all = self.stacked.prior_inputs(train.prior, train.missing)
        self.src = {"X": train.X if self.stacked.template.uses_h else None, "q": qx_all}
        use_pseudo = train.pseudo is not None and needs_pseudo
        self.tgt = {
            "y": y_all,
            "w": w_all,
            "pseudo": train.pseudo if use_pseudo else None,
            "has": train.has_pseudo.to(torch.float32) if use_pseudo else None,
        }

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs or not self.active.any()

    def best_hf(self, k: int) -> float:
        """Configuration k's best validation hF so far (−inf before its first epoch)."""
        return float(self.stoppers[k].best)

    def stop(self, ks) -> None:
        """Configurations ``ks`` stop training now (e.g. dropped by successive halving); each keeps
        its best epoch so far."""
        for k in ks:
            if self.active[k]:
                self.active[k] = False
                self.stopped_by[k] = "halving"

    def _shrink(self) -> None:
        """Drop the rows of configurations that stopped: weights, gradients, moments, generators."""
        pos = [i for i, k in enumerate(self.rows) if self.active[k]]
        if not self.shrink or len(pos) == len(self.rows) or not pos:
            return
        idx = torch.as_tensor(pos, device=self.device)
        flat = self.stacked.flat[idx].contiguous()
        self.stacked = StackedHeads(self.stacked.template, flat, self.stacked.shapes)
        self.gflat, self.gviews = self.stacked.grad_buffer()
        self.opt = self.opt.take_rows(pos, flat)
        self.opt.set_grads(self.gflat)
        self.gens = [self.gens[i] for i in pos]
        self.mask_gens = [self.mask_gens[i] for i in pos]
        self.rows = [self.rows[i] for i in pos]

    # ------------------------------------------------------------------ training
    def run_to(self, epoch: int) -> None:
        """Train until ``epoch`` epochs have run (at most ``epochs``) or no configuration is left."""
        with _threads_for(self.configs, self._dim):
            while self.epoch < min(epoch, self.epochs) and self.active.any():
                self._shrink()
                self._run_epoch()
        if self.done:
            self.bar.close()

    def _run_epoch(self) -> None:
        c0, B, N, spe = self.configs[0], self.configs[0].batch_size, len(self.train), self.spe
        stacked, device, rows = self.stacked, self.device, self.rows
        K = len(rows)
        take = _take
        rows_t = torch.as_tensor(rows, device=device)
        lam = self.lam_all[rows_t]
        base_lr = self.base_lr_all[rows]
        final_lr = c0.final_lr
        row_floats = self.train.dim + (2 * NUM_CLASSES + 3)
        prepermute = K * N * row_floats * 4 <= (256 << 20)
        perms = torch.stack([torch.randperm(N, generator=g, device=device) for g in self.gens])
        if prepermute:  # one gather per epoch; batches are then slices
            ep = {k: take(v, perms) for k, v in self.src.items()}
        loss_sum = torch.zeros(K, device=device)
        a = bb = 0.0
        for c_lo in range(0, spe, self.chunk_steps):
            c_hi = min(spe, c_lo + self.chunk_steps)
            item_lo, item_hi = c_lo * B, min(N, c_hi * B)
            masks = stacked.dropout_masks_from(self.mask_gens, item_hi - item_lo) if self.W else None
            # loss targets of the block's batches (they do not depend on the weights)
            idx = perms[:, item_lo:item_hi]
            blk = {k: take(v, idx) for k, v in self.tgt.items()}
            T, tsum = loss_targets(blk["y"], blk["w"], lam, blk["pseudo"], blk["has"], B, NUM_CLASSES)
            for s in range(c_lo, c_hi):
                lo, hi = s * B, min(N, (s + 1) * B)
                if prepermute:
                    X, q = (None if v is None else v[:, lo:hi] for v in ep.values())
                else:
                    X, q = (take(v, perms[:, lo:hi]) for v in self.src.values())
                r = slice(lo - item_lo, hi - item_lo)
                losses = stacked.fast_loss_and_grads(
                    X, q, None if masks is None else masks[:, r], T[:, r], tsum[:, r], self.gviews
                )
                a, bb = schedule_parts(self.step, *self.schedule)
                self.opt.set_lr((a * base_lr + bb * final_lr).tolist())
                self.opt.step(clip_grad_norm=self.clip)
                loss_sum += losses
                self.step += 1
        self._end_epoch((loss_sum / spe).cpu().numpy(), a * base_lr + bb * final_lr)

    def _end_epoch(self, train_loss: np.ndarray, lr_now: np.ndarray) -> None:
        epoch, rows = self.epoch, self.rows
        improved = np.zeros(len(rows), dtype=bool)
        preds = (
            stacked_logits(self.stacked, self.val).argmax(-1).cpu().numpy() if self.val is not None else None
        )
        n_stack = len(rows)  # configurations updated in this epoch (stopped ones too with shrink=False)
        for i, k in enumerate(rows):
            if not self.active[k]:
                continue
            row = {
                "epoch": epoch,
                "train_loss": float(train_loss[i]),
                "lr": float(lr_now[i]),
                "stacked": n_stack,
            }
            st = self.stoppers[k]
            if preds is not None:
                sc = hierarchical_scores(self.y_val, preds[i], self.configs[0].never_predicted)
                row.update({"val_hP": sc.hP, "val_hR": sc.hR, "val_hF": sc.hF, "val_accuracy": sc.accuracy})
                if st.step(sc.hF, epoch):
                    improved[i] = True
                    self.best_val[k] = {"hP": sc.hP, "hR": sc.hR, "hF": sc.hF, "accuracy": sc.accuracy}
                if st.should_stop:
                    self.active[k] = False
                    self.stopped_by[k] = "early-stopping"
            else:  # no validation: keep the last epoch
                improved[i] = True
                st.best_epoch = epoch
            self.histories[k].append(row)
        if improved.any():
            pos = torch.as_tensor(np.nonzero(improved)[0], device=self.device)
            with torch.no_grad():
                self.best[torch.as_tensor(rows, device=self.device)[pos]] = self.stacked.flat[pos]
        self.epoch += 1
        self.bar.update(1)
        if self.progress and self.val is not None:
            self.bar.set_postfix(
                best_hF=f"{max(s.best for s in self.stoppers):.4f}", active=int(self.active.sum())
            )

    def results(self) -> list[RunResult]:
        """One :class:`RunResult` per configuration, in input order (best-epoch weights)."""
        n_params = self.stacked.n_parameters_per_head()
        out = []
        for k, c in enumerate(self.configs):
            st = self.stoppers[k]
            out.append(
                RunResult(
                    config=copy.deepcopy(c),
                    head_config=self.head_configs[k],
                    state_dict=self.stacked.state_dict_from(self.best[k]),
                    best_epoch=int(st.best_epoch if st.best_epoch is not None else -1),
                    best_val=self.best_val[k],
                    history=self.histories[k],
                    n_parameters=n_params,
                    stopped_by=self.stopped_by[k],
                )
            )
        return out


def _take(t: Tensor | None, idx: Tensor) -> Tensor | None:
    return None if t is None else t[idx]


def train_head(
    config: TrainConfig,
    train: HeadData,
    val: HeadData | None,
    init_state: dict | None = None,
    progress: bool = False,
) -> RunResult:
    """Train one configuration (a stacked run with K = 1)."""
    return train_stacked([config], train, val, init_state=init_state, progress=progress)[0]


@torch.no_grad()
def predict_logits(
    results: Sequence[RunResult] | Sequence[FusionHead], data: HeadData, device: str = "auto"
) -> np.ndarray:
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
