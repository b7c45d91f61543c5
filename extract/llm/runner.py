"""One LLM-tier run: dataset → prompts → (cache | provider) → parsed priors or summaries → store.

Rows are every usable row of the dataset's metadata CSV (non-target rows included, audio
not required). Written tables (schema v1):

* ``llm/priors/<name>``: ``ids``, ``prior`` (N, 23) float32, ``missing`` (N,) bool, plus
  ``reason`` (why a row is missing, '' otherwise) and ``answer`` (the raw answer of every
  rejected row, '' otherwise);
* ``llm/summaries/<name>``: ``ids``, ``text``, ``missing``, ``reason``.

Missing rows hold zeros in ``prior`` and '' in ``text``; the mask is the truth. A report
JSON (resolved config, counts, every rejected answer with its reason, scores of the prior
alone on labelled rows) and the resolved config as TOML are written next to the store.

A run is a success (exit 0) only when no request failed and some row is usable. Requests
that failed after their retries end the run with exit 3 (the answers received are cached,
so the same command resumes); such a run never replaces good rows of an existing table
(the table is then kept as it is), and a table with no usable row is never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cache.progress import progress
from cache.provenance import base_provenance
from cache.taxonomy import NUM_CLASSES

from .config import LLMConfig, LLMRunConfig
from .costs import estimate, prices_for
from .errors import UserError
from .evaluate import score_prior
from .output import emit
from .parsing import LabelMapper, count_drops
from .prompts import build_template, load_class_texts
from .providers.base import ChatProvider, ChatRequest, ChatResult, LocalTask, build_provider
from .response_cache import ResponseCache, redact, redact_obj, request_key

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


def _durations(paths: list[Path]) -> list[float | None]:
    """Duration in seconds of each clip's audio (None where the file is missing or unreadable)."""
    import soundfile as sf

    listing: dict[str, set[str]] = {}
    out: list[float | None] = []
    for p in paths:
        folder = str(p.parent)
        if folder not in listing:
            listing[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if p.name not in listing[folder]:
            out.append(None)
            continue
        try:
            out.append(float(sf.info(str(p)).duration))
        except Exception:  # unreadable audio: the prompt just has no duration
            out.append(None)
    return out


def _store_path(cfg: LLMConfig) -> Path:
    from cache.store import default_store_path

    return Path(cfg.store) if cfg.store else default_store_path(cfg.dataset)


def _report_path(cfg: LLMConfig, store: Path) -> Path:
    return (
        Path(cfg.report)
        if cfg.report
        else store.parent / "llm_reports" / f"{cfg.kind}-{cfg.table_name()}.json"
    )


def _eval_parts(
    cfg: LLMConfig, ids: list[str], explicit: dict[str, list[str]], dataset_name: str
) -> dict[str, list[str]]:
    """Which rows to score the prior on: the provider's parts, else the split's parts when the
    split was made from this dataset, else all rows."""
    if explicit:
        return explicit
    if cfg.split:
        from cache.splits import Split

        split = Split.load(cfg.split)
        if split.dataset == dataset_name:
            known = set(ids)
            parts = {p: [i for i in split.part(p) if i in known] for p in ("train", "val", "test")}
            if any(parts.values()):
                return {k: v for k, v in parts.items() if v}
    return {"all": list(ids)}


def read_truth(path: str | Path) -> dict[str, int]:
    """``id,class`` CSV (e.g. the demo's ``*-truth.csv``) as {id: class index}; other labels are skipped."""
    import csv

    from cache.taxonomy import CLASS_INDEX

    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in reader.fieldnames or "class" not in reader.fieldnames:
            raise ValueError(f"{path}: truth file needs the columns id,class (has {reader.fieldnames})")
        for row in reader:
            code = (row.get("class") or "").strip().lower()
            if code in CLASS_INDEX:
                out[str(row["id"]).strip()] = CLASS_INDEX[code]
    return out


def build_requests(
    provider: ChatProvider, template, manifest, durations: list[float | None] | None = None
) -> tuple[list[str], dict[str, ChatRequest]]:
    """The cache key of every clip (in manifest order) and the unique requests by key."""
    durations = durations or [None] * len(manifest)
    options = provider.request_options(template.kind)
    system_sha = hashlib.sha256(template.system.encode()).hexdigest()
    keys: list[str] = []
    requests: dict[str, ChatRequest] = {}
    for i in range(len(manifest)):
        user = template.user_message(
            manifest.title[i], manifest.tags[i], manifest.description[i], durations[i]
        )
        key = request_key(
            provider=provider.name,
            model=provider.model,
            api=provider.api,
            prompt_version=template.version,
            system_sha256=system_sha,
            user=user,
            options=options,
        )
        keys.append(key)
        if key not in requests:
            requests[key] = ChatRequest(
                key,
                [{"role": "system", "content": template.system}, {"role": "user", "content": user}],
                template.kind,
            )
    return keys, requests


class Runner:
    """Runs one config; ``run()`` returns (exit code, RunReport)."""

    def __init__(self, config: LLMConfig, out=None):
        self.cfg = config.validate()
        self.out = out  # None: sys.stdout at the time of printing
        if not self.cfg.dataset:
            raise ValueError("no dataset: pass --dataset DIR")
        self.root = Path(self.cfg.dataset)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")

    def _print(self, msg: str) -> None:
        emit(redact(msg), self.out)

    def run(self) -> tuple[int, RunReport]:
        from cache.manifest import load_manifest

        t0 = time.time()
        cfg = self.cfg
        store_path = _store_path(cfg)
        if cfg.provider == "openai-batch" and not cfg.batch_state:
            cfg.batch_state = str(store_path.parent / "llm_batches" / f"{cfg.kind}-{cfg.table_name()}.json")
        provider = build_provider(cfg)
        manifest = load_manifest(self.root, require_audio=False, keep_non_targets=True)
        report = RunReport(
            cfg.kind, provider.name, provider.model, cfg.group(), str(store_path), n_clips=len(manifest)
        )
        classes, class_source = load_class_texts(self.root)
        ids = manifest.ids.tolist()
        extra_attrs: dict[str, Any] = {}
        rejects: list[dict[str, str]] = []
        eval_ids: dict[str, list[str]] = {}

        if isinstance(provider, ChatProvider):
            template = build_template(
                cfg.kind, classes, class_source, cfg.max_metadata_chars, name=cfg.prompt
            )
            result = self._run_chat(provider, template, manifest, report)
            if result is None:  # dry run or pending batches
                report.seconds = time.time() - t0
                self._finish(report, None, cfg)
                return report.exit_code, report
            values, missing, reasons, answers = result
            extra_attrs.update(template.provenance())
            extra_attrs["request_options"] = provider.request_options(cfg.kind)
        elif cfg.dry_run:
            report.dry_run = (
                f"dry run: local provider '{provider.name}' makes {len(ids)} {cfg.kind} offline: "
                "no requests, no cost; nothing written"
            )
            report.seconds = time.time() - t0
            self._finish(report, None, cfg)
            return report.exit_code, report
        else:
            task = LocalTask(
                cfg,
                self.root,
                ids,
                manifest.title,
                manifest.tags,
                manifest.description,
                classes,
                class_source,
                manifest=manifest,
            )
            out = provider.priors(task) if cfg.kind == "priors" else provider.summaries(task)
            values = out.prior if cfg.kind == "priors" else out.text
            missing, reasons, answers = out.missing, out.reason, out.answer or [""] * len(ids)
            report.provider_report = out.report
            extra_attrs.update(out.attrs)
            eval_ids = out.evaluation_ids
            report.answered = int((~missing).sum())
            fails = Counter(r for r, m in zip(reasons, missing, strict=True) if m)
            report.failed_by_reason = dict(fails)

        report.missing = int(np.asarray(missing).sum())
        for i, (m, r, a) in enumerate(zip(missing, reasons, answers, strict=True)):
            if m:
                rejects.append({"id": ids[i], "reason": r, "answer": a})
        if cfg.kind == "priors" and manifest.labelled:
            pos = {i: k for k, i in enumerate(ids)}
            for part, part_ids in _eval_parts(cfg, ids, eval_ids, manifest.name).items():
                rows = [pos[i] for i in part_ids if i in pos]
                if rows:
                    report.evaluation[part] = score_prior(
                        values[rows], np.asarray(missing)[rows], manifest.labels[rows]
                    )
        if cfg.kind == "priors" and cfg.truth:
            truth = read_truth(cfg.truth)
            labels = np.array([truth.get(i, -1) for i in ids], dtype=np.int64)
            if (labels >= 0).any():
                report.evaluation[f"truth file {Path(cfg.truth).name}"] = score_prior(
                    values, np.asarray(missing), labels
                )

        missing = np.asarray(missing, dtype=bool)
        report.not_written = self._why_not_write(store_path, cfg.group(), ids, missing, reasons)
        if report.not_written:
            report.seconds = time.time() - t0
            self._finish(report, rejects, cfg)
            return report.exit_code, report

        from cache.store import Store

        store = Store(store_path)
        attrs = base_provenance(  # "kind" itself is the store's (table/rows)
            "extract.llm",
            dataset=str(self.root.resolve()),
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
        report.seconds = time.time() - t0
        self._finish(report, rejects, cfg)
        return report.exit_code, report

    @staticmethod
    def _why_not_write(
        store_path: Path, group: str, ids: list[str], missing: np.ndarray, reasons: list[str]
    ) -> str:
        """Why the new table must not be written ('' = write it): no usable row, or good rows of
        the existing table that this run's failed requests would replace with missing ones."""
        if len(ids) and missing.all():
            return f"no row has a usable answer; {group} is left as it was (the reasons are in the report)"
        failed = [
            i for i, m, r in zip(ids, missing, reasons, strict=True) if m and r.startswith("request failed")
        ]
        if not failed or not store_path.exists():
            return ""
        from cache.store import Store

        try:
            store = Store(store_path, mode="r")
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

    def _finish(self, report: RunReport, rejects: list | None, cfg: LLMConfig) -> None:
        if not report.dry_run:
            path = _report_path(cfg, Path(report.store))
            path.parent.mkdir(parents=True, exist_ok=True)
            data = {"report": asdict(report), "config": cfg.as_dict(), "rejected": rejects or []}
            path.write_text(json.dumps(redact_obj(json.loads(json.dumps(data, default=str))), indent=1))
            path.with_suffix(".toml").write_text(redact(LLMRunConfig(cfg).to_toml()))
            report.report_path = str(path)
        self._print(report.format())

    # ------------------------------------------------------------------ chat providers
    def _run_chat(self, provider: ChatProvider, template, manifest, report: RunReport):
        cfg = self.cfg
        durations = _durations(manifest.audio_paths)
        options = provider.request_options(cfg.kind)
        keys, requests = build_requests(provider, template, manifest, durations)
        report.n_requests = len(requests)
        cache = ResponseCache(cfg.cache_dir)
        texts: dict[str, str] = {}
        failures: dict[str, str] = {}
        to_send: list[ChatRequest] = []
        mapper = LabelMapper({c.code: c.name for c in load_class_texts(self.root)[0]})
        for key, req in requests.items():
            hit = cache.get(key)
            if hit is not None and cfg.retry_rejected:
                usable = template.parse(hit.text, mapper).ok
                if not usable:
                    hit = None
            if hit is None:
                to_send.append(req)
            else:
                texts[key] = hit.text
        report.cached = len(texts)
        prices = prices_for(
            provider.model,
            cfg.price_input_per_mtok,
            cfg.price_output_per_mtok,
            cfg.price_cached_input_per_mtok,
        )
        discount = provider.price_discount
        if cfg.dry_run:
            est = estimate(
                [r.messages[0]["content"] + r.messages[1]["content"] for r in to_send],
                len(texts),
                getattr(cfg, f"est_output_tokens_{cfg.kind}"),
                prices,
                discount,
            )
            report.dry_run = est.format()
            report.cache = cache.counts()
            return None

        bar = progress(
            total=len(to_send),
            desc=f"{provider.name} {cfg.kind}",
            unit="req",
            enable=cfg.progress and bool(to_send),
        )

        def on_result(res: ChatResult) -> None:
            if res.ok:
                cache.put(
                    res.key,
                    res.text,
                    res.usage,
                    {
                        "provider": provider.name,
                        "model": provider.model,
                        "api": provider.api,
                        "prompt_version": template.version,
                        "options": options,
                        **res.meta,
                    },
                )
                texts[res.key] = res.text
                failures.pop(res.key, None)
            else:
                failures[res.key] = redact(res.error)
            bar.update(1)

        try:
            provider.run(to_send, on_result)
        finally:
            bar.close()
        fatal = getattr(provider, "fatal", "")
        if fatal:
            got = len(texts) - report.cached
            raise UserError(fatal + (f" ({got} answer(s) received before it are cached)" if got else ""))
        report.sent = len(to_send)
        report.usage = provider.usage.as_dict()
        report.cost_usd = provider.usage.cost(prices, discount)
        report.cost_note = "" if prices.known else "no price known for this model; set price_*_per_mtok"
        report.cache = cache.counts()
        pending = getattr(provider, "pending", [])
        if pending:
            report.pending = len(pending)
            return None

        n = len(keys)
        reasons, answers = [""] * n, [""] * n
        missing = np.zeros(n, dtype=bool)
        parses: dict[str, Any] = {}
        if cfg.kind == "priors":
            values: Any = np.zeros((n, NUM_CLASSES), dtype=np.float32)
        else:
            values = [""] * n
        for i, key in enumerate(keys):
            if key not in texts:
                missing[i] = True
                reasons[i] = "request failed: " + failures.get(key, "no answer")
                continue
            if key not in parses:
                parses[key] = template.parse(texts[key], mapper)
            p = parses[key]
            if not p.ok:
                missing[i] = True
                reasons[i] = "rejected: " + p.reason
                answers[i] = texts[key]
            elif cfg.kind == "priors":
                values[i] = p.prior
            else:
                values[i] = p.text
        report.answered = int((~missing).sum())
        by_reason = Counter()
        for key in requests:
            if key not in texts:
                by_reason[failures.get(key, "no answer").split(":")[0]] += 1
            elif not parses[key].ok:
                by_reason["rejected: " + parses[key].reason.split(" (")[0]] += 1
        report.failed_by_reason = dict(by_reason)
        report.failed_requests = sum(1 for key in requests if key not in texts)
        if cfg.kind == "priors":
            report.dropped_labels = count_drops(p for p in parses.values())
        return values, missing, reasons, answers
