"""``python -m heads cv``: the pipeline on each fold of the split preset, test hF mean ± std."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cache.config import to_dict

from .ensemble import DECODINGS
from .json_files import write_json
from .pipeline import Pipeline
from .pipeline_config import PipelineConfig


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return float(np.mean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def cross_validate(
    cfg: PipelineConfig, folds: Sequence[int], out: str | Path, log=print, progress: bool = True
) -> dict:
    """Run the pipeline on each fold's split (preset ``data.split_preset``) and report test hF mean ± std."""
    out = Path(out)
    per_fold = []
    for f in folds:
        data = dataclasses.replace(cfg.data, split_file="", fold=int(f))
        fcfg = dataclasses.replace(cfg, data=data, out=str(out / f"fold{f}"))
        pipe = Pipeline(fcfg, progress=progress, log=log)
        pipe.data()
        pipe.run_stages()
        ens = pipe.make_ensemble()
        pipe.report(ens)
        row = {"fold": int(f)}
        for rule in DECODINGS:
            t = ens.summary["scores"][rule]["test"]
            row[rule] = {"hP": t["hP"], "hR": t["hR"], "hF": t["hF"]}
        per_fold.append(row)
        log(
            f"[cv] fold {f}: test hF {row['argmax']['hF']:.4f} (argmax), "
            f"{row['expected-credit']['hF']:.4f} (expected-credit)"
        )
    summary = {
        rule: {m: mean_std([r[rule][m] for r in per_fold]) for m in ("hP", "hR", "hF")} for rule in DECODINGS
    }
    lines = ["| fold | hP | hR | hF (argmax) | hF (expected-credit) |", "|---|---|---|---|---|"]
    for r in per_fold:
        lines.append(
            f"| {r['fold']} | {r['argmax']['hP']:.4f} | {r['argmax']['hR']:.4f} | {r['argmax']['hF']:.4f} | "
            f"{r['expected-credit']['hF']:.4f} |"
        )
    s = summary["argmax"]
    lines.append(
        f"| mean ± std | {s['hP'][0]:.4f} ± {s['hP'][1]:.4f} | {s['hR'][0]:.4f} ± {s['hR'][1]:.4f} | "
        f"{s['hF'][0]:.4f} ± {s['hF'][1]:.4f} | {summary['expected-credit']['hF'][0]:.4f} ± "
        f"{summary['expected-credit']['hF'][1]:.4f} |"
    )
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.md").write_text(f"# 5-fold evaluation ({cfg.data.split_preset} splits)\n\n{table}\n")
    write_json(out / "cv.json", {"folds": per_fold, "summary": summary, "config": to_dict(cfg)})
    log(table)
    return {"folds": per_fold, "summary": summary, "table": table}
