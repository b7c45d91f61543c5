"""The table step of one LLM-tier run: where the store is, whether the run's table may replace the
existing one, and writing ``llm/priors/<name>`` or ``llm/summaries/<name>`` with its provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cache.provenance import base_provenance
from cache.taxonomy import NUM_CLASSES

from .config import LLMConfig
from .response_cache import redact
from .run_report import RunReport


def store_path(cfg: LLMConfig) -> Path:
    """The store the run writes to: ``cfg.store``, else the dataset's default store."""
    from cache.store import default_store_path

    return Path(cfg.store) if cfg.store else default_store_path(cfg.dataset)


def why_not_write(path: Path, group: str, ids: list[str], missing: np.ndarray, reasons: list[str]) -> str:
    """Why the new table must not be written ('' = write it): no usable row, or good rows of
    the existing table that this run's failed requests would replace with missing ones."""
    if len(ids) and missing.all():
        return f"no row has a usable answer; {group} is left as it was (the reasons are in the report)"
    failed = [
        i for i, m, r in zip(ids, missing, reasons, strict=True) if m and r.startswith("request failed")
    ]
    if not failed or not path.exists():
        return ""
    from cache.store import Store

    try:
        store = Store(path, mode="r")
        if not store.has(group):
            return ""
        old = store.read_table(group, names=["missing"])
    except Exception:  # an unreadable or incomplete old table holds no good rows to protect
        return ""
    good = {str(i) for i, m in zip(old.ids, old["missing"], strict=True) if not m}
    lost = sum(1 for i in failed if i in good)
    if lost:
        return (
            f"{lost} row(s) that the existing {group} answers failed in this run; the existing table is "
            "kept unchanged"
        )
    return ""


def write_run_table(
    path: Path,
    root: Path,
    manifest,
    cfg: LLMConfig,
    provider,
    extra_attrs: dict[str, Any],
    report: RunReport,
    ids: list[str],
    values: Any,
    missing: np.ndarray,
    reasons: list[str],
    answers: list[str],
) -> None:
    """Write the run's priors or summaries table with its provenance; sets ``report.written``."""
    from cache.store import Store

    store = Store(path)
    attrs = base_provenance(  # "kind" itself is the store's (table/rows)
        "extract.llm",
        dataset=str(root.resolve()),
        manifest_digest=manifest.digest(),
        llm_output=cfg.kind,
    )
    attrs.update(provider.provenance())
    attrs.update(extra_attrs)
    attrs["counts"] = {
        "clips": report.n_clips,
        "answered": report.answered,
        "missing": report.missing,
        "requests": report.n_requests,
        "cached": report.cached,
        "sent": report.sent,
        "failed_by_reason": report.failed_by_reason,
        "dropped_labels": report.dropped_labels,
    }
    attrs["evaluation"] = report.evaluation
    attrs["config"] = cfg.as_dict()
    if cfg.kind == "priors":
        arrays = {
            "prior": np.asarray(values, dtype=np.float32).reshape(len(ids), NUM_CLASSES),
            "missing": missing,
            "reason": list(reasons),
            "answer": [redact(a) for a in answers],
        }
    else:
        arrays = {
            "text": [t if not m else "" for t, m in zip(values, missing, strict=True)],
            "missing": missing,
            "reason": list(reasons),
        }
    store.write_table(cfg.group(), ids, arrays, attrs)
    report.written = True
