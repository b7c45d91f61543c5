"""A run killed with SIGKILL mid-way re-sends, when re-run, only the requests that were in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cache.store import Store
from cache.tables import read_priors
from extract.llm.response_cache import ResponseCache
from testkit.fake_llm_server import FakeOpenAIServer

N, CONCURRENCY = 40, 4
REPO = Path(__file__).resolve().parents[3]


def _cmd(root: Path, base_url: str, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "extract",
        "priors",
        "--dataset",
        str(root),
        "--provider",
        "openai",
        "--model",
        "test-model",
        "--base-url",
        base_url,
        "--cache-dir",
        str(cache),
        "--concurrency",
        str(CONCURRENCY),
        "--timeout",
        "5",
        "--no-progress",
    ]


def test_sigkill_then_resume_resends_only_in_flight(make_dataset, mrow, tmp_path):
    root = make_dataset([mrow(str(i), "fx-a", f"clip {i:03d}", "dog, fx-a") for i in range(N)])
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with FakeOpenAIServer(latency=0.15) as srv:
        proc = subprocess.Popen(
            _cmd(root, srv.base_url, cache_dir),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        cache = ResponseCache(cache_dir)
        deadline = time.time() + 60
        while len(cache.keys()) < N // 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        cached_after_kill = len(cache.keys())
        while srv.inflight and time.time() < deadline:  # let the server finish what the dead client had sent
            time.sleep(0.01)
        first = srv.titles()
        assert N // 3 <= cached_after_kill < N

        done = subprocess.run(
            _cmd(root, srv.base_url, cache_dir),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        second = srv.titles()[len(first) :]

    assert len(set(first)) == len(first) and len(set(second)) == len(second)  # no retries in this test
    assert set(first) | set(second) == {f"clip {i:03d}" for i in range(N)}
    # exactly the clips without a cached answer were sent again; only those in flight were sent twice
    assert len(second) == N - cached_after_kill
    assert len(set(first) & set(second)) <= CONCURRENCY
    assert f"cached {cached_after_kill}, sent {N - cached_after_kill}" in done.stdout
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", [str(i) for i in range(N)])
    assert not missing.any()
    assert len(ResponseCache(cache_dir).keys()) == N
