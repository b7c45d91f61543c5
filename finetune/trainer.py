"""The end-to-end training loop of one stage (the recipe in docs/finetune.md), on one or many processes.

AdamW (weight decay 0.01) over every trainable parameter of backbone + head, one learning
rate, ``heads.schedule.reference_schedule`` stepped per update, the reference loss split
exactly over ranks and accumulation steps (``finetune.loss``), gradient clipping, early
stopping on validation hF decided identically on every rank (computed from the same gathered
logits, then broadcast from rank 0), crash-safe training states, the best weights, and
logits for every clip of every dataset written into the cache as ``logits/<run>``. Rank 0
holds a lock on the output folder for the whole run, so a second run into it is refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.provenance import sha256_file
from heads.early_stopping import EarlyStopping
from heads.json_files import write_json
from heads.losses import class_frequency_weights
from heads.schedule import reference_schedule

from .checkpointing import StateFolders, TrainState, resume_latest
from .config import BatchPlan, ConfigError, FinetuneConfig, resolve_batch, save_config
from .data import ClipAudio, PlanBatches, loader_batches, make_loader, steps_per_epoch, train_plan
from .datasets import load_datasets
from .evaluate import model_inputs, predict, score, summary, to_device, window_counts
from .loss import batch_normalisers, partial_loss
from .model import build_model, export_weights, load_weights, weights_file
from .output_folder import (
    hold_output_lock,
    previous_phase_log,
    save_logits_npz,
    sum_phases,
    write_logits_tables,
    write_metrics,
)
from .timing import PhaseTimer

#: testing hook: SIGKILL this process right after optimizer update N (N = value of the variable)
KILL_ENV = "FINETUNE_KILL_AT_STEP"


def make_accelerator(cfg: FinetuneConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    mp = cfg.train.mixed_precision or None
    on_cpu = (
        os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        or not torch.cuda.is_available()
    )
    if on_cpu and mp == "fp16":
        print("warning: fp16 mixed precision needs a GPU; running in float32 on the CPU", flush=True)
        mp = "no"
    out = Path(cfg.output.dir)
    return Accelerator(
        mixed_precision=mp,
        step_scheduler_with_optimizer=False,
        log_with="tensorboard" if cfg.output.tensorboard else None,
        project_dir=str(out / "tb"),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )


class Trainer:
    """One stage of end-to-end training: ``Trainer(cfg).run(resume=...)`` → result dict."""

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = cfg.validate()
        self.acc = make_accelerator(cfg)
        self.plan: BatchPlan = resolve_batch(cfg.train, self.acc.num_processes)
        self.out = Path(cfg.output.dir)
        self.timer = PhaseTimer(self.acc.device)

    # ------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            print(f"[finetune] {msg}", flush=True)

    # ------------------------------------------------------------------ main
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train, holding the output folder's lock on rank 0; every rank refuses alike if it is taken."""
        from accelerate.utils import broadcast_object_list

        with contextlib.ExitStack() as stack:
            refused = [""]
            if self.acc.is_main_process:
                try:
                    stack.enter_context(hold_output_lock(self.out))
                except ConfigError as e:
                    refused = [str(e)]
            broadcast_object_list(refused, from_process=0)
            if refused[0]:
                raise ConfigError(refused[0])
            return self._run(resume)

    def _run(self, resume: bool) -> dict[str, Any]:
        cfg, acc, plan = self.cfg, self.acc, self.plan
        t_start = time.perf_counter()
        self._phase_log: list[dict[str, Any]] = []
        folders = StateFolders(self.out / "state", acc, background=cfg.train.checkpoint_in_background)
        if folders.exists() and not resume:
            raise ConfigError(
                f"{self.out} already holds a training state: pass --resume to continue it, "
                "or choose another output.dir"
            )
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log(
            f"{acc.num_processes} process(es) on {acc.device}, mixed precision {acc.mixed_precision}; "
            f"global batch {plan.global_batch} = {plan.per_device} per device × {plan.processes} × "
            f"{plan.accumulation} accumulation"
        )
        if cfg.train.init_from and not weights_file(cfg.train.init_from).is_file():
            raise ConfigError(
                f"train.init_from: no weights file {weights_file(cfg.train.init_from)} "
                "(give a finished run folder, or its best/model.pt)"
            )
        data = load_datasets(cfg, self.log)
        self.data = data
        from accelerate.utils import set_seed

        set_seed(cfg.train.seed)
        model, use, facts = build_model(cfg, self.log)
        init_meta: dict[str, Any] = {}
        if cfg.train.init_from:
            whole = cfg.train.stage == 3
            init_meta = load_weights(model, cfg.train.init_from, head=whole)
            self.log(
                f"initialised {'backbone and head' if whole else 'backbone'} from "
                f"{weights_file(cfg.train.init_from)}"
            )
        self.facts = {
            **facts,
            **data.facts,
            "batch": plan.__dict__,
            "processes": acc.num_processes,
            "mixed_precision": acc.mixed_precision,
            "init_from": {
                "path": str(weights_file(cfg.train.init_from)),
                "sha256": sha256_file(weights_file(cfg.train.init_from)),
                "meta": init_meta,
            }
            if cfg.train.init_from
            else None,
        }
        if acc.is_main_process:
            save_config(cfg, self.out, {"facts": self.facts})
            data.split.save(self.out / "split.json")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        spe = steps_per_epoch(len(data.train), plan.global_batch)
        scheduler = reference_schedule(
            optimizer,
            spe,
            cfg.train.epochs,
            cfg.train.warmup_epochs,
            cfg.train.decay_start_epoch,
            cfg.train.final_lr,
        )
        model, optimizer = acc.prepare(model, optimizer)
        state = TrainState()
        acc.register_for_checkpointing(scheduler, state)  # for states saved by Accelerator.save_state
        set_seed(cfg.train.seed, device_specific=True)  # dropout/patchout differ per rank; restored on resume
        if resume:
            resume_latest(acc, folders, state, self.log, model, optimizer, [scheduler, state])
        if cfg.output.tensorboard:
            acc.init_trackers(
                cfg.run_name,
                config={
                    "lr": cfg.train.lr,
                    "lam": cfg.train.lam,
                    "stage": cfg.train.stage,
                    "epochs": cfg.train.epochs,
                    "batch": plan.global_batch,
                    "backbone": cfg.backbone.name,
                    "seed": cfg.train.seed,
                },
            )
        self.model, self.optimizer, self.scheduler, self.state, self.folders = (
            model,
            optimizer,
            scheduler,
            state,
            folders,
        )
        self.n_windows = {"val": window_counts(data.val, acc.unwrap_model(model).backbone.spec, acc)}
        early = EarlyStopping(cfg.train.patience, mode="max")
        if state.early:
            early.load_state_dict(state.early)
        if resume:
            self._phase_log = previous_phase_log(self.out, state.epoch)
        self.timer.take()  # a resumed state's load is set-up time
        run_seconds = {"setup": time.perf_counter() - t_start}
        t_epochs = time.perf_counter()
        self._train_loader, self._train_sampler, self._ahead, self._eval_loaders = None, None, None, {}
        while not state.finished and state.epoch < cfg.train.epochs:
            self._train_epoch(spe, prefetch=not early.may_stop_next())
            self._end_epoch(early)
        # workers end
        self._train_loader, self._train_sampler, self._ahead, self._eval_loaders = None, None, None, {}
        run_seconds["epochs"] = time.perf_counter() - t_epochs
        t_finish = time.perf_counter()
        result = self._finish(run_seconds, t_finish)
        # release the DDP wrapper (its reducer holds the process group) before the group is destroyed:
        # a group left to interpreter shutdown can abort the process (SIGABRT) after a finished run
        del model, optimizer, scheduler
        self.model = self.optimizer = self.scheduler = None
        acc.free_memory()
        acc.end_training()
        return result

    # ------------------------------------------------------------------ one epoch
    def _epoch_batches(self, epoch: int, start_batch: int) -> tuple[list, Any]:
        """(this rank's micro-steps, an iterator over their batches) of ``epoch`` from ``start_batch``.

        One DataLoader with persistent workers serves every epoch (workers start once per run);
        its iterator starts decoding as soon as it is made, which :meth:`_train_epoch` does for
        the next epoch before the validation pass, so that epoch's first batches are ready.
        """
        cfg, plan, train = self.cfg, self.plan, self.data.train
        if self._train_loader is None:
            spec = self.acc.unwrap_model(self.model).backbone.spec
            self._train_sampler = PlanBatches()
            self._train_loader = make_loader(
                ClipAudio(train, spec.sample_rate, spec.window_samples, spec.padding),
                self._train_sampler,
                cfg.data.num_workers,
                seed=cfg.train.seed,
                persistent=True,
            )
        steps = train_plan(
            len(train),
            plan.global_batch,
            plan.processes,
            plan.accumulation,
            self.acc.process_index,
            cfg.train.seed,
            epoch,
            start_batch=start_batch,
        )
        self._train_sampler.batches = loader_batches(steps)
        return steps, iter(self._train_loader)

    def _train_epoch(self, spe: int, prefetch: bool = True) -> None:
        """One epoch of updates (resuming at ``state.next_batch``); with ``prefetch`` the next
        epoch's first batches start decoding before the validation pass (skipped when this
        epoch's validation may end the run, so that no decoding is wasted)."""
        cfg, acc, plan, state, model, timer = (
            self.cfg,
            self.acc,
            self.plan,
            self.state,
            self.model,
            self.timer,
        )
        train = self.data.train
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (state.epoch, state.next_batch):
            steps, batches = ahead[1], ahead[2]
        else:
            with timer.phase("data_first"):
                steps, batches = self._epoch_batches(state.epoch, state.next_batch)
        device = acc.device
        cw = class_frequency_weights(train.labels[train.labels >= 0]).to(device)
        cw_cpu = cw.cpu()
        labels_all = torch.from_numpy(train.labels)
        has_all = torch.from_numpy(np.asarray(train.has_pseudo, dtype=bool))
        lam, world, kill_at = cfg.train.lam, plan.processes, int(os.environ.get(KILL_ENV, "0") or 0)
        local_loss = torch.zeros((), device=device)
        seen: list[str] = []
        model.train()
        t0, n_items = time.time(), 0
        bar = None
        if acc.is_main_process:
            from cache.progress import progress

            bar = progress(
                total=spe,
                initial=state.next_batch,
                desc=f"epoch {state.epoch + 1}/{cfg.train.epochs}",
                unit="upd",
                leave=False,
            )
        for k, ms in enumerate(steps):
            with timer.phase("data_first" if k == 0 else "data_wait"):
                batch = next(batches)
            with timer.phase("train_step"):
                last_micro = ms.step == plan.accumulation - 1
                gi = torch.from_numpy(ms.global_items)
                ce_norm, soft_norm = batch_normalisers(labels_all[gi], has_all[gi], cw_cpu)
                for i, e in zip(batch["index"].tolist(), batch["errors"], strict=True):
                    if e:
                        print(
                            f"[finetune] rank {acc.process_index}: clip {train.ids[i]} failed to decode "
                            f"({e}); trained as silence",
                            flush=True,
                        )
                if cfg.output.log_seen_ids:
                    seen.extend(
                        str(train.ids[i])
                        for i, v in zip(batch["index"].tolist(), batch["valid"].tolist(), strict=True)
                        if v
                    )
                n_items += int(batch["valid"].sum())
                b = to_device(batch, device)
                sync = contextlib.nullcontext() if last_micro else acc.no_sync(model)
                with sync:
                    logits = model(**model_inputs(b))
                    loss = partial_loss(
                        logits,
                        b["labels"],
                        b["valid"],
                        b["pseudo"] if lam > 0 else None,
                        b["has_pseudo"],
                        cw,
                        ce_norm,
                        soft_norm,
                        lam,
                    )
                    acc.backward(loss * world)
                local_loss += loss.detach()
                if last_micro:
                    if cfg.train.clip_grad_norm > 0:
                        acc.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    state.global_step += 1
                    state.next_batch = ms.batch + 1
                    state.loss_updates += 1
                    if bar is not None:
                        bar.update(1)
            if not last_micro:
                continue
            if (
                cfg.train.checkpoint_every
                and state.global_step % cfg.train.checkpoint_every == 0
                and state.next_batch < spe
            ):
                with timer.phase("state_save"):
                    state.loss_sum += float(acc.reduce(local_loss, reduction="sum"))
                    local_loss.zero_()
                    self._save_state(state.next_batch)
            if kill_at and state.global_step == kill_at:
                self.folders.wait()  # test hook: the newest state is on disk, so the resume point is known
                os.kill(os.getpid(), signal.SIGKILL)
        if bar is not None:
            bar.close()
        with timer.phase("train_step"):
            state.loss_sum += float(acc.reduce(local_loss, reduction="sum"))
        # the next epoch's first batches decode during validation
        if prefetch and state.epoch + 1 < cfg.train.epochs:
            with timer.phase("data_first"):
                self._ahead = ((state.epoch + 1, 0), *self._epoch_batches(state.epoch + 1, 0))
        self._epoch_speed = {
            "seconds": time.time() - t0,
            "samples_per_s": float(acc.reduce(torch.tensor(float(n_items), device=device), "sum"))
            / max(1e-9, time.time() - t0),
        }
        if cfg.output.log_seen_ids:
            d = self.out / "seen"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"epoch{state.epoch}.rank{acc.process_index}.txt").write_text(
                "\n".join(seen) + ("\n" if seen else "")
            )

    def _save_state(self, next_batch: int) -> None:
        state = self.state
        info = {"global_step": state.global_step, "epoch": state.epoch, "next_batch": next_batch}
        self.folders.save(info, self.model, self.optimizer, [self.scheduler, state])

    def _end_epoch(self, early: EarlyStopping) -> None:
        cfg, acc, state, timer = self.cfg, self.acc, self.state, self.timer
        model = acc.unwrap_model(self.model)
        with timer.phase("eval"):
            if not self._eval_loaders:  # its workers are forked next: no state write may be in flight
                self.folders.wait()
            logits, _ = predict(
                model,
                self.data.val,
                accelerator=acc,
                n_windows=self.n_windows["val"],
                max_windows=cfg.data.eval_max_windows,
                num_workers=cfg.data.num_workers,
                desc="validate",
                loaders=self._eval_loaders,
            )
            val = summary(score(logits, self.data.val.labels, cfg.train.never_predicted))
            improved = early.step(val["hF"], state.epoch)
            from accelerate.utils import broadcast_object_list

            box = [(improved, early.should_stop)]
            broadcast_object_list(box, from_process=0)  # one decision for every rank
            improved, stop = box[0]
        epoch = state.epoch
        if improved and acc.is_main_process:
            with timer.phase("best_weights"):
                export_weights(
                    model,
                    self.out / "best" / "model.pt",
                    {
                        "epoch": epoch,
                        "val": val,
                        "run": cfg.run_name,
                        "stage": cfg.train.stage,
                        "config": cfg.as_dict(),
                        "backbone": cfg.backbone.name,
                    },
                )
        with timer.phase("logging"):
            entry = {
                "epoch": epoch + 1,
                "train_loss": state.loss_sum / max(1, state.loss_updates),
                "lr": float(self.scheduler.get_last_lr()[0]),
                "updates": state.global_step,
                "val": val,
                "best": bool(improved),
                **self._epoch_speed,
            }
            state.history.append(entry)
            self.log(
                f"epoch {epoch + 1}: loss {entry['train_loss']:.4f}, val hF {val['hF']:.4f}"
                f"{' (best)' if improved else ''}, {entry['samples_per_s']:.1f} clips/s"
            )
            if cfg.output.tensorboard:
                acc.log(
                    {
                        "train/loss": entry["train_loss"],
                        "train/lr": entry["lr"],
                        "val/hF": val["hF"],
                        "val/hP": val["hP"],
                        "val/hR": val["hR"],
                        "val/accuracy": val["accuracy"],
                    },
                    step=epoch + 1,
                )
            state.epoch += 1
            state.next_batch, state.loss_sum, state.loss_updates = 0, 0.0, 0
            state.early = early.state_dict()
            state.finished = bool(stop) or state.epoch >= cfg.train.epochs
        with timer.phase("state_save"):
            self._save_state(0)
        with timer.phase("logging"):
            self._phase_log.append({"epoch": epoch + 1, **timer.take()})
            if acc.is_main_process:
                write_metrics(self.out, cfg.run_name, state.history, early, stop, self._phase_log)

    # ------------------------------------------------------------------ after training
    def _finish(self, run_seconds: dict[str, float], t_finish: float) -> dict[str, Any]:
        """Best weights → logits of every dataset, val/test scores, result.json (with the run's time per
        phase)."""
        cfg, acc, state = self.cfg, self.acc, self.state
        model = acc.unwrap_model(self.model)
        best = self.out / "best" / "model.pt"
        acc.wait_for_everyone()
        meta = load_weights(model, best)
        self.folders.wait()  # the last training state: written before data workers are forked below
        kw = dict(accelerator=acc, max_windows=cfg.data.eval_max_windows, num_workers=cfg.data.num_workers)
        all_logits: dict[str, np.ndarray] = {}
        failures: dict[str, dict[str, str]] = {}
        for name, (clips, _) in self.data.all_sets.items():
            if not cfg.output.write_logits and name != self.data.val.dataset:
                continue
            all_logits[name], failures[name] = predict(model, clips, desc=f"logits {name}", **kw)
        clean_name = self.data.val.dataset
        clean_all = self.data.all_sets[clean_name][0]
        pos = {str(i): k for k, i in enumerate(clean_all.ids)}
        results = {}
        for part, clips in (("val", self.data.val), ("test", self.data.test)):
            rows = [pos[str(i)] for i in clips.ids]
            results[part] = summary(
                score(all_logits[clean_name][rows], clips.labels, cfg.train.never_predicted)
            )
        weights_sha = sha256_file(best) if acc.is_main_process else ""
        result = {
            "run": cfg.run_name,
            "stage": cfg.train.stage,
            "backbone": cfg.backbone.name,
            "variant": cfg.backbone.variant,
            "lr": cfg.train.lr,
            "lam": cfg.train.lam,
            "seed": cfg.train.seed,
            "epochs": cfg.train.epochs,
            "epochs_run": len(state.history),
            "best_epoch": meta.get("epoch", -1) + 1,
            "val": results["val"],
            "test": results["test"],
            "never_predicted": cfg.train.never_predicted,
            "output_dir": str(self.out.resolve()),
            "weights": str(best.resolve()),
            "weights_sha256": weights_sha,
            "processes": acc.num_processes,
            "global_batch": self.plan.global_batch,
            "decode_failures": {k: v for k, v in failures.items() if v},
        }
        if acc.is_main_process:
            run_seconds["finish"] = time.perf_counter() - t_finish  # without writing the logits tables
            result["phase_seconds"] = {
                **{k: round(v, 3) for k, v in run_seconds.items()},
                "per_phase": sum_phases(self._phase_log),
            }
            save_logits_npz(self.out, all_logits, self.data)
            if cfg.output.write_logits:
                backbone_provenance = self.facts.get("backbone_provenance")
                write_logits_tables(cfg, self.data, backbone_provenance, all_logits, result, self.log)
            write_json(self.out / "result.json", result)
            self.log(
                f"best epoch {result['best_epoch']}: val hF {results['val']['hF']:.4f}, "
                f"test hF {results['test']['hF']:.4f} "
                f"(never-predicted convention '{cfg.train.never_predicted}')"
            )
        acc.wait_for_everyone()
        return result


def train(cfg: FinetuneConfig, resume: bool = False) -> dict[str, Any]:
    """Run one stage; returns the result dict (also written to ``<output>/result.json``)."""
    return Trainer(cfg).run(resume=resume)
