"""What each pipeline step saves under the pipeline's ``out/`` folder and loads back.

* a stage of one model: ``stage<s>/<model>/`` with ``runs/cXX/`` (run folders of the best
  configurations), ``logits.npz`` (every configuration's logits per set), ``search.md``,
  ``histories.json`` and ``search.json``, written last: a stage is complete once it exists, and a
  re-run reuses it while its digest (inputs and settings) is unchanged;
* pseudo-labels: ``pseudo/pseudo.json`` (members, selection, digest; the labels themselves are
  ``pseudo_labels/<name>-stage1`` tables in the stores);
* the ensemble: ``ensemble/ensemble.json`` and ``ensemble/predictions.npz`` (mean logits per set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.metric import HierarchicalScores
from cache.splits import Split

from .json_files import read_json, write_json
from .pipeline_config import ModelSpec, StageSettings
from .pipeline_data import SETS, ModelData
from .run_folder import save_run
from .search import results_table
from .training import RunResult


def stage_dir(out: Path, stage: int, model: str) -> Path:
    return out / f"stage{stage}" / model


@dataclass(frozen=True)
class StageOutcome:
    """One model's search in one stage."""

    stage: int
    model: str
    names: list[str]  # run names, one per configuration
    summaries: list[dict]  # lr, λ, seed, best epoch, val scores
    order: list[int]  # configurations by validation hF, best first
    logits: dict[str, np.ndarray]  # set -> (K, N, C)
    run_dirs: dict[int, Path]  # saved configurations (best `keep`)
    histories: dict[int, list[dict]]
    digest: str

    @property
    def best(self) -> int:
        return self.order[0]


def save_stage_runs(
    folder: Path,
    results: Sequence[RunResult],
    names: Sequence[str],
    kept: Sequence[int],
    test_scores: dict[int, HierarchicalScores],
    *,
    stage: int,
    spec: ModelSpec,
    settings: StageSettings,
    model: ModelData,
    split: Split,
    digest: str,
    extra_metrics: dict | None = None,
) -> dict[int, Path]:
    """Run folders ``runs/cXX`` of the configurations ``kept``, with their test scores (and
    ``extra_metrics`` in each ``metrics.json``: stage 2's noisy/clean overlap counts)."""
    run_dirs = {}
    for k in kept:
        run_dirs[k] = save_run(
            folder / "runs" / f"c{k:02d}",
            results[k],
            inputs=spec.inputs(),
            groups=model.groups,
            standardizer=model.standardizer,
            split=split,
            metrics={"test": test_scores[k].as_dict(), "run": names[k], **(extra_metrics or {})},
            config={
                "stage": stage,
                "model": dataclasses.asdict(spec),
                "stage_settings": dataclasses.asdict(settings),
            },
            provenance={
                "stage": stage,
                "model": spec.name,
                "run": names[k],
                "split_ids_sha256": split.ids_sha256,
                "digest": digest,
            },
        )
    return {k: Path(v) for k, v in run_dirs.items()}


def save_stage(
    folder: Path, outcome: StageOutcome, results: Sequence[RunResult], ids: dict[str, np.ndarray], extra: dict
) -> None:
    """``logits.npz``, ``search.md``, ``histories.json``, then ``search.json`` (with ``extra``)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / "logits.npz",
        **{s: v for s, v in outcome.logits.items()},
        **{f"ids_{s}": ids[s].astype(str) for s in outcome.logits},
    )
    (folder / "search.md").write_text(
        f"# stage {outcome.stage} — {outcome.model}\n\n{results_table(results, outcome.names)}\n"
    )
    write_json(folder / "histories.json", {str(k): h for k, h in outcome.histories.items()})
    write_json(
        folder / "search.json",
        {
            "digest": outcome.digest,
            "names": outcome.names,
            "summaries": outcome.summaries,
            "order": outcome.order,
            "run_dirs": {str(k): str(v) for k, v in outcome.run_dirs.items()},
            **extra,
        },
    )


def load_stage(
    out: Path, stage: int, model: str, digest: str | None = None, runs_kept: int = 0
) -> StageOutcome | None:
    """A complete saved stage (with the given digest, if one is given), or None. ``runs_kept``: the number
    of best configurations whose run folders the caller needs (a stage saved with fewer is not reused)."""
    folder = stage_dir(out, stage, model)
    if not (folder / "search.json").exists() or not (folder / "logits.npz").exists():
        return None
    meta = read_json(folder / "search.json")
    if digest is not None and meta.get("digest") != digest:
        return None
    run_dirs = {int(k): Path(v) for k, v in meta["run_dirs"].items()}
    if not all((p / "head.pt").exists() for p in run_dirs.values()):
        return None
    if any(k not in run_dirs for k in meta["order"][:runs_kept]):  # keep / candidates_per_model were raised
        return None
    with np.load(folder / "logits.npz") as z:
        logits = {s: z[s] for s in SETS if s in z}
    hist = read_json(folder / "histories.json") if (folder / "histories.json").exists() else {}
    return StageOutcome(
        stage,
        model,
        meta["names"],
        meta["summaries"],
        meta["order"],
        logits,
        run_dirs,
        {int(k): v for k, v in hist.items()},
        meta["digest"],
    )


# ---------------------------------------------------------------------------------- pseudo-labels
@dataclass(frozen=True)
class PseudoLabels:
    digest: str  # of the members and their stage-1 digests (part of the stage 2 and 3 digests)
    members: list[str]  # run names of the stage-1 configurations averaged
    probs: dict[str, np.ndarray]  # clean / noisy -> (N, C) float32


def _pseudo_json(out: Path) -> Path:
    return out / "pseudo" / "pseudo.json"


def save_pseudo_summary(out: Path, table: str, members: list[str], selection: dict, digest: str) -> Path:
    """``pseudo/pseudo.json``: the table path, the members averaged, the selection and the digest."""
    return write_json(
        _pseudo_json(out), {"table": table, "members": members, "selection": selection, "digest": digest}
    )


def load_pseudo_summary(out: Path) -> dict | None:
    """``pseudo/pseudo.json`` as written by :func:`save_pseudo_summary`, or None before pseudo-labels
    were made."""
    path = _pseudo_json(out)
    return read_json(path) if path.exists() else None


# ---------------------------------------------------------------------------------------- ensemble
@dataclass(frozen=True)
class EnsembleResult:
    summary: (
        dict  # what ensemble.json holds: stage, members, run_dirs, selection, decoding, n_parameters, scores
    )
    scores: dict[str, dict[str, HierarchicalScores]]  # decoding -> val / test -> scores
    mean: dict[str, np.ndarray]  # set -> mean logits (N, C)


def save_ensemble(
    out: Path,
    ens: EnsembleResult,
    ids: dict[str, np.ndarray],
    labels_clean: np.ndarray,
    idx: dict[str, np.ndarray],
) -> None:
    """``ensemble/ensemble.json`` and ``ensemble/predictions.npz`` (mean logits, ids, clean labels,
    val/test rows)."""
    folder = out / "ensemble"
    write_json(folder / "ensemble.json", ens.summary)
    np.savez_compressed(
        folder / "predictions.npz",
        **{f"logits_{s}": v for s, v in ens.mean.items()},
        **{f"ids_{s}": ids[s].astype(str) for s in ens.mean},
        labels_clean=labels_clean,
        val_idx=idx["val"],
        test_idx=idx["test"],
    )
