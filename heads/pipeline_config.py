"""The pipeline's config (``python -m heads pipeline --config FILE.toml``): data folders, models,
the recipe's shared settings, one :class:`StageSettings` per stage, selections and submission.

The shipped configs are in ``configs/heads/``; docs/heads.md explains every field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .data import InputSpec
from .ensemble import DECODINGS
from .training import TrainConfig


@dataclass
class DatasetRef:
    root: str = ""  # dataset root (empty = not used)
    store: str = ""  # cache store; empty = <root>/cache.zarr


@dataclass
class DataConfig:
    clean: DatasetRef = field(default_factory=DatasetRef)
    noisy: DatasetRef = field(default_factory=DatasetRef)
    eval: DatasetRef = field(default_factory=DatasetRef)
    split_file: str = ""  # a saved split (e.g. the one the embedded-knn prior was cross-fitted on)
    split_preset: str = "cpjku"  # used when split_file is empty
    fold: int = 0
    split_seed: int | None = None  # only for split_preset = "custom"
    # leave out of stage 2 the noisy clips that are in the clean validation/test split (ours);
    # false = train on every noisy clip, as the reference does (docs/parity.md)
    exclude_noisy_overlap: bool = True


@dataclass
class ModelSpec:
    """One head family (a 'backbone' of the report): its inputs and architecture."""

    name: str = ""
    groups: list[str] = field(default_factory=list)  # embedding groups, glob patterns allowed
    columns: list[str] | None = None  # e.g. ["audio"]; None = audio and text
    prior: str | None = None  # llm/priors/<prior>
    preset: str = "submitted"
    hidden: int | None = None
    dropout: float = 0.1
    missing_prior: str = "zero"
    standardize: bool = (
        True  # z-score features with training-split statistics (our choice for frozen features)
    )
    role: str = (
        "system"  # "system": stages 1-3, pseudo-labels, ensemble; "comparison": stage 1 only, reported
    )
    label: str = ""  # short description for reports, e.g. "audio-only"

    def inputs(self) -> InputSpec:
        return InputSpec(groups=list(self.groups), columns=self.columns, prior=self.prior)


def model_kind(spec: ModelSpec) -> str:
    """prior-only, fused (features + prior), audio-only (audio column only) or no-prior."""
    if spec.preset == "prior-only":
        return "prior-only"
    if spec.prior and spec.preset not in ("no-prior", "mlp"):
        return "fused"
    return "audio-only" if spec.columns == ["audio"] else "no-prior"


@dataclass
class StageSettings:
    k: int = 20
    epochs: int = 30
    lr_min: float = 1e-4
    lr_max: float = 3e-3
    lam_min: float = 0.0
    lam_max: float = 0.0
    decay_start_epoch: float = 1.0
    patience: int = 10
    halving: bool = False  # successive halving of the search (ours; the reference searches plainly)
    rung_epochs: int = 2  # its first rung's epochs (rungs end at r, 2r, 4r, ...; heads.search.rung_ends)


@dataclass
class SelectionConfig:
    # a fixed composition: "model" = that system model's best configuration, "model:2" its
    # second best, …; when given, nothing is selected (candidates_per_model and method unused)
    members: list[str] = field(default_factory=list)
    candidates_per_model: int = 3  # best configurations of each model offered to a selection
    method: str = "greedy"  # greedy | exhaustive | all
    max_size: int = 0  # 0 = no limit


def parse_member(entry: str) -> tuple[str, int]:
    """``"model"`` → (model, 1); ``"model:k"`` → (model, k): the model's k-th best configuration."""
    name, _, rank = str(entry).partition(":")
    try:
        k = int(rank) if rank else 1
    except ValueError:
        k = 0
    if not name or k < 1:
        raise ValueError(
            f"member {entry!r}: write a model name, or model:k for its k-th best configuration (k ≥ 1)"
        )
    return name, k


@dataclass
class EnsembleConfig(SelectionConfig):
    decoding: str = "argmax"  # argmax | expected-credit (used for the submission)


@dataclass
class SubmissionConfig:
    label: str = "Heads_CPJKU_1"
    name: str = "LLM-prior fusion heads on cached embeddings, three-stage pseudo-label training, ensemble"
    abbreviation: str = "heads"
    description: str = ""


@dataclass
class PipelineConfig:
    name: str = "heads"  # prefix of the logits/pseudo-label tables this pipeline writes
    out: str = "runs/heads"
    data: DataConfig = field(default_factory=DataConfig)
    models: list[ModelSpec] = field(default_factory=list)
    train: TrainConfig = field(
        default_factory=TrainConfig
    )  # shared settings (batch, weight decay, device, …)
    stage1: StageSettings = field(default_factory=StageSettings)
    stage2: StageSettings = field(
        default_factory=lambda: StageSettings(epochs=15, lam_min=0.75, lam_max=1.0, decay_start_epoch=2.0)
    )
    stage3: StageSettings = field(
        default_factory=lambda: StageSettings(
            epochs=15, lr_min=3e-5, lr_max=1e-3, lam_min=0.95, lam_max=1.0, decay_start_epoch=2.0
        )
    )
    stages: list[int] = field(default_factory=lambda: [1, 2, 3])
    pseudo: SelectionConfig = field(default_factory=SelectionConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    seed: int = 0
    keep: int = 3  # saved run folders (weights) per model and stage, best first
    max_stack: int = (
        0  # train at most this many configurations at once (0 = auto: all on GPU, cache-sized on CPU)
    )
    write_logits: bool = True  # logits of every trained configuration into the stores (logits/<run>)
    threads: int = 0  # torch CPU threads (0 = torch's default)

    def validate(self) -> None:
        if not self.data.clean.root:
            raise ValueError("data.clean.root is required (the clean labelled dataset)")
        if not self.models:
            raise ValueError("the config names no models ([[models]] tables)")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"models need unique, non-empty names, got {names}")
        for m in self.models:
            if m.role not in ("system", "comparison"):
                raise ValueError(f"model {m.name}: role must be system or comparison, got {m.role!r}")
            if not m.groups and m.preset != "prior-only":
                raise ValueError(
                    f"model {m.name}: no embedding groups (only the prior-only preset needs none)"
                )
            if m.preset not in ("no-prior", "mlp") and not m.prior:
                raise ValueError(f"model {m.name}: preset {m.preset!r} needs a prior name")
        if not any(m.role == "system" for m in self.models):
            raise ValueError("no model has role 'system'")
        bad = [s for s in self.stages if s not in (1, 2, 3)]
        if bad or 1 not in self.stages:
            raise ValueError(f"stages must include 1 and be among 1, 2, 3; got {self.stages}")
        if self.ensemble.decoding not in DECODINGS:
            raise ValueError(f"ensemble.decoding must be one of {DECODINGS}")
        system = [m.name for m in self.models if m.role == "system"]
        for table, sel in (("pseudo", self.pseudo), ("ensemble", self.ensemble)):
            picks = [parse_member(e) for e in sel.members]
            for name, k in picks:
                if name not in system:
                    raise ValueError(
                        f"{table}.members: {name!r} is not a system model; system models: {', '.join(system)}"
                    )
                if k > self.keep:
                    raise ValueError(
                        f"{table}.members: {name}:{k} needs keep ≥ {k} (run folders kept per model "
                        f"and stage); raise keep"
                    )
            if len(set(picks)) != len(picks):
                raise ValueError(f"{table}.members names a configuration twice: {sel.members}")

    # ------------------------------------------------------------------ derived settings
    def effective_stages(self) -> list[int]:
        """Configured stages that can run (stage 2 needs the noisy set)."""
        has_noisy = bool(self.data.noisy.root)
        return [s for s in sorted(self.stages) if s != 2 or has_noisy]

    def previous_stage(self, stage: int) -> int | None:
        earlier = [s for s in self.effective_stages() if s < stage]
        return earlier[-1] if earlier else None

    def final_stage(self) -> int:
        return max(self.effective_stages())

    def models_for_stage(self, stage: int) -> list[ModelSpec]:
        """Every model in stage 1; the system models in stages 2 and 3."""
        return [m for m in self.models if stage == 1 or m.role == "system"]

    def stage_settings(self, stage: int) -> StageSettings:
        return getattr(self, f"stage{stage}")

    def train_config(self, spec: ModelSpec, stage: int) -> TrainConfig:
        """The shared recipe settings with the model's head and the stage's schedule."""
        st = self.stage_settings(stage)
        return dataclasses.replace(
            self.train,
            preset=spec.preset,
            hidden=spec.hidden,
            dropout=spec.dropout,
            missing_prior=spec.missing_prior,
            epochs=st.epochs,
            decay_start_epoch=st.decay_start_epoch,
            patience=st.patience,
        )

    def run_name(self, stage: int, model: str, k: int) -> str:
        """The name of configuration k's ``logits/<run>`` table."""
        return f"heads/{self.name}/{model}/s{stage}/c{k:02d}"

    def runs_kept(self) -> int:
        """Run folders saved per model and stage: enough for ``keep`` and both selections."""
        return max(self.keep, self.ensemble.candidates_per_model, self.pseudo.candidates_per_model)
