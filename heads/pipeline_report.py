"""The pipeline's results report: ``report/results.md`` and ``results.json`` (one row per untrained
prior, per model and stage (best configuration), the pseudo-label ensemble and the final ensemble
with both decodings; a summary of audio-only, prior-only and fused results), the final ensemble's
per-class table and confusion matrix, and the training curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cache.tables import priors_path, read_priors

from .ensemble import DECODINGS, decode
from .json_files import write_json
from .pipeline_config import PipelineConfig, model_kind
from .pipeline_data import PipelineData
from .report import plot_curves, write_classification_report
from .stage_store import EnsembleResult, StageOutcome


def comparison_table(rows: Sequence[dict]) -> str:
    """Markdown table of result rows: name, what, val hF, test hP/hR/hF."""
    f = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["| system | inputs | val hF | test hP | test hR | test hF |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r.get('what', '')} | {f(r.get('val_hF'))} | {f(r.get('test_hP'))} | "
            f"{f(r.get('test_hR'))} | {f(r.get('test_hF'))} |"
        )
    return "\n".join(lines)


def _row(
    data: PipelineData, never_predicted: str, name: str, what: str, logits: np.ndarray, kind: str
) -> dict:
    v = data.scores(logits[data.idx["val"]], "val", never_predicted)
    t = data.scores(logits[data.idx["test"]], "test", never_predicted)
    return {
        "name": name,
        "what": what,
        "val_hF": v.hF,
        "test_hP": t.hP,
        "test_hR": t.hR,
        "test_hF": t.hF,
        "kind": kind,
    }


def report_rows(
    cfg: PipelineConfig,
    data: PipelineData,
    outcomes: dict[tuple[int, str], StageOutcome],
    pseudo: dict | None,
    ens: EnsembleResult,
) -> list[dict]:
    """The results table's rows; ``outcomes`` holds every reported (stage, model), ``pseudo`` is
    ``pseudo.json`` (None when no pseudo-labels were made)."""
    conv = cfg.train.never_predicted
    rows = []
    for prior in sorted({m.prior for m in cfg.models if m.prior}):
        p, miss = read_priors(data.stores["clean"], prior, data.ids["clean"])
        lg = np.log(np.clip(p, 1e-12, None))
        rows.append(
            _row(
                data,
                conv,
                f"prior {prior} (argmax, untrained)",
                f"{priors_path(prior)}; {int(miss.sum())} missing",
                lg,
                "prior-only",
            )
        )
    for spec in cfg.models:
        kind = model_kind(spec)
        for stage in cfg.effective_stages():
            if stage > 1 and spec.role != "system":
                continue
            o = outcomes[(stage, spec.name)]
            what = (
                " + ".join(spec.groups + ([f"prior {spec.prior}"] if spec.prior else []))
                + f" [{spec.preset}]"
            )
            rows.append(
                _row(
                    data,
                    conv,
                    f"{spec.name} stage {stage} best ({spec.label or kind})",
                    what,
                    o.logits["clean"][o.best],
                    kind,
                )
            )
    if pseudo is not None:
        rows.append(
            {
                "name": "pseudo-label ensemble (stage 1)",
                "what": ", ".join(pseudo["members"]),
                "val_hF": pseudo["selection"]["val_hF"],
                "kind": "pseudo",
            }
        )
    for rule in DECODINGS:
        sc = ens.scores[rule]
        rows.append(
            {
                "name": f"ensemble stage {ens.summary['stage']} ({rule})",
                "what": ", ".join(ens.summary["members"]),
                "val_hF": sc["val"].hF,
                "test_hP": sc["test"].hP,
                "test_hR": sc["test"].hR,
                "test_hF": sc["test"].hF,
                "kind": "ensemble",
            }
        )
    return rows


def comparison_summary(rows: list[dict], decoding: str) -> str:
    """Audio-only, prior-only, fused and the submitted ensemble (each chosen on validation hF) on the
    test split."""

    def best(kind):
        c = [r for r in rows if r.get("kind") == kind and r.get("test_hF") is not None]
        return max(c, key=lambda r: r["val_hF"]) if c else None

    audio, prior = best("audio-only"), best("prior-only")
    fused_rows = [r for r in rows if r.get("kind") in ("fused", "ensemble") and r.get("test_hF") is not None]
    fused = max(fused_rows, key=lambda r: r["val_hF"]) if fused_rows else None
    ens = [r for r in rows if r.get("kind") == "ensemble"]
    final = next((r for r in ens if r["name"].endswith(f"({decoding})")), None)
    lines = ["| comparison (chosen on validation hF) | system | test hF |", "|---|---|---|"]
    for label, r in (
        ("audio-only", audio),
        ("prior-only", prior),
        ("fused (best single or ensemble)", fused),
        ("submitted ensemble", final),
    ):
        if r is not None:
            lines.append(f"| {label} | {r['name']} | {r['test_hF']:.4f} |")
    if fused and (audio or prior):
        others = [r["test_hF"] for r in (audio, prior) if r]
        verdict = "yes" if fused["test_hF"] > max(others) else "NO"
        lines.append(f"\nFused better than audio-only and prior-only on the test split: {verdict}")
    return "\n".join(lines)


def write_report(
    folder: Path,
    cfg: PipelineConfig,
    data: PipelineData,
    outcomes: dict[tuple[int, str], StageOutcome],
    pseudo: dict | None,
    ens: EnsembleResult,
) -> str:
    """Write the report files into ``folder``; returns the results table and the summary."""
    rows = report_rows(cfg, data, outcomes, pseudo, ens)
    table = comparison_table(rows)
    summary = comparison_summary(rows, cfg.ensemble.decoding)
    rule = cfg.ensemble.decoding
    test_i = data.idx["test"]
    pred, _ = decode(ens.mean["clean"][test_i], rule)
    paths = write_classification_report(
        folder,
        "ensemble_test",
        data.labels["clean"][test_i],
        pred,
        ens.scores[rule]["test"],
        f"Ensemble ({rule}) on the clean test split",
    )
    hist = {
        f"{model} s{stage}": o.histories[o.best]
        for (stage, model), o in outcomes.items()
        if o.best in o.histories
    }
    curves = plot_curves(hist, folder / "training_curves.png", "best configuration of each model and stage")
    conv = cfg.train.never_predicted
    noisy = data.noisy_summary() if "noisy" in data.stores else None
    sel = ens.summary.get("selection", {})
    how = (
        "fixed composition (ensemble.members)"
        if sel.get("method") == "fixed"
        else f"chosen by '{sel.get('method', cfg.ensemble.method)}' selection on validation hF"
    )
    notes = f"Ensemble: {how}: {', '.join(ens.summary['members'])}.\n"
    if noisy is not None:
        notes += (
            f"Stage 2: {noisy['noisy_in_clean_eval']} noisy clip(s) are in the clean validation/test split; "
            f"{noisy['excluded_noisy_in_clean_eval']} excluded from training "
            f"(data.exclude_noisy_overlap = {str(noisy['exclude_noisy_overlap']).lower()}).\n"
        )
    md = (
        f"# Results — {cfg.name}\n\n{data.split.describe()}; metric: macro hierarchical P/R/F, "
        f"never-predicted-class convention '{conv}'.\n\n{notes}\n{table}\n\n{summary}\n\n"
        f"Per-class table and confusion matrix: [{paths['markdown'].name}]({paths['markdown'].name}); "
        f"training curves: [{curves.name}]({curves.name}).\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.md").write_text(md)
    write_json(
        folder / "results.json",
        {
            "rows": rows,
            "summary": summary,
            "never_predicted": conv,
            "split": data.split.describe(),
            "ensemble_selection": sel.get("method"),
            "noisy_overlap": noisy,
        },
    )
    return table + "\n\n" + summary
