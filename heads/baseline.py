"""``python -m heads baseline``: the official baseline ported (:mod:`heads.baseline_model`) on the
dataset's shipped CLAP audio + text embeddings, 5 folds with its split seeds, reported as mean ±
std next to its published hF on BSD10k.

Training as the baseline's repository has it: AdamW (lr 1e-3, weight decay 1e-4) over the network
and the loss's proxies, batch 64 (shuffled, incomplete last batch dropped), masking augmentation
on the training batches, learning rate halved every 20 epochs, at most 100 epochs, early stopping
on validation accuracy (argmax of the cosine logits) after 15 epochs without a strict improvement,
the best epoch's weights tested.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cache import tables
from cache.config import to_dict
from cache.manifest import load_manifest
from cache.metric import hierarchical_scores
from cache.provenance import base_provenance
from cache.splits import make_split
from cache.store import Store, default_store_path

from .baseline_model import BaselineNet, HierarchicalProxyLoss, mask_augment
from .cross_validation import mean_std
from .data import InputError, existing_store, read_finite_features, resolve_groups, split_indices
from .early_stopping import EarlyStopping
from .json_files import write_json
from .training import resolve_device

#: hF mean ± std of the official baseline (audio + text) on BSD10k as published
PUBLISHED_BASELINE_HF = (0.788, 0.008)


@dataclass
class BaselineTrain:
    """The official baseline's training settings (its repository's values are the defaults)."""

    hidden: int = 128
    dropout: float = 0.1
    residual_blocks: int = 3
    batch_size: int = 64
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_step_epochs: int = 20  # StepLR: the learning rate times lr_gamma every lr_step_epochs epochs
    lr_gamma: float = 0.5
    patience: int = 15  # epochs without a better validation accuracy (its patience 5 × factor 3)
    mask_fraction: float = 0.7  # at most this share of each modality's coordinates zeroed per clip
    noise_std: float = 1e-4
    temperature: float = 0.07
    alpha: float = 0.4  # parent CE
    beta: float = 0.3  # child-to-parent proxy alignment
    gamma: float = 0.15  # sibling proxy separation
    delta: float = 0.05  # parent proxy separation
    sibling_margin: float = 0.4
    parent_margin: float = 0.0
    device: str = "auto"
    threads: int = 0  # torch CPU threads while training (0 = leave torch's setting)


@dataclass
class BaselineConfig:
    """Inputs, split and folds of ``python -m heads baseline``; ``train`` holds the training settings."""

    dataset: str = ""
    store: str = ""
    groups: list[str] = field(default_factory=lambda: [tables.embeddings_path("shipped", "none")])
    columns: list[str] | None = None  # modalities (columns of the groups); None = audio and text
    split_preset: str = "baseline"
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seed: int = 1821  # the baseline's seed; fold f trains with seed + f
    never_predicted: str = "drop"  # the official evaluation drops classes it cannot score
    train: BaselineTrain = field(default_factory=BaselineTrain)
    out: str = "runs/heads/baseline"
    write_logits: bool = True


@dataclass
class FoldResult:
    net: BaselineNet
    loss: HierarchicalProxyLoss
    best_epoch: int
    best_val_accuracy: float
    history: list[dict]


@torch.no_grad()
def baseline_logits(
    net: BaselineNet, loss: HierarchicalProxyLoss, xs: Sequence[Tensor], chunk: int = 4096
) -> Tensor:
    """Evaluation-mode cosine logits (N, 23)."""
    net.eval()
    out = [loss.logits(net(*[x[i : i + chunk] for x in xs])) for i in range(0, len(xs[0]), chunk)]
    return torch.cat(out) if out else torch.zeros(0, loss.child.shape[0])


def train_baseline(
    cfg: BaselineTrain,
    train_xs: Sequence[Tensor],
    train_y: Tensor,
    val_xs: Sequence[Tensor],
    val_y: Tensor,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> FoldResult:
    """Train the baseline network on (train_xs, train_y) with early stopping on validation accuracy;
    ``seed`` fixes the initial weights, batch order, augmentation and dropout (the global RNG is left
    as it was)."""
    dev = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            return _train(
                cfg, dev, train_xs, train_y, val_xs, val_y, torch.Generator(device=dev).manual_seed(seed), log
            )
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: BaselineTrain, dev: torch.device, train_xs, train_y, val_xs, val_y, gen: torch.Generator, log
) -> FoldResult:
    net = BaselineNet([x.shape[1] for x in train_xs], cfg.hidden, cfg.dropout, cfg.residual_blocks).to(dev)
    loss_fn = HierarchicalProxyLoss(
        net.out_dim,
        cfg.temperature,
        cfg.alpha,
        cfg.beta,
        cfg.gamma,
        cfg.delta,
        cfg.sibling_margin,
        cfg.parent_margin,
    ).to(dev)
    opt = torch.optim.AdamW(
        list(net.parameters()) + list(loss_fn.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    txs, ty = [x.to(dev) for x in train_xs], train_y.to(dev)
    vxs, vy = [x.to(dev) for x in val_xs], val_y.to(dev)
    n = len(ty)
    if n < cfg.batch_size:
        raise ValueError(
            f"{n} training clips are fewer than one batch ({cfg.batch_size}); the baseline drops "
            "incomplete batches: lower train.batch_size"
        )
    stop = EarlyStopping(cfg.patience, mode="max")
    best = (copy.deepcopy(net.state_dict()), copy.deepcopy(loss_fn.state_dict()))
    history = []
    for epoch in range(cfg.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen, device=dev)
        total = torch.zeros((), device=dev)
        steps = n // cfg.batch_size
        for s in range(steps):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            xs = [mask_augment(x[idx], cfg.mask_fraction, cfg.noise_std, gen) for x in txs]
            loss = loss_fn(net(*xs), ty[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        total = float(total)
        lr = opt.param_groups[0]["lr"]
        sched.step()
        acc = float((baseline_logits(net, loss_fn, vxs).argmax(1) == vy).float().mean()) if len(vy) else 0.0
        history.append({"epoch": epoch, "loss": total / steps, "val_accuracy": acc, "lr": lr})
        if stop.step(acc, epoch):
            best = (copy.deepcopy(net.state_dict()), copy.deepcopy(loss_fn.state_dict()))
        if log:
            log(f"  epoch {epoch}: loss {total / steps:.4f}, val accuracy {acc:.4f}")
        if stop.should_stop:
            break
    net.load_state_dict(best[0])
    loss_fn.load_state_dict(best[1])
    return FoldResult(
        net.eval(), loss_fn, stop.best_epoch if stop.best_epoch is not None else 0, stop.best, history
    )


def _modalities(
    st: Store, cfg: BaselineConfig, ids: np.ndarray
) -> tuple[list[Tensor], np.ndarray, list[str]]:
    """Each (group, column) block as one modality tensor; rows whose features failed flagged."""
    groups = resolve_groups(st, cfg.groups)
    feats = read_finite_features(st, groups, ids, columns=cfg.columns)
    if len(feats.blocks) not in (1, 2):
        raise InputError(
            f"{st.path}: the baseline takes one or two modalities; {', '.join(groups)} give "
            f"{len(feats.blocks)} columns ({', '.join(c for _, c, _ in feats.blocks)}): set columns"
        )
    X = torch.from_numpy(np.ascontiguousarray(feats.X, dtype=np.float32))
    xs = list(torch.split(X, [d for _, _, d in feats.blocks], dim=1))
    return [x.contiguous() for x in xs], feats.ok, [f"{g}:{c}" for g, c, _ in feats.blocks]


def run_baseline(cfg: BaselineConfig, log=print, progress: bool = True) -> dict:
    """Train and test the ported baseline on each fold; hP/hR/hF mean ± std over the folds
    (``progress``: a line per epoch)."""
    if not cfg.dataset:
        raise ValueError("dataset is required (the labelled BSD10k root): pass --dataset")
    man = load_manifest(cfg.dataset, require_audio=False)
    targets = man.targets()
    st = existing_store(cfg.store or default_store_path(cfg.dataset), cfg.dataset, write=cfg.write_logits)
    xs_all, ok, names = _modalities(st, cfg, targets.ids)
    # as the baseline, only clips that have their embeddings take part (split included)
    keep = np.flatnonzero(ok)
    ids, labels = targets.ids[keep], targets.labels[keep]
    xs_all = [x[torch.as_tensor(keep)] for x in xs_all]
    y_all = torch.as_tensor(labels, dtype=torch.long)
    log(
        f"[baseline] {man.name}: {len(ids)} target clips with features "
        f"({len(targets.ids) - len(ids)} without); "
        f"modalities {', '.join(names)}"
    )
    out = Path(cfg.out)
    per_fold = []
    for f in cfg.folds:
        split = make_split(ids, labels, preset=cfg.split_preset, fold=int(f), dataset=man.name)
        idx = {k: torch.as_tensor(v) for k, v in split_indices(ids, split, cfg.dataset).items()}
        res = train_baseline(
            cfg.train,
            [x[idx["train"]] for x in xs_all],
            y_all[idx["train"]],
            [x[idx["val"]] for x in xs_all],
            y_all[idx["val"]],
            seed=cfg.seed + int(f),
            log=log if progress else None,  # one line per epoch
        )
        logits = baseline_logits(
            res.net, res.loss, [x.to(next(res.net.parameters()).device) for x in xs_all]
        ).cpu()
        pred = logits[idx["test"]].argmax(1).numpy()
        test = hierarchical_scores(labels[idx["test"].numpy()], pred, cfg.never_predicted)
        other = hierarchical_scores(
            labels[idx["test"].numpy()], pred, "zero" if cfg.never_predicted == "drop" else "drop"
        )
        fold_dir = out / f"fold{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "net": res.net.state_dict(),
                "loss": res.loss.state_dict(),
                "dims": [x.shape[1] for x in xs_all],
                "modalities": names,
                "train": to_dict(cfg.train),
            },
            fold_dir / "model.pt",
        )
        split.save(fold_dir / "split.json")
        write_json(
            fold_dir / "metrics.json",
            {
                "test": test.as_dict(),
                f"test_{other.never_predicted}": other.as_dict(),
                "best_epoch": res.best_epoch,
                "val_accuracy": res.best_val_accuracy,
                "history": res.history,
            },
        )
        if cfg.write_logits:
            run = f"heads/baseline/fold{f}"
            tables.write_logits(
                st,
                run,
                ids,
                logits.numpy(),
                attrs=base_provenance("heads", run=run, fold=int(f), recipe="official-baseline"),
            )
        per_fold.append(
            {"fold": int(f), "hP": test.hP, "hR": test.hR, "hF": test.hF, "best_epoch": res.best_epoch}
        )
        log(
            f"[baseline] fold {f}: best epoch {res.best_epoch} (val accuracy {res.best_val_accuracy:.4f}); "
            f"test hP {test.hP:.4f} hR {test.hR:.4f} hF {test.hF:.4f} ('{cfg.never_predicted}')"
        )
    m = {k: mean_std([r[k] for r in per_fold]) for k in ("hP", "hR", "hF")}
    table = (
        f"official baseline ported ({', '.join(names)}), {len(per_fold)} fold(s): "
        f"hF {m['hF'][0]:.4f} ± {m['hF'][1]:.4f} (hP {m['hP'][0]:.4f}, hR {m['hR'][0]:.4f}; "
        f"never-predicted convention '{cfg.never_predicted}'); published official baseline on BSD10k: "
        f"{PUBLISHED_BASELINE_HF[0]} ± {PUBLISHED_BASELINE_HF[1]}"
    )
    write_json(
        out / "baseline.json",
        {
            "folds": per_fold,
            "summary": m,
            "config": to_dict(cfg),
            "modalities": names,
            "published": PUBLISHED_BASELINE_HF,
        },
    )
    log(table)
    return {"folds": per_fold, "summary": m}
