"""``python -m heads train|search``: one model on one dataset outside the pipeline, trained with one
configuration or searched over K (:class:`RunConfig`, a TOML file + ``--set`` overrides)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cache import tables
from cache.config import to_dict
from cache.manifest import load_manifest
from cache.metric import hierarchical_scores
from cache.provenance import base_provenance
from cache.store import default_store_path

from .data import InputSpec, Standardizer, existing_store, load_head_data, load_split, split_indices
from .json_files import write_json
from .run_folder import load_run, save_run
from .search import SearchSpace, ranking, results_table, run_search, sample_configs
from .training import TrainConfig, predict_logits


@dataclass
class RunConfig:
    """``python -m heads train|search``: one dataset, one input spec, one configuration or a search."""

    dataset: str = ""  # labelled dataset root
    store: str = ""  # default <dataset>/cache.zarr
    split_file: str = ""
    split_preset: str = "cpjku"
    fold: int = 0
    split_seed: int | None = None
    inputs: InputSpec = field(default_factory=InputSpec)
    standardize: bool = True
    pseudo: str = ""  # pseudo_labels/<name> in the store, for λ > 0
    init: str = ""  # a saved run folder to start from
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchSpace = field(default_factory=SearchSpace)
    out: str = "runs/heads/train"
    name: str = "heads/train"  # logits tables are written as logits/<name>/cXX
    write_logits: bool = True
    keep: int = 3  # run folders saved by a search, best first


def train_or_search(
    cfg: RunConfig, search: bool, log: Callable[[str], None] = print, progress: bool = True
) -> dict:
    """Train one configuration (``search=False``) or a K-configuration search; save runs and logits."""
    if not cfg.dataset:
        raise ValueError("dataset is required (a labelled dataset root)")
    man = load_manifest(cfg.dataset, require_audio=False)
    targets = man.targets()
    split = load_split(targets, cfg.split_file, cfg.split_preset, cfg.fold, cfg.split_seed, man.name)
    store = existing_store(cfg.store or default_store_path(cfg.dataset), cfg.dataset, write=True)
    data = load_head_data(store, targets.ids, cfg.inputs, targets.labels, pseudo_name=cfg.pseudo or None)
    idx = split_indices(targets.ids, split, cfg.dataset)
    std = Standardizer.fit(data.X[torch.as_tensor(idx["train"])]) if cfg.standardize and data.dim else None
    if std is not None:
        data = std.apply(data)
    init_state = load_run(cfg.init).head.state_dict() if cfg.init else None
    train, val = data.subset(idx["train"]), data.subset(idx["val"])
    configs = sample_configs(cfg.train, cfg.search) if search else [cfg.train]
    log(
        f"[{'search' if search else 'train'}] {len(configs)} configuration(s) on {len(train)} clips, "
        f"val {len(val)}, "
        f"dim {data.dim}, groups {data.groups}, prior {cfg.inputs.prior}"
    )
    results = run_search(
        configs,
        train,
        val,
        init_state=init_state,
        max_stack=cfg.search.max_stack,
        progress=progress,
        desc=cfg.name,
        halving=search and cfg.search.halving,
        rung_epochs=cfg.search.rung_epochs,
    )
    logits = predict_logits(results, data)
    out = Path(cfg.out)
    order = ranking(results)
    names = [f"{cfg.name}/c{k:02d}" for k in range(len(results))]
    saved = {}
    for k in order[: max(1, cfg.keep)] if search else [0]:
        test = hierarchical_scores(
            data.labels[idx["test"]].numpy(), logits[k][idx["test"]].argmax(-1), cfg.train.never_predicted
        )
        folder = out / f"c{k:02d}" if search else out
        saved[k] = save_run(
            folder,
            results[k],
            inputs=cfg.inputs,
            groups=data.groups,
            standardizer=std,
            split=split,
            metrics={"test": test.as_dict(), "run": names[k]},
            config={"command": to_dict(cfg)},
            provenance={"run": names[k], "manifest_sha256": man.digest(), "store": str(store.path)},
        )
        log(
            f"[{names[k]}] val hF {results[k].best_val.get('hF', float('nan')):.4f} "
            f"(epoch {results[k].best_epoch}), "
            f"test hF {test.hF:.4f} -> {folder}"
        )
    if cfg.write_logits:
        for k, name in enumerate(names):
            tables.write_logits(
                store,
                name,
                targets.ids,
                logits[k],
                attrs=base_provenance(
                    "heads",
                    run=name,
                    config=dataclasses.asdict(results[k].config),
                    val=results[k].best_val,
                    split_ids_sha256=split.ids_sha256,
                ),
            )
    if search:
        out.mkdir(parents=True, exist_ok=True)
        table = results_table(results, names)
        (out / "search.md").write_text(table + "\n")
        write_json(
            out / "search.json",
            {
                "names": names,
                "summaries": [r.summary() for r in results],
                "order": order,
                "config": to_dict(cfg),
            },
        )
        log(table)
    return {"results": results, "names": names, "saved": saved}
