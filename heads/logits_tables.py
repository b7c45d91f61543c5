"""Pseudo-labels, ensembles and reports from any ``logits/<run>`` tables of a store (the head tier's
or the fine-tune tier's): ``python -m heads pseudo-labels|ensemble|report`` without a pipeline config."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cache import tables
from cache.manifest import load_manifest
from cache.metric import format_table, hierarchical_scores
from cache.provenance import base_provenance
from cache.store import Store, default_store_path

from .data import InputError, existing_store, load_split
from .ensemble import DECODINGS, decode, mean_logits, select, softmax
from .json_files import write_json
from .report import write_classification_report


def match_runs(store: Store, patterns: Sequence[str]) -> list[str]:
    """Run names (``logits/<run>``) in ``store`` matching any of ``patterns`` (glob), sorted."""
    names = tables.table_names(store, tables.LOGITS)
    out = sorted({t for t in names for p in patterns if fnmatch.fnmatchcase(t, p)})
    if not out:
        raise InputError(
            f"{store.path}: no {tables.logits_path('<run>')} table matches {list(patterns)}; "
            f"it has {names[:20]}"
        )
    return out


def stack_logits(store: Store, runs: Sequence[str], ids: Sequence[str]) -> np.ndarray:
    """(len(runs), N, C) logits of ``runs`` for ``ids``."""
    return np.stack([tables.read_logits(store, r, ids) for r in runs])


def pseudo_labels_from_runs(
    stores: Sequence[Store], runs: Sequence[str], name: str, log=print
) -> dict[str, np.ndarray]:
    """Softmax of the mean logits of ``runs`` for every clip of each store; written as
    pseudo_labels/<name>."""
    out = {}
    for store in stores:
        names = match_runs(store, runs)
        ids = store.read_table(tables.logits_path(names[0]), names=["logits"]).ids
        probs = softmax(mean_logits(stack_logits(store, names, ids))).astype(np.float32)
        path = tables.write_pseudo_labels(
            store, name, ids, probs, attrs=base_provenance("heads", name=name, members=names)
        )
        log(f"[pseudo-labels] {store.path}: {path} from {len(names)} run(s) for {len(ids)} clips")
        out[str(store.path)] = probs
    return out


def ensemble_from_runs(
    dataset: str,
    runs: Sequence[str],
    out: str | Path,
    store: str = "",
    split_file: str = "",
    split_preset: str = "cpjku",
    fold: int = 0,
    method: str = "greedy",
    max_size: int = 0,
    never_predicted: str = "zero",
    log=print,
) -> dict:
    """Select an ensemble of logits tables on validation hF; scores on val/test with both decodings."""
    man = load_manifest(dataset, require_audio=False)
    targets = man.targets()
    split = load_split(targets, split_file, split_preset, fold, None, man.name)
    st = existing_store(store or default_store_path(dataset), dataset, write=True)
    names = match_runs(st, runs)
    lab = dict(zip(targets.ids.tolist(), targets.labels.tolist(), strict=True))
    parts = {p: split.part(p) for p in ("val", "test")}
    y = {p: np.array([lab[i] for i in ids]) for p, ids in parts.items()}
    stacks = {p: stack_logits(st, names, ids) for p, ids in parts.items()}
    sel = select(stacks["val"], y["val"], method, max_size, never_predicted=never_predicted)
    members = [names[i] for i in sel.members]
    scores = {
        rule: {
            p: hierarchical_scores(
                y[p], decode(mean_logits(stacks[p], sel.members), rule)[0], never_predicted
            )
            for p in parts
        }
        for rule in DECODINGS
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = {
        "members": members,
        "candidates": names,
        "selection": sel.as_dict(names),
        "scores": {r: {p: s.as_dict() for p, s in v.items()} for r, v in scores.items()},
        "split": split.describe(),
    }
    write_json(out / "ensemble.json", res)
    mean_test = mean_logits(stacks["test"], sel.members)
    np.savez_compressed(
        out / "predictions.npz",
        logits_test=mean_test,
        labels_test=y["test"],
        ids_test=np.array(parts["test"], dtype=str),
        logits_val=mean_logits(stacks["val"], sel.members),
        labels_val=y["val"],
        ids_val=np.array(parts["val"], dtype=str),
    )
    write_classification_report(
        out,
        "ensemble_test",
        y["test"],
        decode(mean_test, "argmax")[0],
        scores["argmax"]["test"],
        "Ensemble (argmax) on the test split",
    )
    log(f"[ensemble] {len(members)} of {len(names)} run(s): {members}")
    for rule in DECODINGS:
        log(
            f"  {rule:15s} val hF {scores[rule]['val'].hF:.4f}  test hP {scores[rule]['test'].hP:.4f} "
            f"hR {scores[rule]['test'].hR:.4f} hF {scores[rule]['test'].hF:.4f}"
        )
    return res


def report_from_predictions(
    predictions: str | Path, out: str | Path, rule: str = "argmax", never_predicted: str = "zero", log=print
) -> str:
    """Per-class table and confusion matrix from a ``predictions.npz`` (test part) written by
    :func:`ensemble_from_runs` or by the pipeline's ensemble step."""
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
