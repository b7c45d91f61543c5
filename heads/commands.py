"""The head tier's commands outside the pipeline: train, search, ensemble and pseudo-labels from
logits tables, predict new data, 5-fold evaluation and the official-baseline recipe.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cache.tables import LOGITS, logits_path, read_logits, table_names
from cache.manifest import load_manifest
from cache.metric import HierarchicalScores, format_table, hierarchical_scores
from cache.provenance import sha256_json
from cache.splits import Split, make_split
from cache.store import Store, default_store_path
from cache.taxonomy import NUM_CLASSES

from cache.config import to_dict
from .data import InputError, InputSpec, Standardizer, load_head_data, resolve_groups
from .ensemble import DECODINGS, decode, mean_logits, select, softmax
from .pipeline import Pipeline, PipelineConfig
from .report import write_classification_report
from .runs import load_run, save_run, write_json, write_logits, write_pseudo_labels
from .search import SearchSpace, ranking, results_table, run_search, sample_configs
from .submission import write_meta_yaml, write_output_csv
from .training import TrainConfig, predict_logits, resolve_device


# ---------------------------------------------------------------------------------------- train / search
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


def load_split(manifest_targets, split_file: str, preset: str, fold: int, seed: int | None, name: str) -> Split:
    if split_file:
        return Split.load(split_file)
    return make_split(manifest_targets.ids, manifest_targets.labels, preset=preset, fold=fold, seed=seed, dataset=name)


def train_or_search(cfg: RunConfig, search: bool, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Train one configuration (``search=False``) or a K-configuration search; save runs and logits."""
    if not cfg.dataset:
        raise ValueError("dataset is required (a labelled dataset root)")
    man = load_manifest(cfg.dataset, require_audio=False)
    targets = man.targets()
    split = load_split(targets, cfg.split_file, cfg.split_preset, cfg.fold, cfg.split_seed, man.name)
    store = Store(cfg.store or default_store_path(cfg.dataset))
    data = load_head_data(store, targets.ids, cfg.inputs, targets.labels, pseudo_name=cfg.pseudo or None)
    pos = {i: k for k, i in enumerate(targets.ids)}
    idx = {p: np.array([pos[i] for i in split.part(p)], dtype=np.int64) for p in ("train", "val", "test")}
    std = Standardizer.fit(data.X[torch.as_tensor(idx["train"])]) if cfg.standardize and data.dim else None
    if std is not None:
        data = std.apply(data)
    init_state = load_run(cfg.init).head.state_dict() if cfg.init else None
    train, val = data.subset(idx["train"]), data.subset(idx["val"])
    configs = sample_configs(cfg.train, cfg.search) if search else [cfg.train]
    log(f"[{'search' if search else 'train'}] {len(configs)} configuration(s) on {len(train)} clips, val {len(val)}, "
        f"dim {data.dim}, groups {data.groups}, prior {cfg.inputs.prior}")
    results = run_search(configs, train, val, init_state=init_state, max_stack=cfg.search.max_stack,
                         progress=progress, desc=cfg.name)
    logits = predict_logits(results, data)
    out = Path(cfg.out)
    order = ranking(results)
    names = [f"{cfg.name}/c{k:02d}" for k in range(len(results))]
    saved = {}
    for k in (order[: max(1, cfg.keep)] if search else [0]):
        test = hierarchical_scores(data.labels[idx["test"]].numpy(), logits[k][idx["test"]].argmax(-1),
                                   cfg.train.never_predicted)
        folder = out / f"c{k:02d}" if search else out
        saved[k] = save_run(folder, results[k], inputs=cfg.inputs, groups=data.groups, standardizer=std, split=split,
                            metrics={"test": test.as_dict(), "run": names[k]}, config={"command": to_dict(cfg)},
                            provenance={"run": names[k], "manifest_sha256": man.digest(), "store": str(store.path)})
        log(f"[{names[k]}] val hF {results[k].best_val.get('hF', float('nan')):.4f} (epoch {results[k].best_epoch}), "
            f"test hF {test.hF:.4f} -> {folder}")
    if cfg.write_logits:
        for k, name in enumerate(names):
            write_logits(store, name, targets.ids, logits[k], config=dataclasses.asdict(results[k].config),
                         val=results[k].best_val, split_ids_sha256=split.ids_sha256)
    if search:
        out.mkdir(parents=True, exist_ok=True)
        table = results_table(results, names)
        (out / "search.md").write_text(table + "\n")
        write_json(out / "search.json", {"names": names, "summaries": [r.summary() for r in results], "order": order,
                                         "config": to_dict(cfg)})
        log(table)
    return {"results": results, "names": names, "saved": saved}


# ---------------------------------------------------------------------------------------- logits tables
def match_runs(store: Store, patterns: Sequence[str]) -> list[str]:
    """Run names (``logits/<run>``) in ``store`` matching any of ``patterns`` (glob), sorted."""
    tables = table_names(store, LOGITS)
    out = sorted({t for t in tables for p in patterns if fnmatch.fnmatchcase(t, p)})
    if not out:
        raise InputError(f"{store.path}: no logits/<run> table matches {list(patterns)}; it has {tables[:20]}")
    return out


def stack_logits(store: Store, runs: Sequence[str], ids: Sequence[str]) -> np.ndarray:
    return np.stack([read_logits(store, r, ids) for r in runs])


def pseudo_labels_from_runs(stores: Sequence[Store], runs: Sequence[str], name: str, log=print) -> dict[str, np.ndarray]:
    """Softmax of the mean logits of ``runs`` for every clip of each store; written as pseudo_labels/<name>."""
    out = {}
    for store in stores:
        names = match_runs(store, runs)
        ids = store.read_table(logits_path(names[0]), names=["logits"]).ids
        probs = softmax(mean_logits(stack_logits(store, names, ids))).astype(np.float32)
        write_pseudo_labels(store, name, ids, probs, members=names)
        log(f"[pseudo-labels] {store.path}: pseudo_labels/{name} from {len(names)} run(s) for {len(ids)} clips")
        out[str(store.path)] = probs
    return out


def ensemble_from_runs(dataset: str, runs: Sequence[str], out: str | Path, store: str = "", split_file: str = "",
                       split_preset: str = "cpjku", fold: int = 0, method: str = "greedy", max_size: int = 0,
                       never_predicted: str = "zero", log=print) -> dict:
    """Select an ensemble of logits tables on validation hF; scores on val/test with both decodings."""
    man = load_manifest(dataset, require_audio=False)
    targets = man.targets()
    split = load_split(targets, split_file, split_preset, fold, None, man.name)
    st = Store(store or default_store_path(dataset))
    names = match_runs(st, runs)
    lab = dict(zip(targets.ids.tolist(), targets.labels.tolist()))
    parts = {p: split.part(p) for p in ("val", "test")}
    y = {p: np.array([lab[i] for i in ids]) for p, ids in parts.items()}
    stacks = {p: stack_logits(st, names, ids) for p, ids in parts.items()}
    sel = select(stacks["val"], y["val"], method, max_size, never_predicted=never_predicted)
    members = [names[i] for i in sel.members]
    scores = {rule: {p: hierarchical_scores(y[p], decode(mean_logits(stacks[p], sel.members), rule)[0], never_predicted)
                     for p in parts} for rule in DECODINGS}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"members": members, "candidates": names, "selection": sel.as_dict(names),
           "scores": {r: {p: s.as_dict() for p, s in v.items()} for r, v in scores.items()}, "split": split.describe()}
    write_json(out / "ensemble.json", res)
    mean_test = mean_logits(stacks["test"], sel.members)
    np.savez_compressed(out / "predictions.npz", logits_test=mean_test, labels_test=y["test"],
                        ids_test=np.array(parts["test"], dtype=str),
                        logits_val=mean_logits(stacks["val"], sel.members), labels_val=y["val"],
                        ids_val=np.array(parts["val"], dtype=str))
    write_classification_report(out, "ensemble_test", y["test"], decode(mean_test, "argmax")[0],
                                scores["argmax"]["test"], "Ensemble (argmax) on the test split")
    log(f"[ensemble] {len(members)} of {len(names)} run(s): {members}")
    for rule in DECODINGS:
        log(f"  {rule:15s} val hF {scores[rule]['val'].hF:.4f}  test hP {scores[rule]['test'].hP:.4f} "
            f"hR {scores[rule]['test'].hR:.4f} hF {scores[rule]['test'].hF:.4f}")
    return res


def report_from_predictions(predictions: str | Path, out: str | Path, rule: str = "argmax",
                            never_predicted: str = "zero", log=print) -> str:
    """Per-class table and confusion matrix from a ``predictions.npz`` (test part) written by ensemble."""
    with np.load(predictions) as z:
        if "logits_test" in z:
            logits, labels = z["logits_test"], z["labels_test"]
        else:  # pipeline format
            logits, labels = z["logits_clean"][z["test_idx"]], z["labels_clean"][z["test_idx"]]
    pred, _ = decode(logits, rule)
    sc = hierarchical_scores(labels, pred, never_predicted)
    write_classification_report(out, "report_test", labels, pred, sc, f"Test split ({rule})")
    table = format_table(sc)
    log(table)
    return table


# ---------------------------------------------------------------------------------------- predict
def predict_dataset(run_dirs: Sequence[str | Path], dataset: str, out: str | Path, store: str = "", label: str = "",
                    decoding: str = "argmax", logits_name: str = "", log=print) -> Path:
    """Predict every clip of a dataset (its cache must hold the runs' embeddings and priors) with the
    mean logits of saved heads; writes ``<label>.output.csv``."""
    if not run_dirs:
        raise ValueError("name at least one trained run folder (or an ensemble.json)")
    dirs: list[Path] = []
    for r in run_dirs:
        p = Path(r)
        if p.suffix == ".json":
            from .runs import read_json

            dirs.extend(Path(d) for d in read_json(p)["run_dirs"])
        else:
            dirs.append(p)
    man = load_manifest(dataset, require_audio=False, keep_non_targets=True)
    st = Store(store or default_store_path(dataset))
    all_logits = []
    for d in dirs:
        run = load_run(d)
        groups = resolve_groups(st, run.inputs.groups) if run.inputs.groups else []
        if groups != run.groups:
            raise InputError(f"{d}: trained on {run.groups} but {st.path} has {groups}: extract the same embeddings "
                             "(same backbone and checkpoint) first")
        data = load_head_data(st, man.ids, InputSpec(groups, run.inputs.columns, run.inputs.prior))
        if run.standardizer is not None:
            data = run.standardizer.apply(data)
        all_logits.append(predict_logits([run.head], data, device="auto")[0])
        bad = int((~data.feature_ok).sum()) if data.feature_ok is not None else 0
        log(f"[predict] {d}: {len(data)} clips" + (f" ({bad} with failed features)" if bad else ""))
    logits = mean_logits(np.stack(all_logits))
    pred, score = decode(logits, decoding)
    label = label or "predictions"
    path = write_output_csv(Path(out) / f"{label}.output.csv", man.ids, pred, score)
    if logits_name:
        write_logits(st, logits_name, man.ids, logits, members=[str(d) for d in dirs])
    log(f"[predict] wrote {path}")
    return path


def submit_from_ensemble(ensemble_json: str | Path, dataset: str, out: str | Path, label: str, store: str = "",
                         decoding: str = "", name: str = "", description: str = "", log=print) -> dict:
    """Submission files for an unlabelled set from a pipeline/heads ensemble.json (its run folders)."""
    from .runs import read_json

    ens = read_json(ensemble_json)
    rule = decoding or ens.get("decoding", "argmax")
    csv_path = predict_dataset(ens["run_dirs"], dataset, out, store=store, label=label, decoding=rule, log=log)
    sc = ens["scores"][rule]["test"]
    dev = HierarchicalScores(hP=sc["hP"], hR=sc["hR"], hF=sc["hF"], accuracy=sc["accuracy"],
                             top_accuracy=sc["top_accuracy"], never_predicted=sc["never_predicted"],
                             n_items=sc["n_items"], per_class=sc["per_class"])
    n_params = sum(load_run(d).head.n_parameters() for d in ens["run_dirs"])
    meta = write_meta_yaml(Path(out) / f"{label}.meta.yaml", label=label, name=name or label, abbreviation=label,
                           description=description or f"ensemble of {len(ens['run_dirs'])} heads ({rule} decoding)",
                           dev_scores=dev, dev_split="see ensemble.json", n_parameters=n_params,
                           parameters_count="trainable parameters of the ensemble's heads; frozen feature extractors "
                                            "and the LLM not counted", members=ens.get("members", []))
    return {"csv": csv_path, "meta": meta}


# ---------------------------------------------------------------------------------------- 5 folds
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def cross_validate(cfg: PipelineConfig, folds: Sequence[int], out: str | Path, log=print, progress: bool = True) -> dict:
    """Run the pipeline on each fold's split (preset ``data.split_preset``) and report test hF mean ± std."""
    out = Path(out)
    per_fold = []
    for f in folds:
        data = dataclasses.replace(cfg.data, split_file="", fold=int(f))
        fcfg = dataclasses.replace(cfg, data=data, out=str(out / f"fold{f}"))
        pipe = Pipeline(fcfg, progress=progress, log=log)
        pipe.setup()
        for stage in pipe.effective_stages():
            pipe.run_stage(stage)
        ens = pipe.make_ensemble()
        pipe.report()
        row = {"fold": int(f)}
        for rule in DECODINGS:
            t = ens["scores"][rule]["test"]
            row[rule] = {"hP": t["hP"], "hR": t["hR"], "hF": t["hF"]}
        per_fold.append(row)
        log(f"[cv] fold {f}: test hF {row['argmax']['hF']:.4f} (argmax), {row['expected-credit']['hF']:.4f} (expected-credit)")
    summary = {rule: {m: _mean_std([r[rule][m] for r in per_fold]) for m in ("hP", "hR", "hF")} for rule in DECODINGS}
    lines = ["| fold | hP | hR | hF (argmax) | hF (expected-credit) |", "|---|---|---|---|---|"]
    for r in per_fold:
        lines.append(f"| {r['fold']} | {r['argmax']['hP']:.4f} | {r['argmax']['hR']:.4f} | {r['argmax']['hF']:.4f} | "
                     f"{r['expected-credit']['hF']:.4f} |")
    s = summary["argmax"]
    lines.append(f"| mean ± std | {s['hP'][0]:.4f} ± {s['hP'][1]:.4f} | {s['hR'][0]:.4f} ± {s['hR'][1]:.4f} | "
                 f"{s['hF'][0]:.4f} ± {s['hF'][1]:.4f} | {summary['expected-credit']['hF'][0]:.4f} ± "
                 f"{summary['expected-credit']['hF'][1]:.4f} |")
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.md").write_text(f"# 5-fold evaluation ({cfg.data.split_preset} splits)\n\n{table}\n")
    write_json(out / "cv.json", {"folds": per_fold, "summary": summary, "config": to_dict(cfg)})
    log(table)
    return {"folds": per_fold, "summary": summary, "table": table}


# ---------------------------------------------------------------------------------------- baseline
@dataclass
class BaselineConfig:
    """The official baseline's setting: shipped CLAP audio + text embeddings, an MLP, 5 folds with the
    baseline's split seeds. Published on the real BSD10k: hF 0.788 ± 0.008."""

    dataset: str = ""
    store: str = ""
    groups: list[str] = field(default_factory=lambda: ["embeddings/shipped@none"])
    columns: list[str] | None = None  # audio and text
    split_preset: str = "baseline"
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    standardize: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(preset="mlp", hidden=512, lr=1e-3, epochs=30))
    out: str = "runs/heads/baseline"
    write_logits: bool = True


PUBLISHED_BASELINE_HF = (0.788, 0.008)


def run_baseline(cfg: BaselineConfig, log=print, progress: bool = True) -> dict:
    if not cfg.dataset:
        raise ValueError("dataset is required (the labelled BSD10k root)")
    from .training import train_head

    man = load_manifest(cfg.dataset, require_audio=False)
    targets = man.targets()
    st = Store(cfg.store or default_store_path(cfg.dataset))
    spec = InputSpec(groups=list(cfg.groups), columns=cfg.columns, prior=None)
    data0 = load_head_data(st, targets.ids, spec, targets.labels)
    pos = {i: k for k, i in enumerate(targets.ids)}
    out = Path(cfg.out)
    per_fold = []
    for f in cfg.folds:
        split = make_split(targets.ids, targets.labels, preset=cfg.split_preset, fold=int(f), dataset=man.name)
        idx = {p: np.array([pos[i] for i in split.part(p)], dtype=np.int64) for p in ("train", "val", "test")}
        std = Standardizer.fit(data0.X[torch.as_tensor(idx["train"])]) if cfg.standardize else None
        data = std.apply(data0) if std else data0
        res = train_head(cfg.train, data.subset(idx["train"]), data.subset(idx["val"]), progress=progress)
        logits = predict_logits([res], data)[0]
        test = hierarchical_scores(targets.labels[idx["test"]], logits[idx["test"]].argmax(-1), cfg.train.never_predicted)
        save_run(out / f"fold{f}", res, inputs=spec, groups=data.groups, standardizer=std, split=split,
                 metrics={"test": test.as_dict()}, config={"baseline": to_dict(cfg)},
                 provenance={"recipe": "baseline", "fold": int(f)})
        if cfg.write_logits:
            write_logits(st, f"heads/baseline/fold{f}", targets.ids, logits, fold=int(f), recipe="baseline")
        per_fold.append({"fold": int(f), "hP": test.hP, "hR": test.hR, "hF": test.hF})
        log(f"[baseline] fold {f}: test hP {test.hP:.4f} hR {test.hR:.4f} hF {test.hF:.4f}")
    m = {k: _mean_std([r[k] for r in per_fold]) for k in ("hP", "hR", "hF")}
    table = (f"baseline recipe ({', '.join(cfg.groups)} + {cfg.train.preset} head), {len(per_fold)} fold(s): "
             f"hF {m['hF'][0]:.4f} ± {m['hF'][1]:.4f} (hP {m['hP'][0]:.4f}, hR {m['hR'][0]:.4f}); "
             f"published official baseline on BSD10k: {PUBLISHED_BASELINE_HF[0]} ± {PUBLISHED_BASELINE_HF[1]}")
    write_json(out / "baseline.json", {"folds": per_fold, "summary": m, "config": to_dict(cfg),
                                       "published": PUBLISHED_BASELINE_HF})
    log(table)
    return {"folds": per_fold, "summary": m}
