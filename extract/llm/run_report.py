"""The report of one LLM-tier run: exit codes, the :class:`RunReport` printed at the end, and its
JSON (resolved config, counts, every rejected answer with its reason) and TOML (the resolved
config) files written next to the store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import LLMConfig, LLMRunConfig
from .response_cache import redact, redact_obj

EXIT_OK, EXIT_INCOMPLETE = 0, 3
EXIT_PENDING = EXIT_INCOMPLETE  # batches still open: re-run later


@dataclass
class RunReport:
    """What a run did; printed at the end and saved as JSON."""

    kind: str
    provider: str
    model: str
    group: str
    store: str
    n_clips: int = 0
    n_requests: int = 0  # unique requests (identical prompts are asked once)
    answered: int = 0  # clips with a usable prior / summary
    cached: int = 0  # unique requests answered from the cache
    sent: int = 0  # unique requests sent to the provider in this run
    missing: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)  # request failures + rejected answers
    dropped_labels: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    cost_note: str = ""
    cache: dict[str, int] = field(default_factory=dict)
    evaluation: dict[str, dict] = field(default_factory=dict)
    provider_report: dict[str, Any] = field(default_factory=dict)  # e.g. what an import matched
    pending: int = 0
    failed_requests: int = 0  # unique requests without an answer after their retries
    dry_run: str = ""
    seconds: float = 0.0
    written: bool = False
    not_written: str = ""  # why the table was not written
    report_path: str = ""

    @property
    def exit_code(self) -> int:
        """0 only for a written table with no failed request; 3 (re-run to resume) otherwise."""
        if self.dry_run:
            return EXIT_OK
        return EXIT_OK if self.written and not self.failed_requests and not self.pending else EXIT_INCOMPLETE

    def format(self) -> str:
        lines = [f"{self.group} ({self.provider}, model {self.model or '-'}) → {self.store}"]
        if self.dry_run:
            lines.append("  " + self.dry_run)
            return "\n".join(lines)
        lines.append(
            f"  clips {self.n_clips} · answered {self.answered} · missing {self.missing}"
            + (
                f" · requests {self.n_requests} (cached {self.cached}, sent {self.sent})"
                if self.n_requests
                else ""
            )
        )
        if self.failed_by_reason:
            lines.append(
                "  failed/rejected by reason: "
                + ", ".join(
                    f"{k} ×{v}" for k, v in sorted(self.failed_by_reason.items(), key=lambda x: -x[1])
                )
            )
        if self.dropped_labels:
            lines.append(
                "  dropped label entries: "
                + ", ".join(f"{k} ×{v}" for k, v in sorted(self.dropped_labels.items()))
            )
        if self.usage:
            u = self.usage
            cost = f"${self.cost_usd:.4f}" if self.cost_usd is not None else f"unknown ({self.cost_note})"
            lines.append(
                f"  tokens: {u.get('input_tokens', 0):,} in ({u.get('cached_input_tokens', 0):,} cached) + "
                f"{u.get('output_tokens', 0):,} out · HTTP attempts {u.get('requests', 0)} · retries "
                f"{u.get('retries', 0)} · cost {cost}"
            )
        if self.cache:
            lines.append("  response cache: " + ", ".join(f"{k} {v}" for k, v in self.cache.items()))
        for part, s in self.evaluation.items():
            if "accuracy" in s:
                lines.append(
                    f"  prior alone on {part}: top-1 acc {s['accuracy']:.4f} · hF {s['hF']:.4f} · "
                    f"top-level acc {s['top_accuracy']:.4f} · n={s['n_scored']} "
                    f"(coverage {s['coverage']:.3f})"
                )
        for k, v in self.provider_report.items():
            lines.append(f"  {k}: {v}")
        if self.pending:
            lines.append(
                f"  {self.pending} request(s) pending in open batches: nothing written; re-run later"
            )
        if self.failed_requests:
            lines.append(
                f"  FAILED: {self.failed_requests} of {self.n_requests} request(s) got no answer after their "
                "retries; the answers received are cached: re-run the same command to retry only those"
            )
        if self.not_written:
            lines.append(f"  NOT WRITTEN: {self.not_written}")
        elif self.written and self.failed_requests:
            lines.append(f"  written with {self.missing} missing row(s) (exit status 3)")
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        lines.append(f"  {self.seconds:.1f} s")
        return "\n".join(lines)


def report_path(cfg: LLMConfig, store: Path) -> Path:
    """Where the run's JSON report goes: ``cfg.report``, else ``llm_reports/`` next to the store."""
    return (
        Path(cfg.report)
        if cfg.report
        else store.parent / "llm_reports" / f"{cfg.kind}-{cfg.table_name()}.json"
    )


def save_report(report: RunReport, rejects: list | None, cfg: LLMConfig) -> None:
    """Write the report JSON and the resolved config TOML (not for a dry run); sets ``report_path``."""
    if not report.dry_run:
        path = report_path(cfg, Path(report.store))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"report": asdict(report), "config": cfg.as_dict(), "rejected": rejects or []}
        path.write_text(json.dumps(redact_obj(json.loads(json.dumps(data, default=str))), indent=1))
        path.with_suffix(".toml").write_text(redact(LLMRunConfig(cfg).to_toml()))
        report.report_path = str(path)
