"""Predictions of saved heads on any dataset whose cache holds their inputs (``python -m heads
predict``), and submission files from an ensemble (``python -m heads submit --ensemble``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cache import tables
from cache.manifest import load_manifest
from cache.metric import HierarchicalScores
from cache.provenance import base_provenance
from cache.store import default_store_path

from .data import InputError, InputSpec, existing_store, extract_command, load_head_data, resolve_groups
from .ensemble import decode, mean_logits
from .json_files import read_json
from .run_folder import load_run, run_parameters
from .submission import write_meta_yaml, write_output_csv
from .training import predict_logits


def predict_dataset(
    run_dirs: Sequence[str | Path],
    dataset: str,
    out: str | Path,
    store: str = "",
    label: str = "",
    decoding: str = "argmax",
    logits_name: str = "",
    log=print,
) -> Path:
    """Predict every clip of a dataset (its cache must hold the runs' embeddings and priors) with the
    mean logits of saved heads (run folders, or ensemble.json files naming them); writes
    ``<label>.output.csv``."""
    if not run_dirs:
        raise ValueError("name at least one trained run folder (or an ensemble.json)")
    dirs: list[Path] = []
    for r in run_dirs:
        p = Path(r)
        if p.suffix == ".json":
            dirs.extend(Path(d) for d in read_json(p)["run_dirs"])
        else:
            dirs.append(p)
    man = load_manifest(dataset, require_audio=False, keep_non_targets=True)
    st = existing_store(store or default_store_path(dataset), dataset, write=bool(logits_name))
    all_logits = []
    for d in dirs:
        run = load_run(d)
        groups = resolve_groups(st, run.inputs.groups) if run.inputs.groups else []
        if groups != run.groups:
            raise InputError(
                f"{d}: trained on {run.groups} but {st.path} has {groups}: extract the same embeddings "
                "(same backbone and checkpoint) first: "
                + "; ".join(extract_command(st, g) for g in run.groups if g not in groups)
            )
        data = load_head_data(st, man.ids, InputSpec(groups, run.inputs.columns, run.inputs.prior))
        if run.standardizer is not None:
            data = run.standardizer.apply(data)
        logits = predict_logits([run.head], data, device="auto")[0]
        nan = ~np.isfinite(logits).all(axis=1)
        if nan.any():
            raise InputError(
                f"{d}: the head's logits hold NaN or infinite values for {int(nan.sum())} clip(s) of "
                f"{dataset} although its inputs are finite: its weights ({d}/head.pt) are damaged; "
                "retrain it"
            )
        all_logits.append(logits)
        bad = int((~data.feature_ok).sum()) if data.feature_ok is not None else 0
        log(f"[predict] {d}: {len(data)} clips" + (f" ({bad} with failed features)" if bad else ""))
    logits = mean_logits(np.stack(all_logits))
    pred, score = decode(logits, decoding)
    label = label or "predictions"
    path = write_output_csv(Path(out) / f"{label}.output.csv", man.ids, pred, score)
    if logits_name:
        members = [str(d) for d in dirs]
        tables.write_logits(
            st, logits_name, man.ids, logits, attrs=base_provenance("heads", run=logits_name, members=members)
        )
    log(f"[predict] wrote {path}")
    return path


def submit_from_ensemble(
    ensemble_json: str | Path,
    dataset: str,
    out: str | Path,
    label: str,
    store: str = "",
    decoding: str = "",
    name: str = "",
    description: str = "",
    log=print,
) -> dict:
    """Submission files for an unlabelled set from a pipeline/heads ensemble.json (its run folders)."""
    ens = read_json(ensemble_json)
    rule = decoding or ens.get("decoding", "argmax")
    csv_path = predict_dataset(
        ens["run_dirs"], dataset, out, store=store, label=label, decoding=rule, log=log
    )
    sc = ens["scores"][rule]["test"]
    dev = HierarchicalScores(
        hP=sc["hP"],
        hR=sc["hR"],
        hF=sc["hF"],
        accuracy=sc["accuracy"],
        top_accuracy=sc["top_accuracy"],
        never_predicted=sc["never_predicted"],
        n_items=sc["n_items"],
        per_class=sc["per_class"],
    )
    n_params = sum(run_parameters(d) for d in ens["run_dirs"])
    meta = write_meta_yaml(
        Path(out) / f"{label}.meta.yaml",
        label=label,
        name=name or label,
        abbreviation=label,
        description=description or f"ensemble of {len(ens['run_dirs'])} heads ({rule} decoding)",
        dev_scores=dev,
        dev_split="see ensemble.json",
        n_parameters=n_params,
        parameters_count="trainable parameters of the ensemble's heads; frozen feature extractors "
        "and the LLM not counted",
        members=ens.get("members", []),
    )
    return {"csv": csv_path, "meta": meta}
