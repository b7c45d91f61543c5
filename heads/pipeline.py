"""The whole recipe on cached features, from one TOML config.

stage 1 search (clean set) → pseudo-labels (softmax of the mean logits of a selected stage-1
ensemble, for every clip of the clean and noisy sets) → stage 2 search (noisy set, λ-mixed,
fresh heads, clean-validation selection; noisy clips in the clean validation/test split are
excluded and counted) → stage 3 search (clean set, λ-mixed, from the best stage-2 head) →
ensemble (subset selection on validation hF) → report → submission files.

Every step writes its results under ``out/`` and is skipped on a re-run when its inputs and
settings are unchanged (a digest is stored with each step), so a killed pipeline resumes.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cache.manifest import load_manifest
from cache.metric import hierarchical_scores
from cache.provenance import sha256_json
from cache.splits import Split, make_split
from cache.store import Store, default_store_path
from cache.tables import priors_path, pseudo_labels_path
from cache.taxonomy import CLASSES

from cache.config import dump_toml, to_dict
from .data import HeadData, InputError, InputSpec, Standardizer, load_head_data, resolve_groups
from .ensemble import DECODINGS, decode, mean_logits, select, softmax
from .report import comparison_table, plot_curves, write_classification_report
from .runs import load_run, read_json, save_run, write_json, write_logits, write_pseudo_labels
from .search import SearchSpace, ranking, results_table, run_search, sample_configs
from .submission import write_meta_yaml, write_output_csv
from .training import RunResult, TrainConfig, predict_logits


# ---------------------------------------------------------------------------------------- config
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
    standardize: bool = True  # z-score features with training-split statistics (our choice for frozen features)
    role: str = "system"  # "system": stages 1-3, pseudo-labels, ensemble; "comparison": stage 1 only, reported
    label: str = ""  # short description for reports, e.g. "audio-only"

    def inputs(self) -> InputSpec:
        return InputSpec(groups=list(self.groups), columns=self.columns, prior=self.prior)


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


@dataclass
class SelectionConfig:
    candidates_per_model: int = 3  # best configurations of each model offered to the selection
    method: str = "greedy"  # greedy | exhaustive | all
    max_size: int = 0  # 0 = no limit


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
    train: TrainConfig = field(default_factory=TrainConfig)  # shared settings (batch, weight decay, device, …)
    stage1: StageSettings = field(default_factory=StageSettings)
    stage2: StageSettings = field(default_factory=lambda: StageSettings(epochs=15, lam_min=0.75, lam_max=1.0,
                                                                        decay_start_epoch=2.0))
    stage3: StageSettings = field(default_factory=lambda: StageSettings(epochs=15, lr_min=3e-5, lr_max=1e-3,
                                                                        lam_min=0.95, lam_max=1.0))
    stages: list[int] = field(default_factory=lambda: [1, 2, 3])
    pseudo: SelectionConfig = field(default_factory=SelectionConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    seed: int = 0
    keep: int = 3  # saved run folders (weights) per model and stage, best first
    max_stack: int = 0  # train at most this many configurations at once (0 = auto: all on GPU, cache-sized on CPU)
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
                raise ValueError(f"model {m.name}: no embedding groups (only the prior-only preset needs none)")
            if m.preset not in ("no-prior", "mlp") and not m.prior:
                raise ValueError(f"model {m.name}: preset {m.preset!r} needs a prior name")
        if not any(m.role == "system" for m in self.models):
            raise ValueError("no model has role 'system'")
        bad = [s for s in self.stages if s not in (1, 2, 3)]
        if bad or 1 not in self.stages:
            raise ValueError(f"stages must include 1 and be among 1, 2, 3; got {self.stages}")
        if self.ensemble.decoding not in DECODINGS:
            raise ValueError(f"ensemble.decoding must be one of {DECODINGS}")


def _non_targets(manifest) -> int:
    """Rows dropped from a manifest as non-targets (top-level-only, *-other, empty labels)."""
    return int(sum(v for k, v in manifest.report.counts.items() if str(k).startswith("non_target")))


def model_kind(spec: ModelSpec) -> str:
    """prior-only, fused (features + prior), audio-only (audio column only) or no-prior."""
    if spec.preset == "prior-only":
        return "prior-only"
    if spec.prior and spec.preset not in ("no-prior", "mlp"):
        return "fused"
    return "audio-only" if spec.columns == ["audio"] else "no-prior"


# ---------------------------------------------------------------------------------------- state
SETS = ("clean", "noisy", "eval")


@dataclass
class ModelData:
    spec: ModelSpec
    groups: list[str]
    standardizer: Standardizer | None
    sets: dict[str, HeadData]  # clean (all target ids), noisy (all target ids), eval (all ids)


@dataclass
class StageOutcome:
    stage: int
    model: str
    names: list[str]  # run names, one per configuration
    summaries: list[dict]  # lr, λ, seed, best epoch, val scores
    order: list[int]  # configurations by validation hF, best first
    logits: dict[str, np.ndarray]  # set -> (K, N, C)
    run_dirs: dict[int, Path]  # saved configurations (best `keep`)
    histories: dict[int, list[dict]]
    digest: str

    @property
    def best(self) -> int:
        return self.order[0]


class Pipeline:
    """Runs the steps of a :class:`PipelineConfig`; each step can also be run alone."""

    def __init__(self, cfg: PipelineConfig, out: str | Path | None = None, progress: bool = True,
                 log: Callable[[str], None] = print):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(out or cfg.out)
        self.progress = progress
        self.log = log
        self._ready = False
        self._model_data: dict[str, ModelData] = {}
        self.stage_results: dict[tuple[int, str], StageOutcome] = {}
        self.pseudo: dict | None = None
        self.ensemble_result: dict | None = None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

    # ------------------------------------------------------------------ data
    def setup(self) -> None:
        if self._ready:
            return
        d = self.cfg.data
        clean = load_manifest(d.clean.root, require_audio=False)
        self.clean = clean.targets()
        dropped = _non_targets(clean)
        if d.split_file:
            self.split = Split.load(d.split_file)
        else:
            self.split = make_split(self.clean.ids, self.clean.labels, preset=d.split_preset, fold=d.fold,
                                    seed=d.split_seed, dataset=clean.name)
        known = set(self.clean.ids.tolist())
        unknown = [i for i in self.split.train + self.split.val + self.split.test if i not in known]
        if unknown:
            raise InputError(f"split has {len(unknown)} id(s) that are not target clips of {d.clean.root}: "
                             f"{', '.join(unknown[:10])}")
        pos = {i: k for k, i in enumerate(self.clean.ids)}
        self.idx = {p: np.array([pos[i] for i in self.split.part(p)], dtype=np.int64) for p in ("train", "val", "test")}
        self.stores: dict[str, Store] = {"clean": Store(d.clean.store or default_store_path(d.clean.root))}
        self.ids: dict[str, np.ndarray] = {"clean": self.clean.ids}
        self.labels: dict[str, np.ndarray] = {"clean": self.clean.labels}
        self.log(f"[data] {clean.name}: {len(self.clean)} target clips ({dropped} non-target rows dropped); "
                 f"{self.split.describe()}")
        self.noisy_train_idx = None
        self.excluded_noisy = 0
        if d.noisy.root:
            noisy = load_manifest(d.noisy.root, require_audio=False)
            nt = noisy.targets()
            self.stores["noisy"] = Store(d.noisy.store or default_store_path(d.noisy.root))
            self.ids["noisy"], self.labels["noisy"] = nt.ids, nt.labels
            held_out = self.split.evaluation_ids()
            in_eval = np.array([i in held_out for i in nt.ids], dtype=bool)
            self.excluded_noisy = int(in_eval.sum())
            self.noisy_train_idx = np.flatnonzero(~in_eval)
            shared = len(set(nt.ids.tolist()) & known)
            self.log(f"[data] {noisy.name}: {len(nt)} target clips ({_non_targets(noisy)} non-target rows dropped); "
                     f"{shared} shared with {clean.name}, {self.excluded_noisy} of them in the clean validation/test "
                     f"split and excluded from training")
        if d.eval.root:
            ev = load_manifest(d.eval.root, require_audio=False)
            self.stores["eval"] = Store(d.eval.store or default_store_path(d.eval.root))
            self.ids["eval"] = ev.ids
            self.labels["eval"] = np.full(len(ev), -1, dtype=np.int64)
            self.log(f"[data] {ev.name}: {len(ev)} clips to predict")
        self.out.mkdir(parents=True, exist_ok=True)
        self.split.save(self.out / "split.json")
        write_json(self.out / "config.json", to_dict(self.cfg))
        (self.out / "config.toml").write_text(dump_toml(to_dict(self.cfg)))
        self.data_digest = sha256_json({"split": self.split.ids_sha256, "train": self.split.train,
                                        "val": self.split.val, "test": self.split.test,
                                        "clean": clean.digest(),
                                        "noisy": self.ids.get("noisy", np.array([])).tolist(),
                                        "eval": self.ids.get("eval", np.array([])).tolist()})
        self._ready = True

    def model_data(self, spec: ModelSpec) -> ModelData:
        if spec.name in self._model_data:
            return self._model_data[spec.name]
        self.setup()
        inputs = spec.inputs()
        sets, groups = {}, None
        for s, store in self.stores.items():
            sg = resolve_groups(store, inputs.groups) if inputs.groups else []
            if groups is None:
                groups = sg
            elif sg != groups:
                raise InputError(f"model {spec.name}: the {s} store resolves {inputs.groups} to {sg}, the clean store "
                                 f"to {groups}; all sets must use the same embeddings (same checkpoint)")
            data = load_head_data(store, self.ids[s], InputSpec(sg, inputs.columns, inputs.prior), self.labels[s])
            bad = int((~data.feature_ok).sum()) if data.feature_ok is not None else 0
            miss = int(data.missing.sum()) if data.missing is not None else 0
            self.log(f"[data] {spec.name} / {s}: {len(data)} clips, dim {data.dim}"
                     + (f", {bad} with failed features (zeros)" if bad else "")
                     + (f", {miss} with a missing prior" if inputs.prior else ""))
            sets[s] = data
        std = None
        if spec.standardize and sets["clean"].dim:
            std = Standardizer.fit(sets["clean"].X[torch.as_tensor(self.idx["train"])])
            sets = {s: std.apply(v) for s, v in sets.items()}
        md = ModelData(spec, groups or [], std, sets)
        self._model_data[spec.name] = md
        return md

    # ------------------------------------------------------------------ stages
    def models_for_stage(self, stage: int) -> list[ModelSpec]:
        return [m for m in self.cfg.models if stage == 1 or m.role == "system"]

    def _stage_settings(self, stage: int) -> StageSettings:
        return getattr(self.cfg, f"stage{stage}")

    def _base_config(self, spec: ModelSpec, st: StageSettings) -> TrainConfig:
        return dataclasses.replace(self.cfg.train, preset=spec.preset, hidden=spec.hidden, dropout=spec.dropout,
                                   missing_prior=spec.missing_prior, epochs=st.epochs,
                                   decay_start_epoch=st.decay_start_epoch, patience=st.patience)

    def run_name(self, stage: int, model: str, k: int) -> str:
        return f"heads/{self.cfg.name}/{model}/s{stage}/c{k:02d}"

    def stage_dir(self, stage: int, model: str) -> Path:
        return self.out / f"stage{stage}" / model

    def effective_stages(self) -> list[int]:
        """Configured stages that can run (stage 2 needs the noisy set)."""
        has_noisy = bool(self.cfg.data.noisy.root)
        return [s for s in sorted(self.cfg.stages) if s != 2 or has_noisy]

    def previous_stage(self, stage: int) -> int | None:
        earlier = [s for s in self.effective_stages() if s < stage]
        return earlier[-1] if earlier else None

    def run_stage(self, stage: int) -> dict[str, StageOutcome]:
        """Search every model of ``stage`` (loading earlier results when unchanged)."""
        self.setup()
        if stage not in self.cfg.stages:
            raise ValueError(f"stage {stage} is not in this config's stages {self.cfg.stages}")
        for earlier in self.effective_stages():
            if earlier < stage:
                for spec in self.models_for_stage(earlier):
                    if (earlier, spec.name) not in self.stage_results and self._load_stage(earlier, spec.name) is None:
                        raise RuntimeError(f"stage {stage} needs stage {earlier} of {spec.name}; run it first")
        if stage == 2 and "noisy" not in self.stores:
            raise ValueError("stage 2 needs data.noisy.root (the noisy crowd-sourced set)")
        if stage > 1 and self.pseudo is None:
            self.make_pseudo_labels()
        out = {}
        for mi, spec in enumerate(self.models_for_stage(stage)):
            out[spec.name] = self._run_model_stage(stage, mi, spec)
        return out

    def _stage_digest(self, stage: int, spec: ModelSpec, st: StageSettings, init: str) -> str:
        return sha256_json({"stage": stage, "settings": dataclasses.asdict(st), "model": dataclasses.asdict(spec),
                            "train": dataclasses.asdict(self.cfg.train), "seed": self.cfg.seed, "data": self.data_digest,
                            "init": init, "pseudo": (self.pseudo or {}).get("digest", "") if stage > 1 else ""})

    def _run_model_stage(self, stage: int, mi: int, spec: ModelSpec) -> StageOutcome:
        st = self._stage_settings(stage)
        init_state, init_desc, init_name = None, "", ""
        prev = self.previous_stage(stage) if stage == 3 else None
        if prev is not None:
            po = self.stage_results.get((prev, spec.name)) or self._load_stage(prev, spec.name)
            if po is None:
                raise RuntimeError(f"stage 3 of {spec.name} starts from stage {prev}, which has not run")
            best_dir = po.run_dirs[po.best]
            init_state = load_run(best_dir).head.state_dict()
            init_desc = f"{po.digest}:{po.names[po.best]}"
            init_name = po.names[po.best]
        digest = self._stage_digest(stage, spec, st, init_desc)
        cached = self._load_stage(stage, spec.name, digest)
        if cached is not None:
            self.log(f"[stage {stage}] {spec.name}: unchanged, reusing {self.stage_dir(stage, spec.name)}")
            self.stage_results[(stage, spec.name)] = cached
            return cached
        md = self.model_data(spec)
        clean = md.sets["clean"]
        val = clean.subset(self.idx["val"])
        if stage == 1:
            train = clean.subset(self.idx["train"])
        elif stage == 2:
            noisy = md.sets["noisy"].with_pseudo(self.pseudo["noisy"])
            keep = self.noisy_train_idx
            ok = noisy.feature_ok[keep] if noisy.feature_ok is not None else np.ones(len(keep), bool)
            train = noisy.subset(keep[ok])
        else:
            train = clean.with_pseudo(self.pseudo["clean"]).subset(self.idx["train"])
        if train.feature_ok is not None and stage != 2:
            train = train.subset(np.flatnonzero(train.feature_ok))
        space = SearchSpace(k=st.k, lr_min=st.lr_min, lr_max=st.lr_max, lam_min=st.lam_min if stage > 1 else 0.0,
                            lam_max=st.lam_max if stage > 1 else 0.0, seed=self.cfg.seed * 1000 + stage * 100 + mi)
        configs = sample_configs(self._base_config(spec, st), space)
        self.log(f"[stage {stage}] {spec.name}: {st.k} configurations × ≤{st.epochs} epochs on {len(train)} clips "
                 f"(val {len(val)}), {'from the best stage-' + str(prev) + ' head' if init_state else 'fresh heads'}")
        t0 = time.time()
        results = run_search(configs, train, val, init_state=init_state, max_stack=self.cfg.max_stack,
                             progress=self.progress, desc=f"stage {stage} {spec.name}")
        names = [self.run_name(stage, spec.name, k) for k in range(len(results))]
        logits = {s: predict_logits(results, d) for s, d in md.sets.items()}
        order = ranking(results)
        folder = self.stage_dir(stage, spec.name)
        folder.mkdir(parents=True, exist_ok=True)
        keep = max(self.cfg.keep, self.cfg.ensemble.candidates_per_model, self.cfg.pseudo.candidates_per_model)
        run_dirs = {}
        for k in order[:keep]:
            test = self._scores(logits["clean"][k][self.idx["test"]], "test")
            run_dirs[k] = save_run(folder / "runs" / f"c{k:02d}", results[k], inputs=spec.inputs(), groups=md.groups,
                                   standardizer=md.standardizer, split=self.split,
                                   metrics={"test": test.as_dict(), "run": names[k]},
                                   config={"stage": stage, "model": dataclasses.asdict(spec),
                                           "stage_settings": dataclasses.asdict(st)},
                                   provenance={"stage": stage, "model": spec.name, "run": names[k],
                                               "split_ids_sha256": self.split.ids_sha256, "digest": digest})
        np.savez_compressed(folder / "logits.npz", **{s: v for s, v in logits.items()},
                            **{f"ids_{s}": self.ids[s].astype(str) for s in logits})
        summaries = [r.summary() for r in results]
        (folder / "search.md").write_text(f"# stage {stage} — {spec.name}\n\n{results_table(results, names)}\n")
        write_json(folder / "histories.json", {str(k): results[k].history for k in range(len(results))})
        if self.cfg.write_logits:
            for s, store in self.stores.items():
                for k, name in enumerate(names):
                    write_logits(store, name, self.ids[s], logits[s][k], stage=stage, model=spec.name,
                                 config=dataclasses.asdict(results[k].config), val=results[k].best_val,
                                 split_ids_sha256=self.split.ids_sha256)
        outcome = StageOutcome(stage, spec.name, names, summaries, order, logits,
                               {k: Path(v) for k, v in run_dirs.items()},
                               {k: results[k].history for k in range(len(results))}, digest)
        write_json(folder / "search.json", {"digest": digest, "names": names, "summaries": summaries, "order": order,
                                            "run_dirs": {str(k): str(v) for k, v in run_dirs.items()},
                                            "seconds": time.time() - t0, "n_train": len(train), "init_from": init_name,
                                            "excluded_noisy_in_clean_eval": self.excluded_noisy if stage == 2 else 0})
        b = summaries[order[0]]
        self.log(f"[stage {stage}] {spec.name}: best {names[order[0]]} val hF {b.get('hF', float('nan')):.4f} "
                 f"(lr {b['lr']:.3g}, λ {b['lam']:.3f}, epoch {b['best_epoch']}) in {time.time() - t0:.1f} s")
        self.stage_results[(stage, spec.name)] = outcome
        return outcome

    def _load_stage(self, stage: int, model: str, digest: str | None = None) -> StageOutcome | None:
        folder = self.stage_dir(stage, model)
        if not (folder / "search.json").exists() or not (folder / "logits.npz").exists():
            return None
        meta = read_json(folder / "search.json")
        if digest is not None and meta.get("digest") != digest:
            return None
        run_dirs = {int(k): Path(v) for k, v in meta["run_dirs"].items()}
        if not all((p / "head.pt").exists() for p in run_dirs.values()):
            return None
        with np.load(folder / "logits.npz") as z:
            logits = {s: z[s] for s in SETS if s in z}
        hist = read_json(folder / "histories.json") if (folder / "histories.json").exists() else {}
        return StageOutcome(stage, model, meta["names"], meta["summaries"], meta["order"], logits, run_dirs,
                            {int(k): v for k, v in hist.items()}, meta["digest"])

    def outcome(self, stage: int, model: str) -> StageOutcome:
        o = self.stage_results.get((stage, model)) or self._load_stage(stage, model)
        if o is None:
            raise RuntimeError(f"stage {stage} of model {model} has no results in {self.out}; run it first")
        self.stage_results[(stage, model)] = o
        return o

    # ------------------------------------------------------------------ scores
    def _scores(self, logits: np.ndarray, part: str, rule: str = "argmax"):
        pred, _ = decode(logits, rule)
        return hierarchical_scores(self.clean.labels[self.idx[part]], pred, self.cfg.train.never_predicted)

    def _candidates(self, stage: int, per_model: int) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
        """(model, configuration) pairs offered to a selection and their stacked logits per set."""
        pairs, stacks = [], {s: [] for s in self.stores}
        for spec in self.models_for_stage(stage):
            if spec.role != "system":
                continue
            o = self.outcome(stage, spec.name)
            for k in o.order[:per_model]:
                pairs.append((spec.name, k))
                for s in stacks:
                    stacks[s].append(o.logits[s][k])
        return pairs, {s: np.stack(v) for s, v in stacks.items()}

    # ------------------------------------------------------------------ pseudo-labels
    def make_pseudo_labels(self) -> dict:
        """Softmax of the mean logits of a selected stage-1 ensemble, for the clean and noisy sets."""
        self.setup()
        c = self.cfg.pseudo
        pairs, stacks = self._candidates(1, c.candidates_per_model)
        yv = self.clean.labels[self.idx["val"]]
        sel = select(stacks["clean"][:, self.idx["val"]], yv, c.method, c.max_size,
                     never_predicted=self.cfg.train.never_predicted)
        members = [pairs[i] for i in sel.members]
        names = [self.outcome(1, m).names[k] for m, k in members]
        digest = sha256_json({"members": names, "stage1": [self.outcome(1, m).digest for m, _ in members]})
        probs = {s: softmax(mean_logits(stacks[s], sel.members)).astype(np.float32) for s in ("clean", "noisy")
                 if s in stacks}
        table = f"{self.cfg.name}-stage1"
        for s, p in probs.items():
            write_pseudo_labels(self.stores[s], table, self.ids[s], p, members=names, val_hF=sel.val_hF)
        folder = self.out / "pseudo"
        write_json(folder / "pseudo.json", {"table": pseudo_labels_path(table), "members": names,
                                            "selection": sel.as_dict(), "digest": digest})
        agree = {}
        for s, p in probs.items():
            agree[s] = float(np.mean(p.argmax(1) == self.labels[s]))
        self.log(f"[pseudo] {len(names)} stage-1 model(s) {names}: val hF {sel.val_hF:.4f}; pseudo-label argmax "
                 f"agrees with the labels on " + ", ".join(f"{s} {100 * a:.1f}%" for s, a in agree.items())
                 + f"; written to pseudo_labels/{table}")
        self.pseudo = {"digest": digest, "members": names, **probs}
        return self.pseudo

    # ------------------------------------------------------------------ ensemble
    def final_stage(self) -> int:
        return max(self.effective_stages())

    def make_ensemble(self) -> dict:
        self.setup()
        c = self.cfg.ensemble
        stage = self.final_stage()
        pairs, stacks = self._candidates(stage, c.candidates_per_model)
        yv = self.clean.labels[self.idx["val"]]
        sel = select(stacks["clean"][:, self.idx["val"]], yv, c.method, c.max_size,
                     never_predicted=self.cfg.train.never_predicted)
        members = [pairs[i] for i in sel.members]
        mean = {s: mean_logits(v, sel.members) for s, v in stacks.items()}
        scores = {}
        for rule in DECODINGS:
            scores[rule] = {p: self._scores(mean["clean"][self.idx[p]], p, rule) for p in ("val", "test")}
        run_dirs = [str(self.outcome(stage, m).run_dirs[k]) for m, k in members]
        n_params = sum(load_run(d).head.n_parameters() for d in run_dirs)
        result = {"stage": stage, "members": [self.outcome(stage, m).names[k] for m, k in members],
                  "run_dirs": run_dirs, "selection": sel.as_dict(), "decoding": c.decoding,
                  "n_parameters": n_params,
                  "scores": {rule: {p: s.as_dict() for p, s in v.items()} for rule, v in scores.items()}}
        folder = self.out / "ensemble"
        write_json(folder / "ensemble.json", result)
        np.savez_compressed(folder / "predictions.npz", **{f"logits_{s}": v for s, v in mean.items()},
                            **{f"ids_{s}": self.ids[s].astype(str) for s in mean},
                            labels_clean=self.clean.labels, val_idx=self.idx["val"], test_idx=self.idx["test"])
        self.log(f"[ensemble] {len(members)} stage-{stage} model(s) {result['members']}: val hF "
                 f"{scores['argmax']['val'].hF:.4f} (argmax) / {scores['expected-credit']['val'].hF:.4f} "
                 f"(expected-credit); test hF {scores['argmax']['test'].hF:.4f} / {scores['expected-credit']['test'].hF:.4f}")
        self.ensemble_result = result
        self._ens_scores = scores
        self._ens_mean = mean
        return result

    # ------------------------------------------------------------------ report
    def report(self) -> str:
        """results.md + results.json, per-class table and confusion matrix, training curves; returns the table."""
        self.setup()
        if self.ensemble_result is None:
            self.make_ensemble()
        folder = self.out / "report"
        rows = []
        val_i, test_i = self.idx["val"], self.idx["test"]
        for prior in sorted({m.prior for m in self.cfg.models if m.prior}):
            from cache.tables import read_priors

            p, miss = read_priors(self.stores["clean"], prior, self.clean.ids)
            lg = np.log(np.clip(p, 1e-12, None))
            rows.append(self._row(f"prior {prior} (argmax, untrained)", f"{priors_path(prior)}; {int(miss.sum())} missing",
                                  lg, "prior-only"))
        for spec in self.cfg.models:
            kind = model_kind(spec)
            for stage in self.effective_stages():
                if stage > 1 and spec.role != "system":
                    continue
                o = self.outcome(stage, spec.name)
                what = " + ".join(spec.groups + ([f"prior {spec.prior}"] if spec.prior else [])) + f" [{spec.preset}]"
                rows.append(self._row(f"{spec.name} stage {stage} best ({spec.label or kind})", what,
                                      o.logits["clean"][o.best], kind))
        if self.pseudo is not None or (self.out / "pseudo" / "pseudo.json").exists():
            pj = read_json(self.out / "pseudo" / "pseudo.json")
            rows.append({"name": "pseudo-label ensemble (stage 1)", "what": ", ".join(pj["members"]),
                         "val_hF": pj["selection"]["val_hF"], "kind": "pseudo"})
        for rule in DECODINGS:
            sc = self._ens_scores[rule]
            rows.append({"name": f"ensemble stage {self.ensemble_result['stage']} ({rule})",
                         "what": ", ".join(self.ensemble_result["members"]), "val_hF": sc["val"].hF,
                         "test_hP": sc["test"].hP, "test_hR": sc["test"].hR, "test_hF": sc["test"].hF,
                         "kind": "ensemble"})
        table = comparison_table(rows)
        summary = self._summary(rows)
        rule = self.cfg.ensemble.decoding
        y_test = self.clean.labels[test_i]
        pred, _ = decode(self._ens_mean["clean"][test_i], rule)
        paths = write_classification_report(folder, "ensemble_test", y_test, pred, self._ens_scores[rule]["test"],
                                            f"Ensemble ({rule}) on the clean test split")
        hist = {}
        for spec in self.cfg.models:
            for stage in self.effective_stages():
                if stage > 1 and spec.role != "system":
                    continue
                o = self.outcome(stage, spec.name)
                if o.best in o.histories:
                    hist[f"{spec.name} s{stage}"] = o.histories[o.best]
        curves = plot_curves(hist, folder / "training_curves.png", "best configuration of each model and stage")
        conv = self.cfg.train.never_predicted
        md = (f"# Results — {self.cfg.name}\n\n{self.split.describe()}; metric: macro hierarchical P/R/F, "
              f"never-predicted-class convention '{conv}'.\n\n{table}\n\n{summary}\n\n"
              f"Per-class table and confusion matrix: [{paths['markdown'].name}]({paths['markdown'].name}); "
              f"training curves: [{curves.name}]({curves.name}).\n")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.md").write_text(md)
        write_json(folder / "results.json", {"rows": rows, "summary": summary, "never_predicted": conv,
                                             "split": self.split.describe()})
        return table + "\n\n" + summary

    def _row(self, name: str, what: str, logits: np.ndarray, kind: str) -> dict:
        v = self._scores(logits[self.idx["val"]], "val")
        t = self._scores(logits[self.idx["test"]], "test")
        return {"name": name, "what": what, "val_hF": v.hF, "test_hP": t.hP, "test_hR": t.hR, "test_hF": t.hF,
                "kind": kind}

    def _summary(self, rows: list[dict]) -> str:
        def best(kind):
            c = [r for r in rows if r.get("kind") == kind and r.get("test_hF") is not None]
            return max(c, key=lambda r: r["val_hF"]) if c else None

        audio, prior = best("audio-only"), best("prior-only")
        fused_rows = [r for r in rows if r.get("kind") in ("fused", "ensemble") and r.get("test_hF") is not None]
        fused = max(fused_rows, key=lambda r: r["val_hF"]) if fused_rows else None
        ens = [r for r in rows if r.get("kind") == "ensemble"]
        final = next((r for r in ens if r["name"].endswith(f"({self.cfg.ensemble.decoding})")), None)
        lines = ["| comparison (chosen on validation hF) | system | test hF |", "|---|---|---|"]
        for label, r in (("audio-only", audio), ("prior-only", prior), ("fused (best single or ensemble)", fused),
                         ("submitted ensemble", final)):
            if r is not None:
                lines.append(f"| {label} | {r['name']} | {r['test_hF']:.4f} |")
        if fused and (audio or prior):
            others = [r["test_hF"] for r in (audio, prior) if r]
            verdict = "yes" if fused["test_hF"] > max(others) else "NO"
            lines.append(f"\nFused better than audio-only and prior-only on the test split: {verdict}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ submission
    def submit(self) -> dict[str, Path]:
        self.setup()
        if "eval" not in self.stores:
            raise ValueError("submission needs data.eval.root (the unlabelled evaluation set)")
        if self.ensemble_result is None:
            self.make_ensemble()
        sc = self.cfg.submission
        rule = self.cfg.ensemble.decoding
        pred, score = decode(self._ens_mean["eval"], rule)
        folder = self.out / "submission"
        csv_path = write_output_csv(folder / f"{sc.label}.output.csv", self.ids["eval"], pred, score)
        members = self.ensemble_result["members"]
        desc = sc.description or (
            f"Ensemble (mean logits, {rule} decoding) of {len(members)} stage-{self.ensemble_result['stage']} heads "
            f"trained on cached features: " + "; ".join(
                f"{m.name}: {' + '.join(m.groups)}{' + prior ' + m.prior if m.prior else ''} [{m.preset}]"
                for m in self.cfg.models if m.role == "system"))
        meta = write_meta_yaml(folder / f"{sc.label}.meta.yaml", label=sc.label, name=sc.name,
                               abbreviation=sc.abbreviation, description=desc,
                               dev_scores=self._ens_scores[rule]["test"], dev_split=self.split.describe(),
                               n_parameters=self.ensemble_result["n_parameters"],
                               parameters_count="trainable parameters of the ensemble's heads (prior embeddings "
                                                "included); the frozen feature extractors and the LLM are not counted",
                               members=members)
        counts = np.bincount(pred, minlength=len(CLASSES))
        self.log(f"[submit] {csv_path} ({len(pred)} clips; most predicted: "
                 + ", ".join(f"{CLASSES[i]} {counts[i]}" for i in np.argsort(-counts)[:3]) + f"), {meta}")
        return {"csv": csv_path, "meta": meta}

    # ------------------------------------------------------------------ everything
    def run(self) -> str:
        t0 = time.time()
        self.setup()
        for stage in self.effective_stages():
            self.run_stage(stage)
        if 2 in self.cfg.stages and 2 not in self.effective_stages():
            self.log("[stage 2] skipped: no noisy dataset configured")
        self.make_ensemble()
        table = self.report()
        if "eval" in self.stores:
            self.submit()
        self.log(f"\n{table}\n\n[pipeline] done in {time.time() - t0:.1f} s; results in {self.out}")
        return table
