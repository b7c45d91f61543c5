"""SIGKILL the CLI after its first chunk is written; the re-run completes only the missing chunks and the
store equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from extract.__main__ import main as cli_main

REPO = Path(__file__).resolve().parents[2]
GROUP = "embeddings/logmel@none"

# The CLI with a slowed-down logmel registered under another name (same spec, same values), so that the
# kill reliably lands between chunks of a run that would otherwise finish in a blink.
SLOW_CLI = """
import sys, time
from extract.backbones.base import register_backbone
from extract.backbones.logmel import LogMelStats

class Slow(LogMelStats):
    def embed_windows(self, windows, lengths=None):
        time.sleep(0.25)
        return super().embed_windows(windows, lengths)

register_backbone("slow-logmel")(lambda cfg: Slow())
from extract.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _args(ds: Path, store: Path, backbone: str) -> list[str]:
    return [
        "embeddings",
        "--dataset",
        str(ds),
        "--backbone",
        backbone,
        "--store",
        str(store),
        "--chunk-rows",
        "2",
        "--batch-size",
        "1",
        "--num-workers",
        "0",
        "--no-progress",
    ]


def _done(store: Path) -> np.ndarray | None:
    try:
        g = Store(store, mode="r").root[GROUP]
        return np.asarray(g["chunk_done"][...])
    except Exception:
        return None


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(mixed_dataset, tmp_path, capsys):
    ds = mixed_dataset
    killed = tmp_path / "killed.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *_args(ds, killed, "slow-logmel")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            done = _done(killed)
            if done is not None and done.any():
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = _done(killed)
    assert done is not None and done.any() and not done.all(), done
    assert not Store(killed, mode="r").attrs(GROUP)["complete"]

    # the same command again (the plain logmel backbone: same spec, same group) completes the missing chunks
    assert cli_main(_args(ds, killed, "logmel")) == 0
    n_done, n_chunks = int(done.sum()), len(done)
    assert f"this run: {n_chunks - n_done} chunk(s) written, {n_done} already done" in capsys.readouterr().out
    resumed = Store(killed, mode="r").read_table(GROUP)
    reference_store = tmp_path / "reference.zarr"
    assert cli_main(_args(ds, reference_store, "logmel")) == 0
    ref = Store(reference_store, mode="r").read_table(GROUP)

    assert resumed.ids.tolist() == ref.ids.tolist()
    assert resumed["status"].tolist() == ref["status"].tolist()
    assert resumed["error"].tolist() == ref["error"].tolist()
    assert resumed["n_windows"].tolist() == ref["n_windows"].tolist()
    np.testing.assert_allclose(resumed["duration"], ref["duration"], rtol=0, atol=0)
    np.testing.assert_allclose(resumed["audio"], ref["audio"], rtol=1e-5, atol=1e-5)
    assert resumed.attrs["complete"] and resumed.attrs["manifest_digest"] == ref.attrs["manifest_digest"]
