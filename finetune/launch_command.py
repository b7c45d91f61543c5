"""The command line that starts ``finetune/run.py`` in one or several processes.

One process: plain ``python finetune/run.py``. Several: ``accelerate launch --multi_gpu`` (on a
CPU, set ``ACCELERATE_USE_CPU=true`` in the environment; plain ``--cpu --num_processes N``
silently runs one process). Used by the sweep, its tests and the benchmark.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

RUN_SCRIPT = Path(__file__).resolve().parent / "run.py"


def set_options(overrides: Iterable[str]) -> list[str]:
    """``["train.lr=1e-5", ...]`` → ``["--set", "train.lr=1e-5", ...]``: run.py's override options."""
    return [arg for item in overrides for arg in ("--set", item)]


def run_command(args: list[str], processes: int = 1, mixed_precision: str = "no") -> list[str]:
    """argv that runs ``finetune/run.py args`` in ``processes`` processes."""
    if processes == 1:
        return [sys.executable, str(RUN_SCRIPT), *args]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        mixed_precision,
        "--dynamo_backend",
        "no",
        str(RUN_SCRIPT),
        *args,
    ]
