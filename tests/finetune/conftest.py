"""Tiny datasets in the real BSD layout, with cache stores (priors, summaries), for the fine-tune tests."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cache.provenance import base_provenance
from cache.store import Store, default_store_path
from cache.taxonomy import CLASS_INDEX, NUM_CLASSES
from finetune.launch_command import run_command, set_options
from testkit.bsd_dataset import labelled_row, write_metadata, write_wav

REPO = Path(__file__).resolve().parents[2]
CLASSES4 = ("m-si", "is-p", "sp-s", "fx-a")
PRIOR, SUMMARY = "test-prior", "test-summary"
#: tiny backbone settings shared by every test run: 1 s windows at 8 kHz
TINY = [
    "backbone.name=tiny",
    "backbone.overrides={sample_rate=8000, window_seconds=1.0, dim=16, channels=8, n_mels=16}",
]


def _write_set(root: Path, name: str, ids: list[str], classes: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i, c in zip(ids, classes, strict=True):
        dur = rng.uniform(0.3, 2.6)  # 1 to 3 windows of 1 s
        t = np.arange(int(dur * 16000)) / 16000
        f0 = 200 * (1 + CLASSES4.index(c))
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))
        write_wav(root, i, x.astype(np.float32), 16000)
        rows.append(
            labelled_row(
                i,
                c,
                uploader="u",
                title=f"{c} sound {i}",
                tags=f"{c.split('-')[0]},test",
                description=f"A <b>{c}</b> clip.",
            )
        )
    write_metadata(root, rows, name)


def _write_store(root: Path, ids: list[str], classes: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed + 100)
    prior = rng.dirichlet(np.ones(NUM_CLASSES) * 0.3, size=len(ids)).astype(np.float32)
    for k, c in enumerate(classes):
        prior[k, CLASS_INDEX[c]] += 1.0
    prior /= prior.sum(1, keepdims=True)
    missing = np.zeros(len(ids), dtype=bool)
    missing[::7] = True
    prior[missing] = 0
    st = Store(default_store_path(root))
    st.write_table(
        f"llm/priors/{PRIOR}", ids, {"prior": prior, "missing": missing}, attrs=base_provenance("test")
    )
    st.write_table(
        f"llm/summaries/{SUMMARY}",
        ids,
        {"text": [f"a {c} sound" for c in classes], "missing": np.zeros(len(ids), dtype=bool)},
        attrs=base_provenance("test"),
    )


@dataclass
class FtData:
    clean: Path
    noisy: Path
    clean_ids: list[str]
    noisy_ids: list[str]

    def overrides(self, out: Path, *extra: str) -> list[str]:
        """``section.key=value`` overrides of a small run on these datasets (``extra`` last, so they win)."""
        return [
            *TINY,
            f"data.clean={self.clean}",
            f"data.noisy={self.noisy}",
            f"data.prior={PRIOR}",
            f"output.dir={out}",
            "data.num_workers=0",
            "train.epochs=2",
            "train.lr=3e-3",
            "output.tensorboard=false",
            "data.eval_max_windows=16",
            *extra,
        ]

    def args(self, out: Path, *extra: str) -> list[str]:
        """finetune/run.py arguments of a small run: ``--set`` of :meth:`overrides`."""
        return set_options(self.overrides(out, *extra))


@pytest.fixture(scope="session")
def ft_data(tmp_path_factory) -> FtData:
    base = tmp_path_factory.mktemp("ftdata")
    clean_ids = [str(1000 + k) for k in range(40)]
    clean_cls = [CLASSES4[k % 4] for k in range(40)]
    # the noisy set: 20 new clips plus 6 shared with the clean set; labels partly wrong
    noisy_ids = [str(5000 + k) for k in range(20)] + clean_ids[:6]
    noisy_cls = [CLASSES4[(k + (k % 3 == 0)) % 4] for k in range(20)] + clean_cls[:6]
    _write_set(base / "clean", "TESTCLEAN", clean_ids, clean_cls, 0)
    _write_set(base / "noisy", "TESTNOISY", noisy_ids, noisy_cls, 1)
    _write_store(base / "clean", clean_ids, clean_cls, 0)
    _write_store(base / "noisy", noisy_ids, noisy_cls, 1)
    return FtData(base / "clean", base / "noisy", clean_ids, noisy_ids)


def reset_accelerate() -> None:
    """Forget the Accelerate singletons between in-process runs of a test session."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def run_inprocess(args: list[str]) -> int:
    from finetune.run import main

    reset_accelerate()
    try:
        return main(args)
    finally:
        reset_accelerate()


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONHASHSEED": "0",
            "ACCELERATE_USE_CPU": "true",
        }
    )
    return env


def launch(args: list[str], processes: int = 1, env_extra: dict[str, str] | None = None, timeout: int = 240):
    """Run finetune/run.py in fresh process(es): plain python, or ``accelerate launch`` on CPU."""
    env = subprocess_env()
    env.update(env_extra or {})
    cmd = run_command(args, processes)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_ft():
    """``run_ft(args) -> exit code``: finetune/run.py's main() in this process."""
    return run_inprocess


@pytest.fixture
def launch_ft():
    """``launch_ft(args, processes=1, env_extra=None) -> CompletedProcess``: fresh process(es)."""
    return launch
