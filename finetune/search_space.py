"""Hyperparameter search ranges of end-to-end fine-tuning, per backbone and stage (the CP-JKU report's Table 1).

Learning rates are sampled log-uniformly, λ uniformly; 20 configurations per backbone-stage.
Warm-up is 1 epoch; the decay starts at epoch 1 (2 in stage 2). The ranges and the fixed
recipe are listed in docs/finetune.md. The ``tiny`` rows are ours (the test/debug backbone),
not the report's.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchRange:
    backbone: str
    stage: int
    lr_min: float
    lr_max: float
    epochs: int
    lam_min: float = 0.0
    lam_max: float = 0.0
    warmup_epochs: float = 1.0
    decay_start_epoch: float = 1.0

    @property
    def lr_mid(self) -> float:
        """Geometric middle of the learning-rate range (the per-stage lr in configs/finetune/)."""
        return (self.lr_min * self.lr_max) ** 0.5


def _stage_rows(backbone: str, rows: list[tuple[float, float, int]]) -> dict[tuple[str, int], SearchRange]:
    lams = {1: (0.0, 0.0), 2: (0.75, 1.0), 3: (0.95, 1.0)}
    return {(backbone, s): SearchRange(backbone, s, lo, hi, ep, *lams[s], decay_start_epoch=2.0 if s == 2 else 1.0)
            for s, (lo, hi, ep) in enumerate(rows, start=1)}


#: (backbone, stage) → range; backbone names are the registry names of extract.backbones
SEARCH_RANGES: dict[tuple[str, int], SearchRange] = {
    **_stage_rows("passt", [(5e-6, 1e-5, 30), (3e-6, 6e-6, 15), (0.9e-6, 2e-6, 15)]),
    **_stage_rows("beats", [(3e-6, 6e-6, 15), (3e-6, 6e-6, 15), (1e-6, 5e-6, 15)]),
    **_stage_rows("m2d", [(1e-6, 4e-6, 30), (1e-6, 3e-6, 30), (1e-6, 3e-6, 15)]),
    **_stage_rows("cpclap", [(1e-6, 5e-6, 20), (2e-6, 5e-6, 15), (2e-6, 5e-6, 15)]),
    **_stage_rows("laion-clap", [(1e-6, 5e-6, 20), (2e-6, 5e-6, 15), (1e-6, 4e-6, 15)]),
    **_stage_rows("tiny", [(3e-4, 3e-3, 10), (3e-4, 3e-3, 5), (1e-4, 1e-3, 5)]),
}
REPORT_BACKBONES = ("passt", "beats", "m2d", "cpclap", "laion-clap")
TRIALS_PER_STAGE = 20


def search_range(backbone: str, stage: int) -> SearchRange:
    """The search range of ``backbone`` (a registry name of extract.backbones) in ``stage``; KeyError names the known ones."""
    try:
        return SEARCH_RANGES[(backbone, int(stage))]
    except KeyError:
        known = sorted({b for b, _ in SEARCH_RANGES})
        raise KeyError(f"no search range for backbone {backbone!r} stage {stage}; known backbones: {', '.join(known)}") from None
