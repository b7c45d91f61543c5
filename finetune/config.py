"""The fine-tune tier's typed configuration: TOML file + command-line overrides.

One :class:`FinetuneConfig` with five sections (``[backbone]``, ``[data]``, ``[head]``,
``[train]``, ``[output]``). Overrides are ``section.key=value``, ``--section.key value`` or,
when the key name is unique across sections, just ``key=value`` / ``--key value``; values
are parsed as TOML (``lr=3e-6``, ``extra=["a","b"]``, ``overrides={window_seconds=1.0}``)
and fall back to a plain string. Unknown keys and wrong types raise :class:`ConfigError`
naming the file or override. The resolved config is written as TOML and JSON next to every
result (:func:`save_config`), so ``--config <run>/config.toml`` reproduces a run. Reading,
type conversion and TOML writing are the shared :mod:`cache.config`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cache.config import ConfigError, convert, dump_toml, field_types, from_dict, parse_value, read_toml, to_dict

STAGES = (1, 2, 3)
TEXT_SOURCES = ("summary", "metadata", "none")
TEXT_TOWER = ("train", "freeze")
MIXED_PRECISION = ("", "no", "fp16", "bf16")


@dataclass
class BackboneSection:
    name: str = "tiny"  #: registered backbone (extract.backbones): passt, beats, m2d, cpclap, laion-clap, tiny
    variant: str = ""  #: "" = the backbone's default variant
    checkpoint: str = ""  #: local weights file/folder ("" = none; the real backbones need one unless random_init)
    tokenizer: str = ""  #: local tokenizer folder for text towers (CP-CLAP, LAION-CLAP)
    random_init: bool = False  #: build without weights (tests, benchmarks)
    allow_missing: list[str] = field(default_factory=list)  #: checkpoint keys allowed to be missing (globs)
    allow_unexpected: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  #: architecture overrides (tiny test configs)
    text_source: str = ""  #: audio–text backbones: "summary" (cached LLM summaries), "metadata", or "none"
    text_tower: str = "train"  #: "train" or "freeze" the text tower
    patchout_t: int = 0  #: PaSST structured patchout in training mode (time patches dropped; 0 = off)
    patchout_f: int = 0  #: ... frequency patches dropped


@dataclass
class DataSection:
    clean: str = ""  #: clean labelled dataset root (BSD10k): stages 1 and 3 train on it; val/test always from it
    noisy: str = ""  #: noisy dataset root (BSD35k-CS): stage 2 trains on it; logits are written for it
    extra: list[str] = field(default_factory=list)  #: further dataset roots to write logits for (e.g. the evaluation set)
    clean_store: str = ""  #: cache store of the clean set ("" = <clean>/cache.zarr)
    noisy_store: str = ""
    extra_stores: list[str] = field(default_factory=list)  #: one per extra root ("" entries / empty = default)
    split_preset: str = "cpjku"  #: "cpjku", "baseline" or "custom" (with split_seed)
    fold: int = 0
    split_seed: int = -1  #: seed of the "custom" preset
    split_file: str = ""  #: a saved split JSON (cache.splits.Split) instead of preset/fold
    prior: str = ""  #: llm/priors/<name> in every store ("" = no prior; then use head preset "no-prior")
    summary: str = ""  #: llm/summaries/<name> (text_source = "summary")
    pseudo_labels: str = ""  #: pseudo_labels/<name> in the training set's store (stages 2 and 3, λ > 0)
    num_workers: int = 4  #: DataLoader worker processes that decode audio
    eval_max_windows: int = 64  #: windows per evaluation batch (clips grouped by length)


@dataclass
class HeadSection:
    preset: str = "submitted"  #: heads.model.FusionHead preset: submitted, workshop, no-prior, prior-only
    dropout: float = 0.1
    missing_prior: str = "zero"  #: "zero" (reference) or "learned"
    hidden: int = 0  #: 0 = the preset's default width


@dataclass
class TrainSection:
    stage: int = 1  #: 1 clean, 2 noisy + pseudo-labels, 3 clean + pseudo-labels from the best stage-2 model
    lr: float = 1e-5  #: one learning rate for backbone and head
    lam: float = 0.0  #: λ of L = (1−λ)·CE + λ·softCE(pseudo-labels)
    epochs: int = 30
    warmup_epochs: float = 1.0
    decay_start_epoch: float = 1.0
    final_lr: float = 1e-7
    weight_decay: float = 0.01
    batch_size: int = 18  #: global batch (all processes × accumulation)
    per_device_batch_size: int = 0  #: >0: use this per process; the global batch becomes it × processes × accumulation
    grad_accum: int = 1
    clip_grad_norm: float = 1.0  #: 0 = off
    mixed_precision: str = ""  #: "" = the launcher's setting; "no", "fp16", "bf16" (fp16 falls back to "no" on CPU)
    patience: int = 10  #: early stopping on validation hF
    init_from: str = ""  #: weights exported by a previous stage (file or run folder); stage 3 needs the best stage-2 model
    seed: int = 0
    never_predicted: str = "zero"  #: metric convention ("zero" = CP-JKU, "drop" = official baseline)
    checkpoint_every: int = 500  #: save the training state every N updates (and at every epoch end); 0 = epoch ends only


@dataclass
class OutputSection:
    dir: str = "runs/finetune"
    run_name: str = ""  #: logits/<run_name> in every store ("" = ft-<backbone>-s<stage>-<dir name>)
    write_logits: bool = True
    tensorboard: bool = True
    log_seen_ids: bool = False  #: debug: write the ids each rank trained on, per epoch (seen/)


@dataclass
class FinetuneConfig:
    backbone: BackboneSection = field(default_factory=BackboneSection)
    data: DataSection = field(default_factory=DataSection)
    head: HeadSection = field(default_factory=HeadSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return asdict(self)

    @property
    def run_name(self) -> str:
        return self.output.run_name or f"ft-{self.backbone.name}-s{self.train.stage}-{Path(self.output.dir).name}"

    def validate(self) -> "FinetuneConfig":
        """Check values that do not depend on the launch; raises ConfigError."""
        b, d, h, t = self.backbone, self.data, self.head, self.train
        checks = [
            (t.stage in STAGES, f"train.stage must be 1, 2 or 3, got {t.stage}"),
            (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
            (0.0 <= t.lam <= 1.0, f"train.lam must lie in [0, 1], got {t.lam}"),
            (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
            (t.batch_size >= 1 and t.per_device_batch_size >= 0 and t.grad_accum >= 1,
             "train.batch_size and train.grad_accum must be >= 1, per_device_batch_size >= 0"),
            (t.mixed_precision in MIXED_PRECISION, f"train.mixed_precision must be one of {MIXED_PRECISION[1:]} or ''"),
            (t.never_predicted in ("zero", "drop"), "train.never_predicted must be 'zero' or 'drop'"),
            (b.text_tower in TEXT_TOWER, f"backbone.text_tower must be one of {TEXT_TOWER}"),
            (b.text_source in TEXT_SOURCES + ("",), f"backbone.text_source must be one of {TEXT_SOURCES}"),
            (b.text_source != "summary" or bool(d.summary), "backbone.text_source = 'summary' needs data.summary (llm/summaries/<name>)"),
            (bool(d.clean), "data.clean (the clean labelled dataset root) is required: validation and test come from it"),
            (t.stage != 2 or bool(d.noisy), "stage 2 trains on the noisy set: set data.noisy"),
            (t.lam == 0.0 or bool(d.pseudo_labels), f"train.lam = {t.lam} needs data.pseudo_labels (pseudo_labels/<name>)"),
            (t.stage != 3 or bool(t.init_from), "stage 3 starts from the best stage-2 model: set train.init_from "
                                                "(a stage-2 run folder or its best/model.pt)"),
            (h.preset in ("no-prior",) or bool(d.prior), f"head preset {h.preset!r} fuses an LLM prior: set data.prior "
                                                          "(llm/priors/<name>) or use head.preset = 'no-prior'"),
            (not d.extra_stores or len(d.extra_stores) == len(d.extra), "data.extra_stores needs one entry per data.extra root"),
            (t.checkpoint_every >= 0 and t.patience >= 0, "train.checkpoint_every and train.patience must be >= 0"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ConfigError("invalid fine-tune config:\n  " + "\n  ".join(bad))
        return self


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(FinetuneConfig)}
_SECTION_TYPES = field_types(FinetuneConfig)


def _field_types(section: str) -> dict[str, Any]:
    return field_types(_SECTION_TYPES[section])


def config_from_dict(data: dict[str, Any], source: str = "config") -> FinetuneConfig:
    """Build a config from nested dicts (TOML layout); unknown sections/keys raise ConfigError."""
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return from_dict(FinetuneConfig, data, source)


def load_config(path: str | Path | None) -> FinetuneConfig:
    """Read a TOML config file (None → all defaults)."""
    if path is None:
        return FinetuneConfig()
    return config_from_dict(read_toml(path), str(path))


def _resolve_key(key: str) -> tuple[str, str]:
    key = key.strip().lstrip("-").replace("-", "_")
    if "." in key:
        sec, name = key.split(".", 1)
        if sec not in SECTIONS:
            raise ConfigError(f"override '{key}': unknown section {sec!r}; known: {sorted(SECTIONS)}")
        if name not in _field_types(sec):
            raise ConfigError(f"override '{key}': [{sec}] has no key {name!r}; known: {', '.join(sorted(_field_types(sec)))}")
        return sec, name
    owners = [s for s in SECTIONS if key in _field_types(s)]
    if not owners:
        raise ConfigError(f"override '{key}': no such config key")
    if len(owners) > 1:
        raise ConfigError(f"override '{key}' is ambiguous: use one of {', '.join(f'{s}.{key}' for s in owners)}")
    return owners[0], key


def parse_overrides(args: Sequence[str]) -> list[tuple[str, str, Any]]:
    """``["lr=3e-6", "--train.epochs", "5", "--data.clean=/x"]`` → [(section, key, value), ...]."""
    out, i, args = [], 0, list(args)
    while i < len(args):
        a = args[i]
        if "=" in a:
            k, v = a.split("=", 1)
            i += 1
        elif a.startswith("--") and i + 1 < len(args):
            k, v = a, args[i + 1]
            i += 2
        else:
            raise ConfigError(f"cannot read override {a!r}: use key=value or --key value")
        sec, name = _resolve_key(k)
        out.append((sec, name, parse_value(v)))
    return out


def apply_overrides(cfg: FinetuneConfig, overrides: Sequence[tuple[str, str, Any]]) -> FinetuneConfig:
    """Set parsed overrides on ``cfg`` (in place; returned), converted to the fields' types."""
    for sec, key, value in overrides:
        setattr(getattr(cfg, sec), key, convert(_field_types(sec)[key], value, f"{sec}.{key}", "override"))
    return cfg


# ---------------------------------------------------------------------------------------- batch size
@dataclass(frozen=True)
class BatchPlan:
    """How the global batch is split: global = per_device × processes × accumulation."""

    global_batch: int
    per_device: int
    processes: int
    accumulation: int


def resolve_batch(train: TrainSection, num_processes: int) -> BatchPlan:
    """The batch split for a launch; refuses a global batch that does not divide evenly.

    With ``per_device_batch_size`` > 0 the global batch is ``per_device × processes × grad_accum``
    (and ``batch_size`` is ignored); otherwise ``batch_size`` must be divisible by
    ``processes × grad_accum``.
    """
    p, a = int(num_processes), int(train.grad_accum)
    if train.per_device_batch_size > 0:
        pd = train.per_device_batch_size
        return BatchPlan(pd * p * a, pd, p, a)
    if train.batch_size % (p * a):
        raise ConfigError(
            f"global batch size {train.batch_size} is not divisible by {p} process(es) × {a} accumulation step(s) = {p * a}. "
            f"Launch with a number of processes × train.grad_accum that divides it (e.g. {_divisors(train.batch_size)}), "
            f"or set train.per_device_batch_size (the global batch then becomes per_device × {p * a})."
        )
    return BatchPlan(train.batch_size, train.batch_size // (p * a), p, a)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


# ---------------------------------------------------------------------------------------- saving
def to_toml(cfg: FinetuneConfig) -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config."""
    return dump_toml(to_dict(cfg))


def save_config(cfg: FinetuneConfig, folder: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``config.toml`` (reloadable) and ``config.json`` (+ launch facts in ``extra``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(to_toml(cfg))
    (folder / "config.json").write_text(json.dumps({"config": cfg.as_dict(), **(extra or {})}, indent=1, default=str))
