"""Random search: K configurations (lr log-uniform, λ uniform) trained together in one process,
optionally with successive halving.

The learning-rate range for heads on frozen features (log-uniform 1e-4 – 3e-3) is our own
choice; the report's Table 1 ranges belong to end-to-end fine-tuning. The reference runs a plain
random search (every configuration until it early-stops or reaches the last epoch); successive
halving (:func:`rung_ends`, off by default) is ours.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cache.taxonomy import NUM_CLASSES

from .data import HeadData
from .model import FusionHead
from .training import RunResult, StackedRun, TrainConfig, resolve_device

#: our default learning-rate range for heads on frozen features (not from the report)
HEAD_LR_RANGE = (1e-4, 3e-3)


@dataclass
class SearchSpace:
    """Ranges of one stage's search: lr log-uniform in [lr_min, lr_max], λ uniform in [lam_min, lam_max]."""

    k: int = 20
    lr_min: float = HEAD_LR_RANGE[0]
    lr_max: float = HEAD_LR_RANGE[1]
    lam_min: float = 0.0
    lam_max: float = 0.0
    seed: int = 0
    max_stack: int = (
        0  # train at most this many configurations at once (0 = auto: all on GPU, cache-sized on CPU)
    )
    halving: bool = False  # successive halving (ours; the reference searches plainly), see rung_ends
    rung_epochs: int = 2  # epochs of the first halving rung (rungs end at r, 2r, 4r, ...)

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError("search needs k >= 1")
        if self.rung_epochs < 1:
            raise ValueError(f"rung_epochs must be >= 1, got {self.rung_epochs}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(
                f"learning-rate range must satisfy 0 < lr_min <= lr_max, got {self.lr_min}, {self.lr_max}"
            )
        if not 0 <= self.lam_min <= self.lam_max <= 1:
            raise ValueError(
                f"λ range must satisfy 0 <= lam_min <= lam_max <= 1, got {self.lam_min}, {self.lam_max}"
            )


def sample_configs(base: TrainConfig, space: SearchSpace) -> list[TrainConfig]:
    """K configurations: ``base`` with sampled lr, λ and a per-configuration seed."""
    space.validate()
    rng = np.random.default_rng(space.seed)
    out = []
    for _ in range(space.k):
        lr = math.exp(rng.uniform(math.log(space.lr_min), math.log(space.lr_max)))
        lam = (
            float(rng.uniform(space.lam_min, space.lam_max))
            if space.lam_max > space.lam_min
            else float(space.lam_min)
        )
        seed = int(rng.integers(0, 2**31 - 1))
        out.append(dataclasses.replace(base, lr=float(lr), lam=lam, seed=seed))
    return out


#: on a CPU, stack configurations only while their weights stay about this small: beyond the
#: caches a stacked step streams every weight from memory and K sequential runs are as fast
CPU_STACK_BYTES = 32 << 20


def auto_stack(config: TrainConfig, in_dim: int) -> int:
    """How many configurations to train at once: all on a GPU; on a CPU as many as keep the
    stacked weights within :data:`CPU_STACK_BYTES` (at least one)."""
    if resolve_device(config.device).type != "cpu":
        return 0
    with torch.device("meta"):
        n = FusionHead(in_dim, NUM_CLASSES, **config.head_kwargs()).n_parameters()
    return max(1, CPU_STACK_BYTES // max(1, 4 * n))


def rung_ends(epochs: int, rung_epochs: int) -> list[int]:
    """Epochs after which successive halving keeps the best half: r, 2r, 4r, ... below ``epochs``.

    At each rung's end the configurations still training are ranked by their best validation hF
    so far (ties: lower index first, as :func:`ranking`) and the best ceil(n/2) go on; the others
    stop there, keeping their best epoch (``RunResult.stopped_by = "halving"``). Configurations
    that early-stopped before take no place. After the last rung the survivors train on to the
    last epoch (or until they early-stop). Each configuration keeps its own full-length schedule,
    so a survivor's result equals the configuration trained alone.
    """
    if rung_epochs < 1:
        raise ValueError(f"rung_epochs must be >= 1, got {rung_epochs}")
    out, e = [], rung_epochs
    while e < epochs:
        out.append(e)
        e *= 2
    return out


def run_search(
    configs: Sequence[TrainConfig],
    train: HeadData,
    val: HeadData,
    init_state: dict | None = None,
    max_stack: int = 0,
    progress: bool = False,
    desc: str = "search",
    halving: bool = False,
    rung_epochs: int = 2,
) -> list[RunResult]:
    """Train all configurations, stacked in groups of ``max_stack`` (0 = :func:`auto_stack`);
    results in input order. Grouping never changes the results. ``halving`` runs successive
    halving with first rung ``rung_epochs`` (:func:`rung_ends`) across all groups."""
    configs = list(configs)
    if not max_stack and configs:
        max_stack = auto_stack(configs[0], train.dim)
    step = max_stack if max_stack and max_stack > 0 else len(configs)
    spans = [(lo, min(lo + step, len(configs))) for lo in range(0, len(configs), step)]

    def start(lo: int, hi: int) -> StackedRun:
        return StackedRun(
            configs[lo:hi],
            train,
            val,
            init_state,
            progress=progress,
            desc=f"{desc} [{lo + 1}-{hi}/{len(configs)}]",
        )

    if not halving or not configs:  # one group at a time: only one group's state in memory
        results: list[RunResult] = []
        for lo, hi in spans:
            run = start(lo, hi)
            run.run_to(run.epochs)
            results.extend(run.results())
        return results
    if val is None or not len(val):
        raise ValueError(
            "successive halving needs a validation set (it ranks configurations on validation hF)"
        )
    runs = [start(lo, hi) for lo, hi in spans]  # every group paused at each rung
    for end in rung_ends(configs[0].epochs, rung_epochs):
        for run in runs:
            run.run_to(end)
        alive = [
            (lo + k, run, k)
            for (lo, _), run in zip(spans, runs, strict=True)
            for k in range(run.K)
            if run.active[k]
        ]
        alive.sort(key=lambda t: (-t[1].best_hf(t[2]), t[0]))
        for _, run, k in alive[math.ceil(len(alive) / 2) :]:
            run.stop([k])
    out: list[RunResult] = []
    for run in runs:
        run.run_to(run.epochs)
        out.extend(run.results())
    return out


def ranking(results: Sequence[RunResult]) -> list[int]:
    """Indices of ``results`` sorted by validation hF (best first; ties: lower index first)."""
    return sorted(range(len(results)), key=lambda i: (-results[i].best_val.get("hF", -1.0), i))


def results_table(results: Sequence[RunResult], names: Sequence[str] | None = None) -> str:
    """Markdown table of a search, sorted by validation hF."""
    names = list(names) if names is not None else [f"c{i:02d}" for i in range(len(results))]
    lines = [
        "| rank | run | lr | λ | seed | best epoch | epochs | val hP | val hR | val hF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, i in enumerate(ranking(results), start=1):
        r = results[i]
        v = r.best_val
        lines.append(
            f"| {rank} | {names[i]} | {r.config.lr:.3g} | {r.config.lam:.3f} | {r.config.seed} | "
            f"{r.best_epoch} | "
            f"{len(r.history)} | {v.get('hP', float('nan')):.4f} | {v.get('hR', float('nan')):.4f} | "
            f"{v.get('hF', float('nan')):.4f} |"
        )
    return "\n".join(lines)
