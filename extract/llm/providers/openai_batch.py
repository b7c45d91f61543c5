"""``openai-batch``: the OpenAI Batch API (half price, answers within 24 h).

Flow per call: prepare JSONL (one line per request, ``custom_id`` = cache key) → upload
(``purpose="batch"``) → create the batch → poll its status → download the output and
error files → merge (each answer goes to the response cache as it is read) → resubmit only
the rows that failed or are missing, up to ``batch_max_resubmits`` rounds.

Never paying twice: every batch carries ``metadata.bst_hac_tag`` = hash of its rows (and
round). Before uploading or creating anything, the state file (``batch_state``) is
consulted, then the server's batch list is searched for that tag, so a process killed
between any two steps adopts the batch it had already created (a server that cannot list
batches just has nothing to adopt). The state file is written atomically after every step.
An API error stops the call with one line naming the endpoint and status (exit 2 for a
rejected key, 3 otherwise: the same command later continues where this one stopped). With ``batch_wait_s = 0``
a call submits or checks once and
returns; rows still in open batches are reported as pending and the next call collects
them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.provenance import now_iso, sha256_json

from ..config import LLMConfig
from ..costs import normalise_usage
from ..errors import APIFailure, UserError, describe_api_error, fatal_message, is_fatal_status
from ..output import emit
from ..response_cache import redact
from .base import ChatRequest, ChatResult, ResultCallback, register_provider
from .openai_api import OpenAIProvider, answer_text

TERMINAL = ("completed", "failed", "expired", "cancelled")
REUSABLE = ("validating", "in_progress", "finalizing", "completed")
TAG_KEY = "bst_hac_tag"
ENDPOINTS = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


@dataclass
class BatchState:
    """What this provider has submitted, persisted as JSON (atomic writes)."""

    path: Path
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> record
    files: dict[str, str] = field(default_factory=dict)  # tag -> uploaded input file id
    attempts: dict[str, int] = field(default_factory=dict)  # request key -> batches it was put in

    @classmethod
    def load(cls, path: Path) -> BatchState:
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError as e:
                raise UserError(
                    f"batch state file {path} is not valid JSON ({e}); fix or delete it"
                ) from None
            return cls(
                path,
                dict(data.get("batches", {})),
                dict(data.get("files", {})),
                dict(data.get("attempts", {})),
            )
        return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "version": 1,
                    "updated": now_iso(),
                    "batches": self.batches,
                    "files": self.files,
                    "attempts": self.attempts,
                },
                fh,
                indent=1,
            )
        os.replace(tmp, self.path)


@register_provider("openai-batch")
class OpenAIBatchProvider(OpenAIProvider):
    """See module docstring. Shares request building with ``openai``."""

    price_discount = 0.5

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        self.pending: list[str] = []  # keys still in open batches after run()
        self.events: list[str] = []
        self.state_path: Path | None = Path(config.batch_state) if config.batch_state else None
        self._state: BatchState | None = None

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        p["batch_state"] = str(self.state_path) if self.state_path else None
        return p

    def make_sync_client(self):
        import openai

        return openai.OpenAI(
            api_key=self._key(),
            base_url=self.base_url,
            max_retries=self.config.max_retries,
            timeout=max(self.config.timeout, 60.0),
        )

    def _key(self) -> str:
        from .openai_api import api_key_from_env

        return api_key_from_env(self.base_url)

    def _log(self, msg: str) -> None:
        self.events.append(redact(msg))
        if self.config.progress:
            emit(f"[openai-batch] {redact(msg)}")

    # ------------------------------------------------------------------ steps
    def tag_for(self, keys: list[str], state: BatchState, kind: str) -> str:
        """Identity of a batch: its rows, how often they were submitted before, and the request shape."""
        round_ = max((state.attempts.get(k, 0) for k in keys), default=0)
        return sha256_json(
            {
                "keys": sorted(keys),
                "round": round_,
                "kind": kind,
                "model": self.model,
                "api": self.api,
                "structured": self.builder.structured,
                "dropped": sorted(self.builder.dropped),
            }
        )[:40]

    def chunks(self, reqs: list[ChatRequest]) -> list[list[ChatRequest]]:
        """Split requests (in key order) into batches within the request-count and file-size limits;
        the sizes are estimated from the messages, so the split is the same on every call."""
        limit = self.config.batch_max_mb * 1e6
        out: list[list[ChatRequest]] = []
        cur: list[ChatRequest] = []
        size = 0.0
        for r in reqs:
            est = 1.1 * sum(len(m["content"].encode()) for m in r.messages) + 4096
            if cur and (len(cur) >= self.config.batch_max_requests or size + est > limit):
                out.append(cur)
                cur, size = [], 0.0
            cur.append(r)
            size += est
        if cur:
            out.append(cur)
        return out

    def find_remote(self, client, tag: str, scan: int = 2000) -> Any | None:
        """A batch on the server tagged ``tag`` that can still deliver (newest first), or None.

        Only needed to adopt a batch of a run killed before it saved its state: a server that
        cannot list batches (an error other than a rejected key) has nothing to adopt.
        """
        import openai

        seen = 0
        try:
            for b in client.batches.list(limit=100):
                seen += 1
                if (b.metadata or {}).get(TAG_KEY) == tag and b.status in REUSABLE:
                    return b
                if seen >= scan:
                    break
        except openai.APIError as e:
            if isinstance(e, openai.APIStatusError) and e.status_code in (401, 403):
                raise
            self._log(f"cannot list batches ({describe_api_error(e)}); nothing to adopt")
        return None

    def ensure_batch(self, client, state: BatchState, tag: str, reqs: list[ChatRequest]) -> dict[str, Any]:
        """The batch for ``tag``: from the state file, from the server, or newly created."""
        rec = state.batches.get(tag)
        if rec and rec.get("status") in REUSABLE and not rec.get("merged"):
            return rec
        remote = self.find_remote(client, tag)
        if remote is not None:
            self._log(f"adopting existing batch {remote.id} (tag {tag[:12]}, status {remote.status})")
            return self._record(state, tag, remote, reqs)
        file_id = state.files.get(tag)
        if not file_id:
            lines = []
            for r in reqs:
                body = self.builder.body(r.kind, r.messages)
                lines.append(
                    json.dumps(
                        {"custom_id": r.key, "method": "POST", "url": ENDPOINTS[self.api], "body": body},
                        ensure_ascii=False,
                    )
                )
            data = ("\n".join(lines) + "\n").encode()
            f = client.files.create(
                file=(f"bst-hac-{tag[:12]}.jsonl", data, "application/jsonl"), purpose="batch"
            )
            file_id = f.id
            state.files[tag] = file_id
            state.save()
            self._log(f"uploaded {len(reqs)} request(s) as {file_id}")
        b = client.batches.create(
            completion_window="24h",
            endpoint=ENDPOINTS[self.api],
            input_file_id=file_id,
            metadata={
                TAG_KEY: tag,
                "producer": "extract.llm",
                "kind": reqs[0].kind,
                "n_requests": str(len(reqs)),
            },
        )
        self.usage.note_status("batch_created")
        self.usage.requests += len(reqs)
        self._log(f"created batch {b.id} with {len(reqs)} request(s)")
        return self._record(state, tag, b, reqs)

    @staticmethod
    def _record(state: BatchState, tag: str, batch, reqs: list[ChatRequest]) -> dict[str, Any]:
        rec = {
            "id": batch.id,
            "keys": [r.key for r in reqs],
            "status": batch.status,
            "merged": False,
            "created": now_iso(),
        }
        state.batches[tag] = rec
        state.save()
        return rec

    def merge(
        self,
        client,
        rec: dict[str, Any],
        batch,
        on_result: ResultCallback,
        delivered: set[str],
        failures: dict[str, str],
    ) -> None:
        """Download a finished batch's output (and errors) and hand every row to ``on_result``."""
        if batch.output_file_id:
            content = client.files.content(batch.output_file_id).content
            for line in content.decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                key = row.get("custom_id")
                resp = row.get("response") or {}
                if key not in rec["keys"]:
                    continue
                if resp.get("status_code") == 200 and isinstance(resp.get("body"), dict):
                    body = resp["body"]
                    try:
                        text = answer_text(self.api, body)
                    except ValueError:
                        failures[key] = "malformed_body"
                        continue
                    usage = normalise_usage(body.get("usage"))
                    self.usage.add_usage(usage)
                    self.usage.note_status("ok")
                    on_result(
                        ChatResult(
                            key,
                            text,
                            usage,
                            "",
                            {
                                "response_id": body.get("id"),
                                "batch_id": batch.id,
                                "status": body.get("status"),
                            },
                        )
                    )
                    delivered.add(key)
                    failures.pop(key, None)
                else:
                    failures[key] = f"http_{resp.get('status_code')}"
        if batch.error_file_id:
            content = client.files.content(batch.error_file_id).content
            for line in content.decode("utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                key = row.get("custom_id")
                if key in delivered or key not in rec["keys"]:
                    continue
                resp = row.get("response") or {}
                status = resp.get("status_code")
                msg = (
                    ((resp.get("body") or {}).get("error") or {}).get("message")
                    or ((row.get("error") or {}).get("message") if isinstance(row.get("error"), dict) else "")
                    or ""
                )
                if status == 400 and msg:
                    self.builder.adapt(redact(msg))
                failures[key] = f"http_{status}" if status else "batch_error"
                self.usage.note_status(failures[key])
        for key in rec["keys"]:
            if key not in delivered and key not in failures:
                failures[key] = "missing_from_batch_output"
        rec["merged"] = True
        for key in rec["keys"]:  # counted at merge time: a resubmission gets a new tag
            state_attempts = self._state.attempts
            state_attempts[key] = state_attempts.get(key, 0) + 1

    # ------------------------------------------------------------------ driver
    def run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        import openai

        try:
            self._run_batches(requests, on_result)
        except openai.APIError as e:
            line = describe_api_error(e)
            status = getattr(e, "status_code", None)
            what = is_fatal_status(status, getattr(e, "message", "") or "", getattr(e, "code", None))
            if what in ("key", "model"):
                raise UserError(fatal_message(what, self.base_url, self.model, line)) from None
            raise APIFailure(
                f"openai-batch: {line}; re-run the same command to continue (batches already "
                "created are collected, not paid for twice)"
            ) from None
        finally:
            if self._state is not None:
                self._state.save()

    def _run_batches(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        if not requests:
            return
        if self.state_path is None:
            raise RuntimeError("openai-batch needs a state file path (config batch_state)")
        state = self._state = BatchState.load(self.state_path)
        client = self.make_sync_client()
        by_key = {r.key: r for r in requests}
        caller = on_result

        def on_result(res: ChatResult) -> None:  # rows of older batches no longer asked for are skipped
            if res.key in by_key:
                caller(res)

        remaining = dict(by_key)
        delivered: set[str] = set()
        failures: dict[str, str] = {}
        deadline = time.monotonic() + self.config.batch_wait_s
        round_ = 0
        while remaining and round_ <= self.config.batch_max_resubmits:
            # batches of earlier calls that still hold some of these rows: collect them first
            open_recs = [
                rec
                for rec in state.batches.values()
                if not rec.get("merged")
                and rec.get("status") in REUSABLE
                and set(rec["keys"]) & remaining.keys()
            ]
            covered = {k for rec in open_recs for k in rec["keys"]}
            keys = sorted(k for k in remaining if k not in covered)
            for chunk in self.chunks([remaining[k] for k in keys]):
                tag = self.tag_for([r.key for r in chunk], state, chunk[0].kind)
                rec = self.ensure_batch(client, state, tag, chunk)
                if rec not in open_recs:
                    open_recs.append(rec)
            # poll until every batch of this round is terminal or the wait budget is spent
            while True:
                still_open = False
                for rec in open_recs:
                    if rec.get("merged"):
                        continue
                    b = client.batches.retrieve(rec["id"])
                    rec["status"] = b.status
                    if b.status in TERMINAL or b.status == "completed":
                        self._log(f"batch {b.id} {b.status}; merging")
                        self.merge(client, rec, b, on_result, delivered, failures)
                        state.save()
                    else:
                        still_open = True
                state.save()
                if not still_open:
                    break
                if time.monotonic() >= deadline:
                    self.pending = sorted(
                        k
                        for rec in open_recs
                        if not rec.get("merged")
                        for k in rec["keys"]
                        if k not in delivered and k in by_key
                    )
                    self._log(
                        f"{len(self.pending)} request(s) still in open batch(es); run the same command "
                        "again later to collect them"
                    )
                    for k in delivered:
                        remaining.pop(k, None)
                    return
                time.sleep(self.config.batch_poll_s)
            for k in delivered:
                remaining.pop(k, None)
            if remaining:
                self._log(
                    f"{len(remaining)} row(s) failed or missing; resubmitting only those (round {round_ + 1})"
                    if round_ < self.config.batch_max_resubmits
                    else f"{len(remaining)} row(s) still failed after {round_} resubmission(s)"
                )
            round_ += 1
        for k in remaining:
            on_result(ChatResult(k, None, error=failures.get(k, "batch_failed")))
