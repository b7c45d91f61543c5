"""Failed requests are never a success: wrong key or model stops at once (exit 2), requests that
fail after their retries end with exit 3, good rows of an existing table are never replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from cache.tables import read_priors
from cache.taxonomy import CLASS_INDEX
from extract.llm.cli import main
from testkit.fake_llm_server import FakeOpenAIServer

from .conftest import openai_args

CLIPS = {"1": ("dog", "fx-a"), "2": ("car", "fx-v"), "3": ("rain", "fx-n")}
IDS = list(CLIPS)
REPO = Path(__file__).resolve().parents[3]


def _root(make_dataset, mrow, clips=CLIPS):
    return make_dataset([mrow(i, "fx-o", t, g) for i, (t, g) in clips.items()])


def _args(root, base_url, cache, *extra, api="responses"):
    return openai_args(
        "priors",
        root,
        base_url,
        cache,
        "--api",
        api,
        "--timeout",
        "0.5",
        "--concurrency",
        "4",
        *extra,
        backoff_base=0.01,
        max_retries=1,
    )


def _good_table(root, tmp_path):
    """A first run that answers every clip; returns the priors it wrote."""
    with FakeOpenAIServer() as srv:
        assert main(_args(root, srv.base_url, tmp_path / "good-cache")) == 0
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", IDS)
    assert not missing.any()
    return prior


def _closed_port_url() -> str:
    srv = FakeOpenAIServer().start()
    url = srv.base_url
    srv.stop()  # nothing listens there any more: every request is a connection error
    return url


def test_wrong_key_stops_at_the_first_401_and_keeps_the_table(make_dataset, mrow, tmp_path, capsys, secret):
    root = _root(make_dataset, mrow)
    before = _good_table(root, tmp_path)
    capsys.readouterr()
    with FakeOpenAIServer(fail_routes={"POST /v1/responses": 401}) as srv:
        rc = main(_args(root, srv.base_url, tmp_path / "new-cache"))
        assert srv.count() == 1  # the rest was never sent
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "rejected the API key (http_401" in err and "check OPENAI_API_KEY" in err and secret not in err
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", IDS)
    assert not missing.any() and np.array_equal(prior, before)


def test_key_echoed_by_the_server_is_masked(make_dataset, mrow, tmp_path, capsys, secret):
    root = _root(make_dataset, mrow, {"1": ("leak [[key401]]", "x")})
    with FakeOpenAIServer() as srv:
        assert main(_args(root, srv.base_url, tmp_path / "c")) == 2
    err = capsys.readouterr().err
    assert "Bearer ***" in err and secret not in err


def test_unknown_model_stops_with_one_line(make_dataset, mrow, tmp_path, capsys):
    root = _root(make_dataset, mrow)
    routes = {"POST /v1/chat/completions": (404, "The model `test-model` does not exist.")}
    with FakeOpenAIServer(fail_routes=routes) as srv:
        rc = main(_args(root, srv.base_url, tmp_path / "c", api="chat"))
        assert srv.count() == 1
    err = capsys.readouterr().err
    assert rc == 2 and "does not serve model 'test-model'" in err and "check --model" in err
    assert not (root / "cache.zarr").exists()


def test_every_request_failing_is_exit_3_and_never_replaces_good_rows(make_dataset, mrow, tmp_path, capsys):
    root = _root(make_dataset, mrow)
    before = _good_table(root, tmp_path)
    capsys.readouterr()
    rc = main(_args(root, _closed_port_url(), tmp_path / "new-cache"))
    out = capsys.readouterr().out
    assert rc == 3
    assert "FAILED: 3 of 3 request(s) got no answer after their retries" in out
    assert "connection_error ×3" in out and "NOT WRITTEN" in out
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", IDS)
    assert not missing.any() and np.array_equal(prior, before)


def test_server_errors_without_a_table_write_nothing_then_resume(make_dataset, mrow, tmp_path, capsys):
    clips = {"1": ("dog [[always500]]", "fx-a"), "2": ("car [[always500]]", "fx-v")}
    root = _root(make_dataset, mrow, clips)
    cache = tmp_path / "c"
    with FakeOpenAIServer() as srv:
        assert main(_args(root, srv.base_url, cache)) == 3
        assert srv.count() == 4  # 2 requests × (1 + 1 retry)
    out = capsys.readouterr().out
    assert "http_500 ×2" in out and "no row has a usable answer" in out
    assert not Store(root / "cache.zarr").has("llm/priors/openai")


def test_partial_failure_keeps_what_succeeded_and_resumes(make_dataset, mrow, tmp_path, capsys):
    clips = {"1": ("dog", "fx-a"), "2": ("car [[hang]]", "fx-v")}
    root = _root(make_dataset, mrow, clips)
    cache = tmp_path / "c"
    with FakeOpenAIServer(hang_s=5.0) as srv:  # 'hang': the first attempt of that clip times out
        assert main(_args(root, srv.base_url, cache, "--set", "llm.max_retries=0")) == 3
        n = srv.count()
        assert main(_args(root, srv.base_url, cache)) == 0  # the re-run sends only the failed request
        assert srv.titles()[n:] == ["car [[hang]]"]
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", ["1", "2"])
    assert not missing.any() and prior[1, CLASS_INDEX["fx-v"]] == pytest.approx(0.75)


def test_in_flight_requests_survive_a_fallback(make_dataset, mrow, tmp_path):
    # the first request's 429 lets the others go out before any fallback is known: every request
    # in flight gets the 400 for the output format / parameter that the first 400 already dropped
    clips = {str(i): (f"clip {i}" + (" [[429:0]]" if i == 0 else ""), "fx-a") for i in range(10)}
    root = _root(make_dataset, mrow, clips)
    with FakeOpenAIServer(supports_json_schema=False, reject_params=("temperature",), latency=0.2) as srv:
        assert main(_args(root, srv.base_url, tmp_path / "c", "--concurrency", "8", api="chat")) == 0
        assert srv.max_inflight > 1
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai", list(clips))
    assert not missing.any() and np.allclose(prior[:, CLASS_INDEX["fx-a"]], 0.75)


def test_progress_in_logs_is_a_summary_line_not_a_bar(make_dataset, mrow, tmp_path, capsys):
    root = _root(make_dataset, mrow)
    with FakeOpenAIServer() as srv:
        args = [a for a in _args(root, srv.base_url, tmp_path / "c") if a != "--no-progress"]
        assert main(args) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "it/s]" not in err
    assert [line.split(" in ")[0] for line in err.splitlines()] == ["openai priors: done 3/3 req"]


def test_output_piped_to_a_closed_reader_exits_quietly(make_dataset, mrow, tmp_path):
    root = _root(make_dataset, mrow)
    with FakeOpenAIServer() as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "extract", *_args(root, srv.base_url, tmp_path / "c")],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()  # like `| head` having exited before the report is printed
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    assert rc == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    assert not read_priors(Store(root / "cache.zarr", mode="r"), "openai", IDS)[1].any()
