"""``python -m heads baseline``: the official baseline's setting (shipped CLAP audio + text
embeddings, an MLP head, 5 folds with the baseline's split seeds), reported next to its published
hF on BSD10k."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cache import tables
from cache.config import to_dict
from cache.manifest import load_manifest
from cache.metric import hierarchical_scores
from cache.provenance import base_provenance
from cache.splits import make_split
from cache.store import Store, default_store_path

from .cross_validation import mean_std
from .data import InputSpec, Standardizer, load_head_data, split_indices
from .json_files import write_json
from .run_folder import save_run
from .training import TrainConfig, predict_logits, train_head

#: hF mean ± std of the official baseline on BSD10k as published
PUBLISHED_BASELINE_HF = (0.788, 0.008)


@dataclass
class BaselineConfig:
    """The official baseline's setting: shipped CLAP audio + text embeddings, an MLP, 5 folds with the
    baseline's split seeds. Published on the real BSD10k: hF 0.788 ± 0.008."""

    dataset: str = ""
    store: str = ""
    groups: list[str] = field(default_factory=lambda: [tables.embeddings_path("shipped", "none")])
    columns: list[str] | None = None  # audio and text
    split_preset: str = "baseline"
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    standardize: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(preset="mlp", hidden=512, lr=1e-3, epochs=30))
    out: str = "runs/heads/baseline"
    write_logits: bool = True


def run_baseline(cfg: BaselineConfig, log=print, progress: bool = True) -> dict:
    """Train and test the baseline recipe on each fold; hP/hR/hF mean ± std over the folds."""
    if not cfg.dataset:
        raise ValueError("dataset is required (the labelled BSD10k root)")
    man = load_manifest(cfg.dataset, require_audio=False)
    targets = man.targets()
    st = Store(cfg.store or default_store_path(cfg.dataset))
    spec = InputSpec(groups=list(cfg.groups), columns=cfg.columns, prior=None)
    data0 = load_head_data(st, targets.ids, spec, targets.labels)
    out = Path(cfg.out)
    per_fold = []
    for f in cfg.folds:
        split = make_split(targets.ids, targets.labels, preset=cfg.split_preset, fold=int(f), dataset=man.name)
        idx = split_indices(targets.ids, split, cfg.dataset)
        std = Standardizer.fit(data0.X[torch.as_tensor(idx["train"])]) if cfg.standardize else None
        data = std.apply(data0) if std else data0
        res = train_head(cfg.train, data.subset(idx["train"]), data.subset(idx["val"]), progress=progress)
        logits = predict_logits([res], data)[0]
        test = hierarchical_scores(targets.labels[idx["test"]], logits[idx["test"]].argmax(-1), cfg.train.never_predicted)
        save_run(out / f"fold{f}", res, inputs=spec, groups=data.groups, standardizer=std, split=split,
                 metrics={"test": test.as_dict()}, config={"baseline": to_dict(cfg)},
                 provenance={"recipe": "baseline", "fold": int(f)})
        if cfg.write_logits:
            run = f"heads/baseline/fold{f}"
            tables.write_logits(st, run, targets.ids, logits,
                                attrs=base_provenance("heads", run=run, fold=int(f), recipe="baseline"))
        per_fold.append({"fold": int(f), "hP": test.hP, "hR": test.hR, "hF": test.hF})
        log(f"[baseline] fold {f}: test hP {test.hP:.4f} hR {test.hR:.4f} hF {test.hF:.4f}")
    m = {k: mean_std([r[k] for r in per_fold]) for k in ("hP", "hR", "hF")}
    table = (f"baseline recipe ({', '.join(cfg.groups)} + {cfg.train.preset} head), {len(per_fold)} fold(s): "
             f"hF {m['hF'][0]:.4f} ± {m['hF'][1]:.4f} (hP {m['hP'][0]:.4f}, hR {m['hR'][0]:.4f}); "
             f"published official baseline on BSD10k: {PUBLISHED_BASELINE_HF[0]} ± {PUBLISHED_BASELINE_HF[1]}")
    write_json(out / "baseline.json", {"folds": per_fold, "summary": m, "config": to_dict(cfg),
                                       "published": PUBLISHED_BASELINE_HF})
    log(table)
    return {"folds": per_fold, "summary": m}
