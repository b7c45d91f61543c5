"""A local OpenAI-compatible HTTP server that injects faults (tests, benchmarks, offline tries).

It speaks ``POST /v1/responses``, ``POST /v1/chat/completions``, ``POST /v1/files``,
``GET /v1/files/<id>/content``, ``POST /v1/batches``, ``GET /v1/batches[/<id>]`` and
``POST /v1/batches/<id>/cancel``. It answers from the clip metadata inside the prompt's
data block (or, for the ``cpjku`` template, the ``- title="..."`` lines, answered in that
template's formats): a tag that is a class code (e.g. ``fx-a``) gets a prior of 0.6 on it, 0.2 on a
second class and 0.2 on ``other``; no such tag gets ``fx-o``. Markers ``[[name]]`` or
``[[name:arg]]`` in a clip's title inject faults:

=================  =============================================================
``429:S``          first attempt: 429 with ``Retry-After: S``
``500``/``503``    first attempt: that status
``always500``      every attempt: 500
``hang``           first attempt: no answer for ``hang_s`` seconds
``badbody``        first attempt: 200 with a cut-off JSON body
``emptybody``      first attempt: 200 with an empty body
``truncated``      answer text is cut-off JSON
``malformed``      answer text is invalid JSON
``unknown``        unknown labels plus a class *name* ("Animals")
``unknownonly``    only unknown labels
``other``          only ``other``
``unnormalised``   object form {"FX-A": 3, "fx_o": 1}
``fenced``         answer inside a fenced code block
``prose``          JSON followed by prose
``empty``          empty answer text
``negative``       only non-positive probabilities
``key401``         401 whose error message echoes the Authorization header
``batchfail``      batch: first batch attempt of this row fails (error file)
``batchlost``      batch: first batch attempt of this row is missing from the output
=================  =============================================================

``fail_routes`` makes whole routes fail, e.g. ``{"POST /v1/responses": 401}`` (a wrong key),
``{"GET /v1/batches": 404}`` (a server that cannot list batches) or
``{"POST /v1/chat/completions": (404, "The model `x` does not exist.")}``.

Run it by hand: ``python -m testkit.fake_llm_server --port 8000 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from cache.taxonomy import CLASSES
from extract.llm.prompts import DATA_CLOSE, DATA_OPEN

_MARK_RE = re.compile(r"\[\[([a-z0-9]+)(?::([0-9.]+))?\]\]")


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many concurrent connects (the default backlog of 5 drops SYNs)
    daemon_threads = True


@dataclass
class Hit:
    """One request the server received."""

    t: float
    path: str
    title: str
    kind: str
    attempt: int
    status: int
    body: dict = field(repr=False, default_factory=dict)


def _user_text(body: dict) -> tuple[str, str]:
    msgs = body.get("messages") if "messages" in body else body.get("input")
    system, user = body.get("instructions") or "", ""
    if isinstance(msgs, str):
        return system, msgs
    for m in msgs or []:
        content = m.get("content", "")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if m.get("role") in ("system", "developer"):
            system += content
        elif m.get("role") == "user":
            user += content
    return system, user


def extract_data_block(user_message: str) -> dict:
    """Inverse of the user message: the JSON record inside the data block."""
    start = user_message.index(DATA_OPEN) + len(DATA_OPEN)
    end = user_message.index(DATA_CLOSE, start)
    return json.loads(user_message[start:end])


_LINE_RE = re.compile(r'^- (title|tags|description)="(.*)"$')


def _record_of(user: str) -> dict:
    if user.startswith("Clip metadata:"):  # the cpjku template: raw fields, one per line
        rec: dict = {"style": "cpjku"}
        for line in user.splitlines():
            m = _LINE_RE.match(line)
            if m:
                rec[m.group(1)] = m.group(2)
        rec["tags"] = [t for t in re.split(r"[,\s]+", rec.get("tags", "")) if t]
        return rec
    try:
        return extract_data_block(user)
    except (ValueError, json.JSONDecodeError):
        return {}


def prior_answer(record: dict, marks: dict[str, str]) -> str:
    """The answer text the server gives for a prior request."""
    labels = [{"label": "fx-o", "probability": 1.0}]
    codes = [t for t in record.get("tags", []) if t in CLASSES]
    if codes:
        second = "is-p" if codes[0] != "is-p" else "m-m"
        labels = [
            {"label": codes[0], "probability": 0.6},
            {"label": second, "probability": 0.2},
            {"label": "other", "probability": 0.2},
        ]
    wrap = (lambda x: x) if record.get("style") == "cpjku" else (lambda x: {"labels": x})
    good = json.dumps(wrap(labels))
    if "truncated" in marks:
        return good[: len(good) // 2]
    if "malformed" in marks:
        return '{"labels": [{"label": "fx-a", probability: 0.6}]}'
    if "unknown" in marks:
        return json.dumps(
            [
                {"label": "fx-zz", "probability": 0.5},
                {"label": "Dogs", "probability": 0.2},
                {"label": "Animals", "probability": 0.2},
                {"label": "other", "probability": 0.1},
            ]
        )
    if "unknownonly" in marks:
        return json.dumps([{"label": "fx-zz", "probability": 0.9}, {"label": "banana", "probability": 0.1}])
    if "other" in marks:
        return json.dumps(wrap([{"label": "other", "probability": 1.0}]))
    if "unnormalised" in marks:
        return json.dumps({"FX-A": 3, " fx_o ": 1})
    if "fenced" in marks:
        return "Here you go:\n```json\n" + good + "\n```\n"
    if "prose" in marks:
        return good + "\nThe clip is most likely what its tags say."
    if "empty" in marks:
        return ""
    if "negative" in marks:
        return json.dumps([{"label": "fx-a", "probability": -0.5}, {"label": "fx-o", "probability": 0}])
    return good


def summary_answer(record: dict, marks: dict[str, str]) -> str:
    if record.get("style") == "cpjku":  # plain text
        if "empty" in marks:
            return ""
        if "truncated" in marks:
            return "A sound of"
        return f"A sound of {_MARK_RE.sub('', record.get('title', '')).strip()}."
    if "empty" in marks:
        return json.dumps({"summary": ""})
    if "truncated" in marks:
        return '{"summary": "A sound of'
    title = _MARK_RE.sub("", record.get("title", "")).strip()
    return json.dumps({"summary": f"A sound of {title}."})


class FakeOpenAIServer:
    """The server; use as a context manager or call start()/stop(). ``base_url`` ends in ``/v1``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        supports_json_schema: bool = True,
        reject_params: tuple[str, ...] = (),
        batch_steps: int = 2,
        hang_s: float = 30.0,
        fail_routes: dict[str, int | tuple[int, str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.latency = latency
        self.supports_json_schema = supports_json_schema
        self.reject_params = set(reject_params)
        self.batch_steps = batch_steps
        self.hang_s = hang_s
        self.fail_routes = dict(fail_routes or {})
        self.hits: list[Hit] = []
        self.inflight = 0
        self.max_inflight = 0
        self.attempts: dict[str, int] = {}
        self.batch_attempts: dict[str, int] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.httpd = _Server((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def count(self, path: str | None = None, title_contains: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for h in self.hits
                if (path is None or h.path == path) and (title_contains is None or title_contains in h.title)
            )

    def titles(self, path: str | None = None) -> list[str]:
        with self._lock:
            return [h.title for h in self.hits if path is None or h.path == path]

    def hits_for(self, title_contains: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if title_contains in h.title]

    # ------------------------------------------------------------------ answering
    def route_failure(self, method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        """The configured failure of route ``"METHOD path"``, if any."""
        spec = self.fail_routes.get(f"{method} {path}")
        if spec is None:
            return None
        status, message = (
            spec
            if isinstance(spec, tuple)
            else (
                spec,
                {401: "Incorrect API key provided", 403: "Forbidden", 404: f"Not found: {path}"}.get(
                    spec, "Server error"
                ),
            )
        )
        return (
            status,
            {},
            json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(),
        )

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def answer(
        self, path: str, body: dict, *, batch: bool = False
    ) -> tuple[int, dict[str, str], bytes | None]:
        """(status, headers, body bytes) for one model request; body None means hang."""
        system, user = _user_text(body)
        record = _record_of(user)
        title = str(record.get("title", ""))
        marks = {m.group(1): m.group(2) or "" for m in _MARK_RE.finditer(title)}
        kind = "priors" if "Broad Sound Taxonomy" in system else "summaries"
        key = hashlib.sha256((path + system + user).encode()).hexdigest()
        with self._lock:
            table = self.batch_attempts if batch else self.attempts
            attempt = table.get(key, 0)
            table[key] = attempt + 1
        status, headers, out = self._decide(path, body, kind, record, marks, attempt, batch)
        with self._lock:
            self.hits.append(
                Hit(time.time(), ("batch:" if batch else "") + path, title, kind, attempt, status, body)
            )
        return status, headers, out

    def _decide(self, path, body, kind, record, marks, attempt, batch):
        def err(status: int, message: str, headers: dict | None = None):
            return (
                status,
                headers or {},
                json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(),
            )

        failure = None if batch else self.route_failure("POST", path)
        if failure is not None:
            return failure
        if "429" in marks and attempt == 0 and not batch:  # rate limits come before any validation
            return err(429, "Rate limit reached", {"Retry-After": marks["429"] or "1"})
        if not self.supports_json_schema and (
            (body.get("text") or {}).get("format", {}).get("type") == "json_schema"
            or (body.get("response_format") or {}).get("type") == "json_schema"
        ):
            return err(
                400,
                "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                "with this model.",
            )
        for p in sorted(self.reject_params):
            if p in body:
                return err(400, f"Unsupported parameter: '{p}' is not supported with this model.")
        if "key401" in marks:
            return err(401, f"Incorrect API key provided: {body.get('_auth', '')}")
        if not batch:
            for code in ("500", "503"):
                if code in marks and attempt == 0:
                    return err(int(code), "The server had an error")
            if "always500" in marks:
                return err(500, "The server had an error")
            if "hang" in marks and attempt == 0:
                return 200, {}, None
            if "badbody" in marks and attempt == 0:
                return 200, {}, b'{"id": "resp_cut", "output": [{"type": "mess'
            if "emptybody" in marks and attempt == 0:
                return 200, {}, b""
        else:
            if "batchfail" in marks and attempt == 0:
                return err(500, "The server had an error")
        text = prior_answer(record, marks) if kind == "priors" else summary_answer(record, marks)
        n_in = sum(len(json.dumps(m)) for m in (body.get("input") or body.get("messages") or [])) // 4
        n_out = max(1, len(text) // 4)
        if path.endswith("/responses"):
            payload = {
                "id": self._next_id("resp"),
                "object": "response",
                "created_at": int(time.time()),
                "model": body.get("model"),
                "status": "completed",
                "output": [
                    {
                        "type": "message",
                        "id": self._next_id("msg"),
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }
                ],
                "usage": {
                    "input_tokens": n_in,
                    "output_tokens": n_out,
                    "total_tokens": n_in + n_out,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            }
        else:
            payload = {
                "id": self._next_id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
            }
        return 200, {}, json.dumps(payload).encode()

    # ------------------------------------------------------------------ batches
    def _batch_object(self, b: dict) -> dict:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def _advance(self, b: dict) -> None:
        if b["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        b["_polls"] += 1
        if b["status"] == "validating":
            b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        if b["_polls"] >= self.batch_steps and b["status"] == "in_progress":
            self._complete(b)

    def _complete(self, b: dict) -> None:
        lines = self.files[b["input_file_id"]]["content"].decode().splitlines()
        out, errs, ok, failed = [], [], 0, 0
        for line in lines:
            if not line.strip():
                continue
            req = json.loads(line)
            url = req["url"]
            system, user = _user_text(req["body"])
            title = str(_record_of(user).get("title", ""))
            status, _, payload = self.answer(url, req["body"], batch=True)
            if (
                "batchlost" in title
                and self.batch_attempts.get(hashlib.sha256((url + system + user).encode()).hexdigest(), 0)
                == 1
            ):
                continue
            row = {
                "id": self._next_id("batch_req"),
                "custom_id": req["custom_id"],
                "response": {
                    "status_code": status,
                    "request_id": self._next_id("req"),
                    "body": json.loads(payload) if payload else None,
                },
                "error": None,
            }
            if status == 200:
                out.append(row)
                ok += 1
            else:
                errs.append(row)
                failed += 1
        b["output_file_id"] = self._store_file("\n".join(json.dumps(r) for r in out).encode(), "batch_output")
        if errs:
            b["error_file_id"] = self._store_file(
                "\n".join(json.dumps(r) for r in errs).encode(), "batch_output"
            )
        b["status"], b["completed_at"] = "completed", int(time.time())
        b["request_counts"] = {
            "total": len([x for x in lines if x.strip()]),
            "completed": ok,
            "failed": failed,
        }

    def _store_file(self, content: bytes, purpose: str, filename: str = "data.jsonl") -> str:
        fid = self._next_id("file")
        self.files[fid] = {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "content": content,
        }
        return fid

    # ------------------------------------------------------------------ HTTP
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(
                self,
                status: int,
                payload: bytes,
                headers: dict | None = None,
                ctype: str = "application/json",
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _json(self, status: int, obj: Any) -> None:
                self._send(status, json.dumps(obj).encode())

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                raw = self._body()
                failure = server.route_failure("POST", path)
                if failure is not None and path not in ("/v1/responses", "/v1/chat/completions"):
                    return self._send(failure[0], failure[2])
                if path in ("/v1/responses", "/v1/chat/completions"):
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        return self._json(400, {"error": {"message": "invalid JSON body"}})
                    body["_auth"] = self.headers.get("Authorization", "")
                    with server._lock:
                        server.inflight += 1
                        server.max_inflight = max(server.max_inflight, server.inflight)
                    try:
                        if server.latency:
                            time.sleep(server.latency)
                        status, headers, out = server.answer(path, body)
                        body.pop("_auth", None)
                        if out is None:  # hang
                            server._stop.wait(server.hang_s)
                    finally:  # counted out before the answer leaves: a client's next request never overlaps
                        with server._lock:
                            server.inflight -= 1
                    if out is None:
                        return self._json(500, {"error": {"message": "hung request released"}})
                    return self._send(status, out, headers)
                if path == "/v1/files":
                    ctype = self.headers.get("Content-Type", "")
                    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
                    )
                    fields, content, filename = {}, b"", "upload.jsonl"
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        data = part.get_payload(decode=True) or b""
                        if name == "file":
                            content = data
                            filename = part.get_filename() or filename
                        else:
                            fields[name] = data.decode()
                    with server._lock:
                        fid = server._store_file(content, fields.get("purpose", ""), filename)
                        obj = {k: v for k, v in server.files[fid].items() if k != "content"}
                    return self._json(200, obj)
                if path == "/v1/batches":
                    req = json.loads(raw or b"{}")
                    if req.get("input_file_id") not in server.files:
                        return self._json(400, {"error": {"message": "unknown input_file_id"}})
                    with server._lock:
                        bid = server._next_id("batch")
                        b = {
                            "id": bid,
                            "object": "batch",
                            "endpoint": req.get("endpoint"),
                            "input_file_id": req["input_file_id"],
                            "completion_window": req.get("completion_window"),
                            "status": "validating",
                            "created_at": int(time.time()),
                            "metadata": req.get("metadata") or {},
                            "output_file_id": None,
                            "error_file_id": None,
                            "request_counts": {"total": 0, "completed": 0, "failed": 0},
                            "_polls": 0,
                        }
                        server.batches[bid] = b
                        server.hits.append(Hit(time.time(), "/v1/batches", "", "", 0, 200, req))
                        return self._json(200, server._batch_object(b))
                m = re.fullmatch(r"/v1/batches/([^/]+)/cancel", path)
                if m and m.group(1) in server.batches:
                    with server._lock:
                        b = server.batches[m.group(1)]
                        b["status"] = "cancelled"
                        return self._json(200, server._batch_object(b))
                return self._json(404, {"error": {"message": f"no route POST {path}"}})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                path = url.path
                failure = server.route_failure("GET", path)
                if failure is not None:
                    return self._send(failure[0], failure[2])
                m = re.fullmatch(r"/v1/files/([^/]+)/content", path)
                if m:
                    f = server.files.get(m.group(1))
                    if f is None:
                        return self._json(404, {"error": {"message": "no such file"}})
                    return self._send(200, f["content"], ctype="application/octet-stream")
                m = re.fullmatch(r"/v1/batches/([^/]+)", path)
                if m:
                    with server._lock:
                        b = server.batches.get(m.group(1))
                        if b is None:
                            return self._json(404, {"error": {"message": "no such batch"}})
                        server._advance(b)
                        return self._json(200, server._batch_object(b))
                if path == "/v1/batches":
                    q = parse_qs(url.query)
                    limit = int(q.get("limit", ["20"])[0])
                    after = q.get("after", [None])[0]
                    with server._lock:
                        items = sorted(server.batches.values(), key=lambda b: b["id"], reverse=True)
                        if after:
                            items = [b for b in items if b["id"] < after]
                        page = [server._batch_object(b) for b in items[:limit]]
                        more = len(items) > limit
                    return self._json(
                        200,
                        {
                            "object": "list",
                            "data": page,
                            "has_more": more,
                            "first_id": page[0]["id"] if page else None,
                            "last_id": page[-1]["id"] if page else None,
                        },
                    )
                return self._json(404, {"error": {"message": f"no route GET {path}"}})

        return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Local fake OpenAI-compatible server (see module docstring).")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds of simulated latency per request")
    ap.add_argument("--no-json-schema", action="store_true", help="reject JSON-schema structured output")
    args = ap.parse_args(argv)
    srv = FakeOpenAIServer(latency=args.latency, supports_json_schema=not args.no_json_schema, port=args.port)
    print(f"fake OpenAI server on {srv.base_url} (Ctrl-C to stop)", flush=True)
    srv.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
