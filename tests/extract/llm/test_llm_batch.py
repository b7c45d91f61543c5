"""The `openai-batch` provider: prepare → upload → create → status → download → merge → resubmit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cache.store import Store
from cache.tables import read_priors
from cache.taxonomy import CLASS_INDEX
from extract.llm.cli import main

CLIPS = {
    "1": ("dog", "fx-a"),
    "2": ("car", "fx-v"),
    "3": ("band [[batchfail]]", "m-m"),
    "4": ("talk [[batchlost]]", "sp-s"),
    "5": ("steps [[other]]", "fx-h"),
}


def _setup(make_dataset, mrow):
    return make_dataset([mrow(i, "fx-o", t, g) for i, (t, g) in CLIPS.items()])


def _args(root, server, tmp_path, wait):
    return [
        "priors",
        "--dataset",
        str(root),
        "--provider",
        "openai-batch",
        "--model",
        "test-model",
        "--base-url",
        server.base_url,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--batch-wait",
        str(wait),
        "--set",
        "llm.batch_poll_s=0.02",
    ]


def _created(server):
    """Input rows of every batch created on the server, in creation order."""
    out = []
    for b in sorted(server.batches.values(), key=lambda b: b["id"]):
        lines = server.files[b["input_file_id"]]["content"].decode().splitlines()
        out.append([json.loads(x)["custom_id"] for x in lines if x.strip()])
    return out


def test_submit_collect_resubmit_only_failed_rows(server, make_dataset, mrow, tmp_path):
    root = _setup(make_dataset, mrow)
    # first call: submit and return at once; nothing is written, exit status 3 (pending)
    assert main(_args(root, server, tmp_path, 0)) == 3
    assert len(server.batches) == 1 and not (root / "cache.zarr").exists()
    state_file = root / "llm_batches" / "priors-openai-batch.json"
    state = json.loads(state_file.read_text())
    assert [b["id"] for b in state["batches"].values()] == list(server.batches)
    b = next(iter(server.batches.values()))
    assert b["endpoint"] == "/v1/responses" and len(b["metadata"]["bst_hac_tag"]) == 40
    assert server.files[b["input_file_id"]]["purpose"] == "batch"

    # second call: collects the open batch (no new batch for those rows), then resubmits only the
    # failed row and the row missing from the output, in one new batch
    assert main(_args(root, server, tmp_path, 10)) == 0
    created = _created(server)
    assert len(created) == 2 and len(created[0]) == 5 and len(created[1]) == 2
    assert set(created[1]) < set(created[0])
    ids = list(CLIPS)
    prior, missing = read_priors(Store(root / "cache.zarr", mode="r"), "openai-batch", ids)
    assert missing.tolist() == [False, False, False, False, True]  # 'other'-only answer stays missing
    assert prior[0, CLASS_INDEX["fx-a"]] == pytest.approx(0.75)
    assert prior[2, CLASS_INDEX["m-m"]] == pytest.approx(0.75)  # the resubmitted row
    assert np.allclose(prior[:4].sum(1), 1.0)

    # third call: everything from the cache, no batch, no upload
    n_files = len(server.files)
    assert main(_args(root, server, tmp_path, 10)) == 0
    assert len(server.batches) == 2 and len(server.files) == n_files


def test_lost_state_file_adopts_the_tagged_batch(server, make_dataset, mrow, tmp_path):
    root = _setup(make_dataset, mrow)
    assert main(_args(root, server, tmp_path, 0)) == 3
    (root / "llm_batches" / "priors-openai-batch.json").unlink()  # e.g. killed before the state was saved
    assert main(_args(root, server, tmp_path, 10)) == 0
    created = _created(server)
    # the first batch was found by its metadata tag and collected: no second full batch was paid for
    assert [len(c) for c in created] == [5, 2]


def test_rows_are_split_by_count_and_size(server, make_dataset, mrow, tmp_path):
    from extract.llm.config import LLMConfig
    from extract.llm.providers import ChatRequest
    from extract.llm.providers.openai_batch import OpenAIBatchProvider

    reqs = [
        ChatRequest(
            f"{i:064x}",
            [{"role": "system", "content": "s" * 1000}, {"role": "user", "content": "u"}],
            "priors",
        )
        for i in range(7)
    ]
    by_count = OpenAIBatchProvider(LLMConfig(batch_max_requests=3)).chunks(reqs)
    assert [len(c) for c in by_count] == [3, 3, 1]
    by_size = OpenAIBatchProvider(LLMConfig(batch_max_mb=0.011)).chunks(reqs)  # ~5.2 kB per row
    assert [len(c) for c in by_size] == [2, 2, 2, 1]
    assert [r.key for c in by_size for r in c] == [r.key for r in reqs]

    root = _setup(make_dataset, mrow)
    assert main(_args(root, server, tmp_path, 10) + ["--set", "llm.batch_max_requests=2"]) == 0
    assert [len(c) for c in _created(server)][:3] == [2, 2, 1]


@pytest.mark.parametrize("status", [404, 500])
def test_a_server_that_cannot_list_batches_has_nothing_to_adopt(make_dataset, mrow, tmp_path, capsys, status):
    from testkit.fake_llm_server import FakeOpenAIServer

    root = _setup(make_dataset, mrow)
    with FakeOpenAIServer(batch_steps=2, fail_routes={"GET /v1/batches": status}) as srv:
        args = [a for a in _args(root, srv, tmp_path, 10) if a != "--no-progress"]
        assert main(args + ["--set", "llm.max_retries=0"]) == 0
        assert [len(c) for c in _created(srv)] == [5, 2]
    assert f"cannot list batches (GET /v1/batches: http_{status}" in capsys.readouterr().out
    assert not read_priors(Store(root / "cache.zarr", mode="r"), "openai-batch", list(CLIPS))[1][:4].any()


@pytest.mark.parametrize(
    "status,code,needle",
    [
        (500, 3, "error: openai-batch: POST /v1/files: http_500"),
        (401, 2, "rejected the API key (POST /v1/files: http_401"),
    ],
)
def test_api_errors_are_one_line(make_dataset, mrow, tmp_path, capsys, secret, status, code, needle):
    from testkit.fake_llm_server import FakeOpenAIServer

    root = _setup(make_dataset, mrow)
    with FakeOpenAIServer(fail_routes={"POST /v1/files": status}) as srv:
        assert main(_args(root, srv, tmp_path, 0) + ["--set", "llm.max_retries=0"]) == code
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err and secret not in err
