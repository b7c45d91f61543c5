"""Hyperparameter search ranges of end-to-end fine-tuning, per backbone and stage (the CP-JKU report's Table
1).

Learning rates are sampled log-uniformly, λ uniformly; 20 configurations per backbone-stage.
Warm-up is 1 epoch; the decay starts at epoch 1 in stage 1 and at epoch 2 in stages 2 and 3
(the reference's sweeps: ``lr_decay_start_epoch`` 2 in its stage-2.1 and stage-2.2 sweeps). The ranges and the
fixed recipe are listed in docs/finetune.md. The ``tiny`` rows are ours (the test/debug backbone),
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


def _stage_rows(
    backbone: str, rows: list[tuple[float, float, int]], stage2_lam: tuple[float, float] = (0.75, 1.0)
) -> dict[tuple[str, int], SearchRange]:
    lams = {1: (0.0, 0.0), 2: stage2_lam, 3: (0.95, 1.0)}
    return {
        (backbone, s): SearchRange(
            backbone, s, lo, hi, ep, *lams[s], decay_start_epoch=1.0 if s == 1 else 2.0
        )
        for s, (lo, hi, ep) in enumerate(rows, start=1)
    }


#: (backbone, stage) → range; backbone names are the registry names of extract.backbones
SEARCH_RANGES: dict[tuple[str, int], SearchRange] = {
    **_stage_rows("passt", [(5e-6, 1e-5, 30), (3e-6, 6e-6, 15), (0.9e-6, 2e-6, 15)]),
    **_stage_rows("beats", [(3e-6, 6e-6, 15), (3e-6, 6e-6, 15), (1e-6, 5e-6, 15)]),
    **_stage_rows("m2d", [(1e-6, 4e-6, 30), (1e-6, 3e-6, 30), (1e-6, 3e-6, 15)]),
    **_stage_rows("cpclap", [(1e-6, 5e-6, 20), (2e-6, 5e-6, 15), (2e-6, 5e-6, 15)]),
    # LAION-CLAP stage 2: the reference's sweep samples λ in [0.95, 1] (the report's table says 0.75-1)
    **_stage_rows(
        "laion-clap", [(1e-6, 5e-6, 20), (2e-6, 5e-6, 15), (1e-6, 4e-6, 15)], stage2_lam=(0.95, 1.0)
    ),
    **_stage_rows("tiny", [(3e-4, 3e-3, 10), (3e-4, 3e-3, 5), (1e-4, 1e-3, 5)]),
}
REPORT_BACKBONES = ("passt", "beats", "m2d", "cpclap", "laion-clap")
TRIALS_PER_STAGE = 20


def search_range(backbone: str, stage: int) -> SearchRange:
    """The search range of ``backbone`` (a registry name of extract.backbones) in ``stage``; KeyError names
    the known ones."""
    try:
        return SEARCH_RANGES[(backbone, int(stage))]
    except KeyError:
        known = sorted({b for b, _ in SEARCH_RANGES})
        raise KeyError(
            f"no search range for backbone {backbone!r} stage {stage}; known backbones: {', '.join(known)}"
        ) from None
