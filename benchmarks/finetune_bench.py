r"""Fine-tune tier speed: ``finetune/run.py`` against a plain PyTorch loop of the same model, at a size
where per-epoch costs are amortised, with a per-phase breakdown of run.py.

    python benchmarks/finetune_bench.py    # CPU, tiny backbone (~3-5 min on 2 cores)
    python benchmarks/finetune_bench.py --device cuda --mixed-precision bf16 --backbone passt \
        --clip-seconds 10

Data: ``--clips`` synthetic clips (default 1,000; 23 classes, tones + noise, 16 kHz 16-bit WAV,
durations uniform in [0.3, 1] × ``--clip-seconds``) written in the BSD layout into a temporary
folder; the clean set's ``cpjku`` split gives the training and validation parts. Both sides train
``--epochs`` epochs (default 3) with the same model, seed, batch (18), AdamW, schedule, loss,
clipping and precision, and validate after every epoch:

* **plain loop**: in this process; a standard ``DataLoader`` (shuffle, ``--workers`` workers,
  created once, workers restarted every epoch as PyTorch does by default, one thread per
  worker as in run.py), ``torch.autocast`` +
  ``GradScaler`` for fp16, validation on a second ``DataLoader``, the best weights kept with
  ``torch.save`` — what a hand-written fine-tuning script does, without resumable states or logs;
* **run.py**: ``python finetune/run.py`` in a subprocess with its defaults (training states,
  best weights, metrics.json, TensorBoard), its time per phase read from ``metrics.json`` and
  ``result.json``: train steps, data wait (first batch of an epoch separately), evaluation,
  training-state saving, best-weight saving, logging; set-up and the final prediction of every
  clip are reported apart (a plain script has them too, in other forms).

The comparison is the time of the epochs (training + validation + saving), as clips trained per
second; ``train only`` compares the training passes alone. The tiny backbone is the test/debug
backbone (``extract/backbones/tiny.py``) with ``--clip-seconds`` windows at 16 kHz; on a GPU use
``--backbone passt|m2d|beats`` (random init, 10 s windows; ``--clip-seconds 10``).
``FINETUNE_SYNC_TIMING=1`` is set for run.py on a GPU so its phases are attributed exactly.
Prints a table and writes JSON (default ``benchmarks/results/finetune_bench.json``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from finetune.launch_command import run_command, set_options  # noqa: E402

SAMPLE_RATE = 16000
PHASES = ("train_step", "data_first", "data_wait", "eval", "state_save", "best_weights", "logging")


def make_clips(root: Path, n: int, seconds: float, seed: int = 0) -> Path:
    """``n`` synthetic labelled clips in the BSD layout under ``root`` (23 classes, round robin)."""
    from cache.manifest import LABELLED_COLUMNS
    from cache.taxonomy import CLASSES

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(exist_ok=True)
    rows = []
    for k in range(n):
        c = CLASSES[k % len(CLASSES)]
        cid = str(100000 + k)
        t = np.arange(int(rng.uniform(0.3, 1.0) * seconds * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = 110.0 * (1 + CLASSES.index(c) % 12) * (1 + (k % 3) / 7)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "audio" / f"{cid}.wav", x.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        rows.append(
            {
                "sound_id": cid,
                "class": c,
                "class_idx": "",
                "class_top": c.split("-")[0],
                "confidence": "4",
                "uploader": "bench",
                "license": "CC0",
                "title": f"{c} {cid}",
                "tags": c,
                "description": c,
            }
        )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LABELLED_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    (root / "metadata" / "BENCH_metadata.csv").write_text(buf.getvalue())
    return root


def _one_thread(_: int) -> None:  # decoding workers must not compete with the training threads
    torch.set_num_threads(1)


def plain_loop(cfg, device: str, workers: int) -> dict:
    """The hand-written baseline; seconds of every epoch's training and validation (+ best-weight saving)."""
    from cache.metric import hierarchical_scores
    from finetune.data import ClipAudio, Collate
    from finetune.datasets import load_datasets
    from finetune.evaluate import model_inputs, to_device
    from finetune.model import build_model
    from heads.losses import class_frequency_weights, mixed_loss
    from heads.schedule import reference_schedule

    t_setup = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    data = load_datasets(cfg, log=lambda _m: None)
    model, _, _ = build_model(cfg, log=lambda _m: None)
    model.to(device).train()
    spec = model.backbone.spec
    t, bs, mp = cfg.train, cfg.train.batch_size, cfg.train.mixed_precision
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay
    )
    spe = -(-len(data.train) // bs)
    sched = reference_schedule(opt, spe, t.epochs, t.warmup_epochs, t.decay_start_epoch, t.final_lr)
    amp = device.startswith("cuda") and mp in ("bf16", "fp16")
    dtype = torch.bfloat16 if mp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and mp == "fp16")
    w = class_frequency_weights(data.train.labels).to(device)
    pin = device.startswith("cuda")

    def loader(clips, shuffle):
        return torch.utils.data.DataLoader(
            ClipAudio(clips, spec.sample_rate, spec.window_samples, spec.padding),
            batch_size=bs,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=pin,
            collate_fn=Collate(clips),
            generator=torch.Generator().manual_seed(t.seed),
            worker_init_fn=_one_thread if workers else None,
        )

    train_dl, val_dl = loader(data.train, True), loader(data.val, False)
    best, epochs = -1.0, []
    setup = time.perf_counter() - t_setup
    for _ in range(t.epochs):
        t0 = time.perf_counter()
        model.train()
        for batch in train_dl:
            b = to_device(batch, device)
            with torch.autocast("cuda", dtype=dtype, enabled=amp):
                logits = model(**model_inputs(b))
            loss = mixed_loss(logits.float(), b["labels"], w)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
            scaler.step(opt)
            scaler.update()
            sched.step()
        if pin:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        model.eval()
        preds = []
        with torch.no_grad():
            for batch in val_dl:
                with torch.autocast("cuda", dtype=dtype, enabled=amp):
                    preds.append(model(**model_inputs(to_device(batch, device))).float().argmax(1).cpu())
        hf = hierarchical_scores(data.val.labels, torch.cat(preds).numpy()).hF
        t2 = time.perf_counter()
        if hf > best:
            best = hf
            torch.save(copy.deepcopy(model.state_dict()), Path(cfg.output.dir) / "best.pt")
        t3 = time.perf_counter()
        epochs.append({"train": t1 - t0, "eval": t2 - t1, "best_weights": t3 - t2})
    return {
        "setup": setup,
        "epochs": epochs,
        "train_clips": len(data.train),
        "val_clips": len(data.val),
        "best_val_hF": best,
    }


def finetune_run(overrides: list[str], env_extra: dict) -> dict:
    """``python finetune/run.py --set ...`` in a subprocess; its per-epoch phases and run totals."""
    out = Path([a for a in overrides if a.startswith("output.dir=")][0].split("=", 1)[1])
    pp = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": pp, **env_extra}
    t0 = time.perf_counter()
    p = subprocess.run(
        run_command(set_options(overrides), 1), cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"finetune/run.py failed:\n{p.stderr[-4000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    result = json.loads((out / "result.json").read_text())
    return {
        "wall": wall,
        "epochs": metrics["phase_seconds"],
        "run": result["phase_seconds"],
        "train_clips": json.loads((out / "config.json").read_text())["facts"]["train_clips"],
        "best_val_hF": metrics["best_val_hF"],
    }


def summarise_plain(r: dict) -> dict:
    ep = r["epochs"]
    train = sum(e["train"] for e in ep)
    total = sum(e["train"] + e["eval"] + e["best_weights"] for e in ep)
    n = r["train_clips"] * len(ep)
    return {
        "epochs_s": total,
        "train_s": train,
        "clips_per_s": n / total,
        "train_clips_per_s": n / train,
        "phases": {
            "train_step+data": train,
            "eval": sum(e["eval"] for e in ep),
            "best_weights": sum(e["best_weights"] for e in ep),
        },
        "setup_s": r["setup"],
        "best_val_hF": r["best_val_hF"],
    }


def summarise_run(r: dict) -> dict:
    from finetune.output_folder import sum_phases

    phases = sum_phases(r["epochs"])
    train = sum(phases.get(k, 0.0) for k in ("train_step", "data_first", "data_wait"))
    total = r["run"]["epochs"]
    phases["other"] = total - sum(phases.values())
    n = r["train_clips"] * len(r["epochs"])
    return {
        "epochs_s": total,
        "train_s": train,
        "clips_per_s": n / total,
        "train_clips_per_s": n / train,
        "phases": phases,
        "setup_s": r["run"]["setup"],
        "finish_s": r["run"]["finish"],
        "wall_s": r["wall"],
        "best_val_hF": r["best_val_hF"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=1000, help="synthetic clips (train ≈ 64%%, validation 16%%)")
    ap.add_argument(
        "--clip-seconds",
        type=float,
        default=1.0,
        help="longest clip and the tiny backbone's window (s); 1.0 keeps a CPU run near 3-5 min",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    ap.add_argument("--backbone", default="tiny", help="tiny (CPU) or a real backbone with random init (GPU)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (both sides)")
    ap.add_argument(
        "--repeats", type=int, default=1, help="runs per side, interleaved; the fastest is reported"
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune_bench.json"))
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no GPU available", file=sys.stderr)
        return 2

    from finetune.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="ftbench-"))
    t0 = time.perf_counter()
    clean = make_clips(tmp / "clips", args.clips, args.clip_seconds)
    print(
        f"{args.clips} synthetic clips (≤ {args.clip_seconds:g} s) in {clean} "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    bb = [f"backbone.name={args.backbone}", "backbone.random_init=true"]
    if args.backbone == "tiny":
        bb.append(f"backbone.overrides={{sample_rate = {SAMPLE_RATE}, window_seconds = {args.clip_seconds}}}")
    common = [
        f"data.clean={clean}",
        "head.preset=no-prior",
        f"train.epochs={args.epochs}",
        "train.lr=1e-3",
        f"data.num_workers={args.workers}",
        "train.patience=100",
        "output.write_logits=false",
        f"train.mixed_precision={args.mixed_precision}",
        *bb,
    ]
    cores = os.cpu_count() or 2
    env = {"OMP_NUM_THREADS": str(cores)}
    if args.device == "cpu":
        env.update({"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""})
    else:
        env["FINETUNE_SYNC_TIMING"] = "1"
    plain_runs, ft_runs = [], []
    for r in range(args.repeats):
        torch.set_num_threads(cores)
        out = tmp / f"plain-{r}"
        out.mkdir()
        cfg = load_config(None, common + [f"output.dir={out}"])
        plain_runs.append(summarise_plain(plain_loop(cfg, args.device, args.workers)))
        print(f"  plain loop   run {r + 1}: {plain_runs[-1]['epochs_s']:.1f} s of epochs", flush=True)
        ft_runs.append(summarise_run(finetune_run(common + [f"output.dir={tmp / f'run-{r}'}"], env)))
        print(f"  run.py       run {r + 1}: {ft_runs[-1]['epochs_s']:.1f} s of epochs", flush=True)
    plain = min(plain_runs, key=lambda x: x["epochs_s"])
    ft = min(ft_runs, key=lambda x: x["epochs_s"])
    ratio = ft["clips_per_s"] / plain["clips_per_s"]
    train_ratio = ft["train_clips_per_s"] / plain["train_clips_per_s"]

    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {cores} cores"
    print(
        f"\nfine-tune benchmark: {args.backbone}, {args.clips} clips ≤ {args.clip_seconds:g} s, "
        f"{args.epochs} epochs, {dev}, mixed precision {args.mixed_precision}, {args.workers} workers, "
        f"best of {args.repeats}"
    )
    print("| side | epochs (s) | clips/s | train only clips/s | vs plain | vs plain, train only |")
    print("|---|---|---|---|---|---|")
    print(
        f"| plain loop | {plain['epochs_s']:.1f} | {plain['clips_per_s']:.1f} | "
        f"{plain['train_clips_per_s']:.1f} | — | — |"
    )
    print(
        f"| finetune/run.py | {ft['epochs_s']:.1f} | {ft['clips_per_s']:.1f} | "
        f"{ft['train_clips_per_s']:.1f} | {ratio:.2f}× | {train_ratio:.2f}× |"
    )
    print(
        "\nrun.py time per phase over the epochs (s): "
        + ", ".join(f"{k} {ft['phases'].get(k, 0.0):.2f}" for k in (*PHASES, "other"))
    )
    print("plain loop (s): " + ", ".join(f"{k} {v:.2f}" for k, v in plain["phases"].items()))
    print(
        f"outside the epochs: run.py set-up {ft['setup_s']:.1f} s, final prediction {ft['finish_s']:.1f} s, "
        f"process wall {ft['wall_s']:.1f} s; plain set-up {plain['setup_s']:.1f} s"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu_count": cores,
                    "platform": platform.platform(),
                    "torch": torch.__version__,
                    "device": dev,
                },
                "config": vars(args),
                "plain": plain,
                "run": ft,
                "vs_plain": ratio,
                "vs_plain_train_only": train_ratio,
                "repeats": {"plain": plain_runs, "run": ft_runs},
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
