"""Two CPU processes under ``accelerate launch`` write disjoint chunks of one store; the result equals a
single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from extract.config import EmbeddingsConfig
from extract.runner import run_embeddings

REPO = Path(__file__).resolve().parents[2]
GROUP = "embeddings/logmel@none"


@pytest.mark.slow
def test_two_process_accelerate_equals_single_process(mixed_dataset, tmp_path):
    ds = mixed_dataset
    sharded = tmp_path / "sharded.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "extract",
        "embeddings",
        "--dataset",
        str(ds),
        "--backbone",
        "logmel",
        "--store",
        str(sharded),
        "--chunk-rows",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert "rank 0/2" in p.stderr and "10 rows, 8 ok, 2 failed" in p.stdout
    assert p.stdout.count("10 rows") == 1  # only rank 0 finalizes and reports
    assert "this run (rank 0 of 2): 3 chunk(s) written" in p.stdout  # chunks 0, 2, 4; rank 1 wrote 1 and 3

    single = tmp_path / "single.zarr"
    run_embeddings(
        EmbeddingsConfig(
            dataset=ds, backbone="logmel", store=single, chunk_rows=2, num_workers=0, progress=False
        )
    )
    a = Store(sharded, mode="r").read_table(GROUP)
    b = Store(single, mode="r").read_table(GROUP)
    assert a.attrs["world_size"] == 2 and a.attrs["complete"]
    assert a.ids.tolist() == b.ids.tolist()
    assert a["status"].tolist() == b["status"].tolist() and a["error"].tolist() == b["error"].tolist()
    assert a["n_windows"].tolist() == b["n_windows"].tolist()
    np.testing.assert_allclose(a["duration"], b["duration"], rtol=0, atol=0)
    np.testing.assert_allclose(a["audio"], b["audio"], rtol=1e-5, atol=1e-5)
