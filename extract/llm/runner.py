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

This module holds the request loop; the report is :mod:`.run_report`, the table step
:mod:`.run_table`, the scores of the prior :mod:`.evaluate`.

A run is a success (exit 0) only when no request failed and some row is usable. Requests
that failed after their retries end the run with exit 3 (the answers received are cached,
so the same command resumes); such a run never replaces good rows of an existing table
(the table is then kept as it is), and a table with no usable row is never written.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cache.progress import progress
from cache.taxonomy import NUM_CLASSES

from .config import LLMConfig
from .costs import estimate, prices_for
from .errors import UserError
from .evaluate import eval_parts, read_truth, score_prior
from .output import emit
from .parsing import LabelMapper, count_drops
from .prompts import build_template, load_class_texts
from .providers.base import ChatProvider, ChatRequest, ChatResult, LocalTask, build_provider
from .response_cache import ResponseCache, redact, request_key
from .run_report import RunReport, save_report
from .run_table import store_path as run_store_path
from .run_table import why_not_write, write_run_table


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
        store_path = run_store_path(cfg)
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
            for part, part_ids in eval_parts(cfg, ids, eval_ids, manifest.name).items():
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
        report.not_written = why_not_write(store_path, cfg.group(), ids, missing, reasons)
        if report.not_written:
            report.seconds = time.time() - t0
            self._finish(report, rejects, cfg)
            return report.exit_code, report

        write_run_table(
            store_path,
            self.root,
            manifest,
            cfg,
            provider,
            extra_attrs,
            report,
            ids,
            values,
            missing,
            reasons,
            answers,
        )
        report.seconds = time.time() - t0
        self._finish(report, rejects, cfg)
        return report.exit_code, report

    def _finish(self, report: RunReport, rejects: list | None, cfg: LLMConfig) -> None:
        save_report(report, rejects, cfg)
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
