"""LLM-tier throughput: requests/s against a local OpenAI-compatible server with simulated
latency, sequential vs concurrent, the cache-hit path for 10k clips, and the offline priors
(embedded, embedded-knn) on 10k clips whose MiniLM metadata table is already in the store.

    python benchmarks/llm_bench.py [--latency 0.2] [--concurrency 16] [--clips 10000]

Targets (issue 4): concurrent ≥ 10× sequential at concurrency 16; a full cache hit over 10k
clips in under 2 s; each offline prior over 10k clips in at most 5 s once the MiniLM table
exists (a whole ``python -m extract priors`` process). Prints a table and writes
benchmarks/results/llm_bench.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("OPENAI_API_KEY", "sk-bench-dummy")

from cache.manifest import load_manifest  # noqa: E402
from extract.llm.config import LLMConfig  # noqa: E402
from extract.llm.prompts import build_template  # noqa: E402
from extract.llm.providers import build_provider  # noqa: E402
from extract.llm.response_cache import ResponseCache  # noqa: E402
from extract.llm.runner import Runner, build_requests  # noqa: E402
from testkit.bsd_dataset import labelled_row, write_metadata  # noqa: E402
from testkit.fake_llm_server import FakeOpenAIServer  # noqa: E402

WORDS = ["dog", "rain", "car", "piano", "crowd", "door", "wind", "synth", "bird", "engine", "speech", "drum"]


def write_dataset(root: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]
        rows.append(
            labelled_row(
                str(i),
                "fx-o",
                uploader="u",
                title=f"{a} and {b} take {i}",
                tags=f"{a}, {b}, fx-a",
                description=f"A recording of a {a} near a {b}. <b>Recorded</b> with a handheld "
                f"recorder, clip {i}.",
            )
        )
    write_metadata(root, rows, "BENCH")
    return root


def throughput(server: FakeOpenAIServer, root: Path, n: int, concurrency: int, cache_dir: Path) -> dict:
    cfg = LLMConfig(
        dataset=str(root),
        provider="openai",
        model="bench-model",
        base_url=server.base_url,
        concurrency=concurrency,
        timeout=30,
        cache_dir=str(cache_dir),
        progress=False,
    )
    provider = build_provider(cfg)
    manifest = load_manifest(root, require_audio=False).subset(list(range(n)))
    _, requests = build_requests(provider, build_template("priors"), manifest)
    got = []
    before = server.count()
    t0 = time.perf_counter()
    provider.run(list(requests.values()), got.append)
    dt = time.perf_counter() - t0
    ok = sum(r.ok for r in got)
    return {
        "requests": len(requests),
        "ok": ok,
        "server_hits": server.count() - before,
        "seconds": dt,
        "requests_per_s": len(requests) / dt,
        "concurrency": concurrency,
    }


def cache_hit_path(root: Path, cache_dir: Path, n: int) -> dict:
    """Fill the cache for every clip, then time full CLI runs (no network) that hit it for all clips."""
    cfg = LLMConfig(
        dataset=str(root),
        provider="openai",
        model="bench-model",
        base_url="http://127.0.0.1:9/v1",
        cache_dir=str(cache_dir),
        progress=False,
        store=str(root / "bench.zarr"),
    )
    provider = build_provider(cfg)
    manifest = load_manifest(root, require_audio=False, keep_non_targets=True)
    t0 = time.perf_counter()
    _, requests = build_requests(provider, build_template("priors"), manifest)
    t_keys = time.perf_counter() - t0
    cache = ResponseCache(cache_dir)
    # cpjku
    answer = json.dumps([{"label": "fx-a", "probability": 0.7}, {"label": "other", "probability": 0.3}])
    for key in requests:
        cache.put(key, answer, {"input_tokens": 1500, "output_tokens": 30})
    runs = []
    for _ in range(3):
        sink = open(os.devnull, "w")
        t0 = time.perf_counter()
        code, report = Runner(cfg, out=sink).run()
        runs.append(time.perf_counter() - t0)
        sink.close()
        assert code == 0 and report.cached == len(requests) and report.sent == 0, report
    t0 = time.perf_counter()
    c2 = ResponseCache(cache_dir)
    for key in requests:
        c2.get(key)
    t_lookup = time.perf_counter() - t0
    return {
        "clips": n,
        "unique_requests": len(requests),
        "seconds_full_run_best": min(runs),
        "seconds_full_run_all": runs,
        "seconds_build_keys": t_keys,
        "seconds_cache_lookups": t_lookup,
    }


def minilm_table(root: Path) -> str:
    """A synthetic ``embeddings/minilm@<hash8>~metadata`` table (random unit vectors) whose
    provenance matches what the offline providers would encode for this dataset."""
    import numpy as np

    from cache.schema import OK
    from cache.store import Store
    from extract import minilm_weights

    sha = minilm_weights.weights_sha256(None)
    manifest = load_manifest(root, require_audio=False, keep_non_targets=True)
    attrs = {
        "backbone": "minilm",
        "text_source": "metadata",
        "random_init": False,
        "checkpoint_sha256": sha,
        "manifest_digest": manifest.digest(),
        "dtype": "float32",
        "backbone_provenance": {"compute_dtype": "float32", "max_length": minilm_weights.DEFAULT_MAX_LENGTH},
    }
    group = f"embeddings/minilm@{sha[:8]}~metadata"
    w = Store(root / "cache.zarr").create_rows(
        group, manifest.ids.tolist(), {"text": ((384,), "float32")}, chunk_rows=256, attrs=attrs
    )
    rng = np.random.default_rng(0)
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        v = rng.normal(size=(hi - lo, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        w.write_chunk(k, {"text": v}, np.full(hi - lo, OK, dtype=np.uint8), [""] * (hi - lo))
    w.finalize()
    return group


def offline_reuse(root: Path, cache_dir: Path) -> dict:
    """Wall time of whole ``python -m extract priors`` processes for embedded and embedded-knn
    on a dataset whose MiniLM metadata table is in the store."""
    from cache.taxonomy import CLASSES

    with open(next((root / "metadata").glob("*_metadata.csv"))) as fh:
        rows = list(csv.reader(fh))
    for i, r in enumerate(rows[1:]):  # varied labels, so the kNN split has every class
        r[1] = CLASSES[i % len(CLASSES)]
        r[3] = r[1].split("-")[0]
    with open(next((root / "metadata").glob("*_metadata.csv")), "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    group = minilm_table(root)
    from cache.splits import split_manifest

    split = root / "split.json"  # made once beforehand, as in the documented flow (python -m cache split)
    split_manifest(load_manifest(root, require_audio=False), preset="baseline", fold=0).save(split)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    base = [
        sys.executable,
        "-m",
        "extract",
        "priors",
        "--dataset",
        str(root),
        "--no-progress",
        "--cache-dir",
        str(cache_dir),
    ]
    runs = {
        "embedded (first run: class sentences encoded)": base + ["--provider", "embedded"],
        "embedded": base + ["--provider", "embedded"],
        "embedded-knn": base + ["--provider", "embedded-knn", "--split", str(split)],
    }
    out = {"clips": len(rows) - 1, "table": group}
    for name, cmd in runs.items():
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        out[name] = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sequential-requests", type=int, default=20)
    ap.add_argument("--concurrent-requests", type=int, default=160)
    ap.add_argument("--clips", type=int, default=10000)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "llm_bench.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_dataset(tmp / "ds", max(args.clips, args.concurrent_requests))
        with FakeOpenAIServer(latency=args.latency) as server:
            seq = throughput(server, root, args.sequential_requests, 1, tmp / "c-seq")
            con = throughput(server, root, args.concurrent_requests, args.concurrency, tmp / "c-con")
        hit = cache_hit_path(write_dataset(tmp / "ds10k", args.clips), tmp / "c-hit", args.clips)
        offline = offline_reuse(write_dataset(tmp / "ds-offline", args.clips), tmp / "c-offline")

    ratio = con["requests_per_s"] / seq["requests_per_s"]
    result = {
        "latency_s": args.latency,
        "sequential": seq,
        "concurrent": con,
        "speedup": ratio,
        "cache_hit": hit,
        "offline_reuse_seconds": offline,
        "targets": {"speedup_min": 10.0, "cache_hit_10k_max_s": 2.0, "offline_prior_10k_max_s": 5.0},
        "pass": {
            "speedup": ratio >= 10.0,
            "cache_hit": hit["seconds_full_run_best"] < 2.0,
            "offline_reuse": max(offline["embedded"], offline["embedded-knn"]) <= 5.0,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
    }
    rows = [
        (
            "sequential (1 in flight)",
            f"{seq['requests']}",
            f"{seq['seconds']:.2f}",
            f"{seq['requests_per_s']:.1f}",
        ),
        (
            f"concurrent ({args.concurrency} in flight)",
            f"{con['requests']}",
            f"{con['seconds']:.2f}",
            f"{con['requests_per_s']:.1f}",
        ),
    ]
    print(f"LLM tier benchmark: fake OpenAI server, {args.latency * 1000:.0f} ms latency per request")
    print(f"| {'mode':28s} | {'requests':>8s} | {'seconds':>7s} | {'req/s':>7s} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    for r in rows:
        print(f"| {r[0]:28s} | {r[1]:>8s} | {r[2]:>7s} | {r[3]:>7s} |")
    print(
        f"speedup concurrent/sequential: {ratio:.1f}x (target >= 10x) -> {'PASS' if ratio >= 10 else 'FAIL'}"
    )
    print(
        f"cache-hit path, {hit['clips']} clips, full run (manifest, prompts, keys, cache reads, parsing, "
        f"store write): best {hit['seconds_full_run_best']:.2f} s of {len(hit['seconds_full_run_all'])} "
        f"(target < 2 s) -> {'PASS' if hit['seconds_full_run_best'] < 2 else 'FAIL'}; "
        f"of which building keys {hit['seconds_build_keys']:.2f} s, "
        f"cache lookups {hit['seconds_cache_lookups']:.2f} s"
    )
    print(
        f"offline priors, {offline['clips']} clips, MiniLM table in the store ({offline['table']}); "
        "whole `python -m extract priors` processes:"
    )
    print(f"| {'provider':48s} | {'seconds':>7s} |")
    print(f"|{'-' * 50}|{'-' * 9}|")
    for name in ("embedded (first run: class sentences encoded)", "embedded", "embedded-knn"):
        print(f"| {name:48s} | {offline[name]:7.2f} |")
    print(
        "target <= 5 s each (embedded, embedded-knn) -> "
        f"{'PASS' if result['pass']['offline_reuse'] else 'FAIL'}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
