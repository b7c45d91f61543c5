"""The whole recipe on cached features, from one :class:`heads.pipeline_config.PipelineConfig`.

stage 1 search (clean set) → pseudo-labels (softmax of the mean logits of a selected stage-1
ensemble, for every clip of the clean and noisy sets) → stage 2 search (noisy set, λ-mixed,
fresh heads, clean-validation selection; noisy clips in the clean validation/test split are
excluded and counted) → stage 3 search (clean set, λ-mixed, from the best stage-2 head) →
ensemble (subset selection on validation hF) → report → submission files.

Every step writes its results under ``out/`` (:mod:`heads.stage_store`) and a stage is skipped on
a re-run when its inputs and settings are unchanged (a digest is stored with it), so a killed
pipeline resumes. Each step returns its result; a later step takes it as an argument or, when
run alone, reads it back from ``out/``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cache import tables
from cache.config import dump_toml, to_dict
from cache.provenance import base_provenance, sha256_json
from cache.taxonomy import CLASSES

from .data import HeadData
from .ensemble import DECODINGS, decode, mean_logits, select, softmax
from .json_files import write_json
from .pipeline_config import ModelSpec, PipelineConfig, SelectionConfig, parse_member
from .pipeline_data import ModelData, PipelineData, load_model_data, load_pipeline_data
from .pipeline_report import write_report
from .run_folder import load_run, run_parameters
from .search import SearchSpace, ranking, run_search, sample_configs
from .stage_store import (
    EnsembleResult,
    PseudoLabels,
    StageOutcome,
    load_pseudo_summary,
    load_stage,
    save_ensemble,
    save_pseudo_summary,
    save_stage,
    save_stage_runs,
    stage_dir,
)
from .submission import write_meta_yaml, write_output_csv
from .training import predict_logits


def stage_training_set(
    stage: int, model: ModelData, data: PipelineData, pseudo: PseudoLabels | None
) -> tuple[HeadData, HeadData]:
    """(training, validation) data of a stage: the clean training split (stage 1; stage 3 with
    pseudo-labels) or the noisy clips outside the clean validation/test split (stage 2, with
    pseudo-labels); clips whose features failed are left out. Validation: the clean val split."""
    clean = model.sets["clean"]
    val = clean.subset(data.idx["val"])
    if stage == 1:
        train = clean.subset(data.idx["train"])
    elif stage == 2:
        noisy = model.sets["noisy"].with_pseudo(pseudo.probs["noisy"])
        keep = data.noisy_train_idx
        ok = noisy.feature_ok[keep] if noisy.feature_ok is not None else np.ones(len(keep), bool)
        train = noisy.subset(keep[ok])
    else:
        train = clean.with_pseudo(pseudo.probs["clean"]).subset(data.idx["train"])
    if train.feature_ok is not None and stage != 2:
        train = train.subset(np.flatnonzero(train.feature_ok))
    return train, val


class Pipeline:
    """Runs the steps of a :class:`PipelineConfig`; each step can also be run alone.

    The datasets, each model's inputs and finished stages are read once and kept (caches of
    what is in the stores and under ``out/``); nothing else passes between the steps but their
    arguments and return values.
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        out: str | Path | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(out or cfg.out)
        self.progress = progress
        self.log = log
        self._data: PipelineData | None = None
        self._model_data: dict[str, ModelData] = {}
        self._outcomes: dict[tuple[int, str], StageOutcome] = {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

    # ------------------------------------------------------------------ data
    def data(self) -> PipelineData:
        """The datasets and the split; on first use the split and the resolved config are saved to
        ``out/``."""
        if self._data is None:
            data = load_pipeline_data(self.cfg, self.log)
            self.out.mkdir(parents=True, exist_ok=True)
            data.split.save(self.out / "split.json")
            write_json(self.out / "config.json", to_dict(self.cfg))
            (self.out / "config.toml").write_text(dump_toml(to_dict(self.cfg)))
            self._data = data
        return self._data

    def model_data(self, spec: ModelSpec) -> ModelData:
        if spec.name not in self._model_data:
            self._model_data[spec.name] = load_model_data(self.data(), spec, self.log)
        return self._model_data[spec.name]

    def _finished(self, stage: int, model: str) -> StageOutcome | None:
        key = (stage, model)
        if key not in self._outcomes:
            o = load_stage(self.out, stage, model)
            if o is None:
                return None
            self._outcomes[key] = o
        return self._outcomes[key]

    def outcome(self, stage: int, model: str) -> StageOutcome:
        """A finished stage of one model (raises when it has not run)."""
        o = self._finished(stage, model)
        if o is None:
            raise RuntimeError(f"stage {stage} of model {model} has no results in {self.out}; run it first")
        return o

    # ------------------------------------------------------------------ stages
    def run_stages(self) -> None:
        """Every configured stage that can run, with the pseudo-labels made once after stage 1."""
        pseudo = None
        for stage in self.cfg.effective_stages():
            if stage > 1 and pseudo is None:
                pseudo = self.make_pseudo_labels()
            self.run_stage(stage, pseudo)
        if 2 in self.cfg.stages and 2 not in self.cfg.effective_stages():
            self.log("[stage 2] skipped: no noisy dataset configured")

    def run_stage(self, stage: int, pseudo: PseudoLabels | None = None) -> dict[str, StageOutcome]:
        """Search every model of ``stage`` (reusing saved results when unchanged); stages 2 and 3
        make the pseudo-labels when none are given."""
        data = self.data()
        if stage not in self.cfg.stages:
            raise ValueError(f"stage {stage} is not in this config's stages {self.cfg.stages}")
        for earlier in self.cfg.effective_stages():
            if earlier < stage:
                for spec in self.cfg.models_for_stage(earlier):
                    if self._finished(earlier, spec.name) is None:
                        raise RuntimeError(
                            f"stage {stage} needs stage {earlier} of {spec.name}; run it first"
                        )
        if stage == 2 and "noisy" not in data.stores:
            raise ValueError("stage 2 needs data.noisy.root (the noisy crowd-sourced set)")
        if stage > 1 and pseudo is None:
            pseudo = self.make_pseudo_labels()
        return {
            spec.name: self._run_model_stage(stage, mi, spec, pseudo)
            for mi, spec in enumerate(self.cfg.models_for_stage(stage))
        }

    def _run_model_stage(
        self, stage: int, mi: int, spec: ModelSpec, pseudo: PseudoLabels | None
    ) -> StageOutcome:
        cfg, data = self.cfg, self.data()
        st = cfg.stage_settings(stage)
        init_state, init_desc, init_name = None, "", ""
        prev = cfg.previous_stage(stage) if stage == 3 else None
        if prev is not None:
            po = self._finished(prev, spec.name)
            if po is None:
                raise RuntimeError(f"stage 3 of {spec.name} starts from stage {prev}, which has not run")
            init_state = load_run(po.run_dirs[po.best]).head.state_dict()
            init_desc = f"{po.digest}:{po.names[po.best]}"
            init_name = po.names[po.best]
        digest = sha256_json(
            {
                "stage": stage,
                "settings": dataclasses.asdict(st),
                "model": dataclasses.asdict(spec),
                "train": dataclasses.asdict(cfg.train),
                "seed": cfg.seed,
                "data": data.digest,
                "init": init_desc,
                "pseudo": pseudo.digest if stage > 1 and pseudo else "",
            }
        )
        folder = stage_dir(self.out, stage, spec.name)
        cached = load_stage(self.out, stage, spec.name, digest, runs_kept=self.cfg.runs_kept())
        if cached is not None:
            self.log(f"[stage {stage}] {spec.name}: unchanged, reusing {folder}")
            self._outcomes[(stage, spec.name)] = cached
            return cached
        md = self.model_data(spec)
        train, val = stage_training_set(stage, md, data, pseudo)
        space = SearchSpace(
            k=st.k,
            lr_min=st.lr_min,
            lr_max=st.lr_max,
            lam_min=st.lam_min if stage > 1 else 0.0,
            lam_max=st.lam_max if stage > 1 else 0.0,
            seed=cfg.seed * 1000 + stage * 100 + mi,
        )
        configs = sample_configs(cfg.train_config(spec, stage), space)
        self.log(
            f"[stage {stage}] {spec.name}: {st.k} configurations × ≤{st.epochs} epochs on {len(train)} clips "
            f"(val {len(val)}), "
            f"{'from the best stage-' + str(prev) + ' head' if init_state else 'fresh heads'}"
        )
        t0 = time.time()
        results = run_search(
            configs,
            train,
            val,
            init_state=init_state,
            max_stack=cfg.max_stack,
            progress=self.progress,
            desc=f"stage {stage} {spec.name}",
            halving=st.halving,
            rung_epochs=st.rung_epochs,
        )
        names = [cfg.run_name(stage, spec.name, k) for k in range(len(results))]
        logits = {s: predict_logits(results, d) for s, d in md.sets.items()}
        order = ranking(results)
        kept = order[: cfg.runs_kept()]
        tests = {
            k: data.scores(logits["clean"][k][data.idx["test"]], "test", cfg.train.never_predicted)
            for k in kept
        }
        noisy = data.noisy_summary() if stage == 2 else {}
        run_dirs = save_stage_runs(
            folder,
            results,
            names,
            kept,
            tests,
            stage=stage,
            spec=spec,
            settings=st,
            model=md,
            split=data.split,
            digest=digest,
            extra_metrics=noisy,
        )
        if cfg.write_logits:
            for s, store in data.stores.items():
                for k, name in enumerate(names):
                    tables.write_logits(
                        store,
                        name,
                        data.ids[s],
                        logits[s][k],
                        attrs=base_provenance(
                            "heads",
                            run=name,
                            stage=stage,
                            model=spec.name,
                            config=dataclasses.asdict(results[k].config),
                            val=results[k].best_val,
                            split_ids_sha256=data.split.ids_sha256,
                        ),
                    )
        outcome = StageOutcome(
            stage,
            spec.name,
            names,
            [r.summary() for r in results],
            order,
            logits,
            run_dirs,
            {k: results[k].history for k in range(len(results))},
            digest,
        )
        save_stage(
            folder,
            outcome,
            results,
            data.ids,
            {"seconds": time.time() - t0, "n_train": len(train), "init_from": init_name, **noisy},
        )
        b = outcome.summaries[outcome.best]
        self.log(
            f"[stage {stage}] {spec.name}: best {names[outcome.best]} val hF {b.get('hF', float('nan')):.4f} "
            f"(lr {b['lr']:.3g}, λ {b['lam']:.3f}, epoch {b['best_epoch']}) in {time.time() - t0:.1f} s"
        )
        self._outcomes[(stage, spec.name)] = outcome
        return outcome

    def _candidates(
        self, stage: int, sel: SelectionConfig
    ) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
        """(model, configuration) pairs of a selection and their stacked logits per set: the fixed
        ``sel.members``, or else the best ``sel.candidates_per_model`` of every system model."""
        if sel.members:
            picks = list(map(parse_member, sel.members))
        else:
            picks = [
                (spec.name, r + 1)
                for spec in self.cfg.models_for_stage(stage)
                if spec.role == "system"
                for r in range(sel.candidates_per_model)
            ]
        pairs, stacks = [], {s: [] for s in self.data().stores}
        for name, rank in picks:
            o = self.outcome(stage, name)
            if rank > len(o.order):
                if sel.members:
                    raise ValueError(
                        f"member {name}:{rank}: stage {stage} of {name} has only {len(o.order)} "
                        "configuration(s)"
                    )
                continue
            k = o.order[rank - 1]
            pairs.append((name, k))
            for s in stacks:
                stacks[s].append(o.logits[s][k])
        return pairs, {s: np.stack(v) for s, v in stacks.items()}

    def _select(self, stage: int, sel: SelectionConfig):
        """The candidates of a selection, their logits, and the members chosen on validation hF
        (all of them, method ``fixed``, when ``sel.members`` names them)."""
        data = self.data()
        pairs, stacks = self._candidates(stage, sel)
        yv = data.labels["clean"][data.idx["val"]]
        method = "all" if sel.members else sel.method
        chosen = select(
            stacks["clean"][:, data.idx["val"]],
            yv,
            method,
            0 if sel.members else sel.max_size,
            never_predicted=self.cfg.train.never_predicted,
        )
        if sel.members:
            chosen.method = "fixed"
        return pairs, stacks, chosen

    # ------------------------------------------------------------------ pseudo-labels
    def make_pseudo_labels(self) -> PseudoLabels:
        """Softmax of the mean logits of a selected stage-1 ensemble, for the clean and noisy sets."""
        data = self.data()
        pairs, stacks, sel = self._select(1, self.cfg.pseudo)
        members = [pairs[i] for i in sel.members]
        names = [self.outcome(1, m).names[k] for m, k in members]
        digest = sha256_json({"members": names, "stage1": [self.outcome(1, m).digest for m, _ in members]})
        probs = {
            s: softmax(mean_logits(stacks[s], sel.members)).astype(np.float32)
            for s in ("clean", "noisy")
            if s in stacks
        }
        table = f"{self.cfg.name}-stage1"
        for s, p in probs.items():
            tables.write_pseudo_labels(
                data.stores[s],
                table,
                data.ids[s],
                p,
                attrs=base_provenance("heads", name=table, members=names, val_hF=sel.val_hF),
            )
        save_pseudo_summary(self.out, tables.pseudo_labels_path(table), names, sel.as_dict(), digest)
        agree = {s: float(np.mean(p.argmax(1) == data.labels[s])) for s, p in probs.items()}
        self.log(
            f"[pseudo] {len(names)} stage-1 model(s) {names}: val hF {sel.val_hF:.4f}; pseudo-label argmax "
            f"agrees with the labels on "
            + ", ".join(f"{s} {100 * a:.1f}%" for s, a in agree.items())
            + f"; written to {tables.pseudo_labels_path(table)}"
        )
        return PseudoLabels(digest, names, probs)

    # ------------------------------------------------------------------ ensemble
    def make_ensemble(self) -> EnsembleResult:
        """Mean-logit ensemble of the final stage: the fixed ``ensemble.members``, or the best
        configurations chosen on validation hF (``ensemble.method``)."""
        data, c = self.data(), self.cfg.ensemble
        stage = self.cfg.final_stage()
        pairs, stacks, sel = self._select(stage, c)
        members = [pairs[i] for i in sel.members]
        mean = {s: mean_logits(v, sel.members) for s, v in stacks.items()}
        scores = {
            rule: {
                p: data.scores(mean["clean"][data.idx[p]], p, self.cfg.train.never_predicted, rule)
                for p in ("val", "test")
            }
            for rule in DECODINGS
        }
        run_dirs = [str(self.outcome(stage, m).run_dirs[k]) for m, k in members]
        n_params = sum(run_parameters(d) for d in run_dirs)
        summary = {
            "stage": stage,
            "members": [self.outcome(stage, m).names[k] for m, k in members],
            "run_dirs": run_dirs,
            "selection": sel.as_dict(),
            "decoding": c.decoding,
            "n_parameters": n_params,
            "scores": {rule: {p: s.as_dict() for p, s in v.items()} for rule, v in scores.items()},
        }
        ens = EnsembleResult(summary, scores, mean)
        save_ensemble(self.out, ens, data.ids, data.labels["clean"], data.idx)
        self.log(
            f"[ensemble] {len(members)} stage-{stage} model(s) {summary['members']}: val hF "
            f"{scores['argmax']['val'].hF:.4f} (argmax) / {scores['expected-credit']['val'].hF:.4f} "
            f"(expected-credit); test hF {scores['argmax']['test'].hF:.4f} / "
            f"{scores['expected-credit']['test'].hF:.4f}"
        )
        return ens

    # ------------------------------------------------------------------ report
    def report(self, ens: EnsembleResult | None = None) -> str:
        """results.md + results.json, per-class table and confusion matrix, training curves; returns the
        table. Without ``ens`` the ensemble is made first."""
        data = self.data()
        ens = ens if ens is not None else self.make_ensemble()
        outcomes = {
            (stage, spec.name): self.outcome(stage, spec.name)
            for spec in self.cfg.models
            for stage in self.cfg.effective_stages()
            if stage == 1 or spec.role == "system"
        }
        return write_report(self.out / "report", self.cfg, data, outcomes, load_pseudo_summary(self.out), ens)

    # ------------------------------------------------------------------ submission
    def submit(self, ens: EnsembleResult | None = None) -> dict[str, Path]:
        """``<label>.output.csv`` and ``<label>.meta.yaml`` for the evaluation set (the ensemble is made
        first without ``ens``)."""
        data = self.data()
        if "eval" not in data.stores:
            raise ValueError("submission needs data.eval.root (the unlabelled evaluation set)")
        ens = ens if ens is not None else self.make_ensemble()
        sc = self.cfg.submission
        rule = self.cfg.ensemble.decoding
        pred, score = decode(ens.mean["eval"], rule)
        folder = self.out / "submission"
        csv_path = write_output_csv(folder / f"{sc.label}.output.csv", data.ids["eval"], pred, score)
        members = ens.summary["members"]
        desc = sc.description or (
            f"Ensemble (mean logits, {rule} decoding) of {len(members)} stage-{ens.summary['stage']} heads "
            f"trained on cached features: "
            + "; ".join(
                f"{m.name}: {' + '.join(m.groups)}{' + prior ' + m.prior if m.prior else ''} [{m.preset}]"
                for m in self.cfg.models
                if m.role == "system"
            )
        )
        meta = write_meta_yaml(
            folder / f"{sc.label}.meta.yaml",
            label=sc.label,
            name=sc.name,
            abbreviation=sc.abbreviation,
            description=desc,
            dev_scores=ens.scores[rule]["test"],
            dev_split=data.split.describe(),
            n_parameters=ens.summary["n_parameters"],
            parameters_count="trainable parameters of the ensemble's heads (prior embeddings "
            "included); the frozen feature extractors and the LLM are not counted",
            members=members,
        )
        counts = np.bincount(pred, minlength=len(CLASSES))
        self.log(
            f"[submit] {csv_path} ({len(pred)} clips; most predicted: "
            + ", ".join(f"{CLASSES[i]} {counts[i]}" for i in np.argsort(-counts)[:3])
            + f"), {meta}"
        )
        return {"csv": csv_path, "meta": meta}

    # ------------------------------------------------------------------ everything
    def run(self) -> str:
        """Stages → ensemble → report → submission (when an evaluation set is configured); returns the
        table."""
        t0 = time.time()
        data = self.data()
        self.run_stages()
        ens = self.make_ensemble()
        table = self.report(ens)
        if "eval" in data.stores:
            self.submit(ens)
        self.log(f"\n{table}\n\n[pipeline] done in {time.time() - t0:.1f} s; results in {self.out}")
        return table
