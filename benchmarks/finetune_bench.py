"""Fine-tune tier throughput: steps/s and clips/s of finetune/run.py vs a plain single-process loop.

    python benchmarks/finetune_bench.py [--scale 0.4] [--epochs 2] [--workers 2] [--skip-gpu] [--out FILE]
    python benchmarks/finetune_bench.py --skip-cpu --scale 0.15 --epochs 2 --repeats 1   # GPU part only

CPU part (always): the tiny backbone (10 s windows at 16 kHz) on demo data generated in a
temporary folder (``demo.data``): the plain loop (audio decoded in the main process,
one process, no Accelerate) against ``python finetune/run.py`` (DataLoader workers) and
``accelerate launch --multi_gpu --num_processes 2`` on the CPU. GPU part (when CUDA is
available and ``--skip-gpu`` is not given): randomly initialised PaSST and M2D on one GPU,
``finetune/run.py`` with bf16 and fp16 against the plain loop in float32 on the same GPU.
Speeds are taken from the last (warm) training epoch; evaluation is not timed. ``--skip-cpu``
leaves out the CPU part; ``--gpu-backbones`` picks the GPU backbones. A GPU backbone that fails
(e.g. ``hear21passt`` not installed) is reported as a note and the others still run. Prints a
table and writes JSON (default ``benchmarks/results/finetune_bench.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from finetune.launch_command import run_command, set_options  # noqa: E402


def plain_loop(cfg, epochs: int, device: str) -> dict:
    """The naive baseline: same model, loss and optimizer; audio read in the main process, batch after batch."""
    from extract.audio import AudioDecodeError, load_audio
    from extract.windowing import split_windows
    from finetune.model import build_model
    from finetune.trainer import load_datasets
    from heads.losses import class_frequency_weights, mixed_loss

    torch.manual_seed(cfg.train.seed)
    data = load_datasets(cfg, log=lambda _m: None)
    model, _, _ = build_model(cfg, log=lambda _m: None)
    model.to(device).train()
    spec = model.backbone.spec
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, weight_decay=0.01)
    train = data.train
    w = class_frequency_weights(train.labels).to(device)
    speeds = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(train))
        t0, steps = time.perf_counter(), 0
        for s in range(0, len(order), cfg.train.batch_size):
            idx = order[s:s + cfg.train.batch_size]
            parts = []
            for i in idx:
                try:
                    wave = load_audio(train.paths[i], spec.sample_rate)
                except AudioDecodeError:
                    wave = torch.zeros(spec.window_samples)
                parts.append(split_windows(wave, spec.window_samples, spec.padding))
            windows = torch.cat([p[0] for p in parts]).to(device)
            lengths = torch.cat([p[1] for p in parts]).to(device)
            cow = torch.cat([torch.full((len(p[1]),), k) for k, p in enumerate(parts)]).to(device)
            prior = torch.from_numpy(train.prior[idx]).to(device) if train.prior is not None else None
            missing = torch.from_numpy(train.prior_missing[idx]).to(device)
            logits = model(windows, lengths, cow, len(idx), prior, missing, None)
            loss = mixed_loss(logits, torch.from_numpy(train.labels[idx]).to(device), w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        speeds.append({"steps_per_s": steps / dt, "samples_per_s": len(order) / dt})
    return speeds[-1]


def finetune_run(overrides: list[str], processes: int, env_extra: dict | None = None) -> dict:
    """Launch finetune/run.py with ``--set`` ``overrides``; speed of its last epoch from metrics.json."""
    out = Path([a for a in overrides if a.startswith("output.dir=")][0].split("=", 1)[1])
    # the repository need not be installed: put its root on the child's import path
    pp = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": pp, **(env_extra or {})}
    cmd = run_command(set_options(overrides), processes)
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-4000:]}")
    history = json.loads((out / "metrics.json").read_text())["history"]
    last = history[-1]
    steps = last["updates"] - (history[-2]["updates"] if len(history) > 1 else 0)
    return {"steps_per_s": steps / last["seconds"], "samples_per_s": last["samples_per_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.4,
                    help="demo data scale (0.4 ≈ 230 clean clips; 0.25 = 150, the smallest the split accepts)")
    ap.add_argument("--max-duration", type=float, default=12.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row, interleaved; the fastest is reported")
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true", help="leave out the CPU part (tiny backbone)")
    ap.add_argument("--gpu-backbones", default="passt,m2d", help="comma-separated backbones for the GPU part")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune_bench.json"))
    args = ap.parse_args(argv)

    from demo.data import CLEAN, generate_demo
    from finetune.config import FinetuneConfig, load_config

    tmp = Path(tempfile.mkdtemp(prefix="ftbench-"))
    print(f"work folder {tmp}", flush=True)
    generate_demo(tmp / "demo", seed=0, scale=args.scale, max_duration=args.max_duration)
    clean = tmp / "demo" / CLEAN
    common = [f"data.clean={clean}", "head.preset=no-prior", f"train.epochs={args.epochs}", "train.lr=1e-3",
              "output.write_logits=false", "output.tensorboard=false", f"data.num_workers={args.workers}",
              "train.checkpoint_every=0", "train.patience=100"]
    rows = []
    notes: list[str] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row, so a run cut short by a time limit keeps what it measured
        out.write_text(json.dumps({"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                               "torch": torch.__version__,
                                               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                                   "config": vars(args), "rows": rows, "notes": notes}, indent=1))

    def cfg_of(extra: list[str]) -> FinetuneConfig:
        return load_config(None, common + extra + [f"output.dir={tmp / 'plain'}"])

    def add(name, device, processes, mp, speeds, base=None):
        speed = max(speeds, key=lambda s: s["samples_per_s"])  # best of the repeats (a shared, noisy machine)
        row = {"name": name, "device": device, "processes": processes, "mixed_precision": mp, **speed,
               "vs_plain": None if base is None else speed["samples_per_s"] / base["samples_per_s"],
               "repeats": speeds}
        rows.append(row)
        save()
        print(f"  {name:34s} {device:5s} procs {processes} {mp:4s} {speed['steps_per_s']:7.2f} steps/s "
              f"{speed['samples_per_s']:8.1f} clips/s" + ("" if base is None else f"  ×{row['vs_plain']:.2f} vs plain"),
              flush=True)

    tiny = ["backbone.name=tiny", "backbone.random_init=true"]
    cores = os.cpu_count() or 2
    if not args.skip_cpu:
        print(f"CPU: {cores} cores, torch {torch.__version__}, data {clean} (scale {args.scale}), best of {args.repeats}",
              flush=True)
        cpu_env = {"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""}
        speeds: dict[str, list[dict]] = {"plain": [], "cpu1": [], "cpu2": []}
        for r in range(args.repeats):  # interleaved, so load from other work spreads over all rows
            torch.set_num_threads(cores)
            speeds["plain"].append(plain_loop(cfg_of(tiny), args.epochs, "cpu"))
            for procs in (1, 2):
                env = {**cpu_env, "OMP_NUM_THREADS": str(max(1, cores // procs))}
                speeds[f"cpu{procs}"].append(finetune_run(
                    common + tiny + ["train.mixed_precision=no", f"output.dir={tmp / f'cpu{procs}-{r}'}"], procs, env))
        add("tiny: plain loop", "cpu", 1, "no", speeds["plain"])
        base = rows[-1]
        for procs in (1, 2):
            add("tiny: finetune/run.py", "cpu", procs, "no", speeds[f"cpu{procs}"], base)
    else:
        print("  (--skip-cpu: CPU rows skipped)", flush=True)

    if torch.cuda.is_available() and not args.skip_gpu:
        print(f"GPU: {torch.cuda.get_device_name(0)}, data {clean} (scale {args.scale}), {args.epochs} epochs, "
              f"best of {args.repeats}", flush=True)
        for name in [b.strip() for b in args.gpu_backbones.split(",") if b.strip()]:
            bb = [f"backbone.name={name}", "backbone.random_init=true"]
            try:
                add(f"{name}: plain loop (fp32)", "cuda", 1, "no",
                    [plain_loop(cfg_of(bb), args.epochs, "cuda") for _ in range(args.repeats)])
                gbase = rows[-1]
                for mp in ("bf16", "fp16"):
                    sps = [finetune_run(common + bb + [f"train.mixed_precision={mp}",
                                                       f"output.dir={tmp / f'{name}-{mp}-{r}'}"], 1)
                           for r in range(args.repeats)]
                    add(f"{name}: finetune/run.py", "cuda", 1, mp, sps, gbase)
            except Exception as e:  # one backbone failing (missing package, OOM) leaves the others
                msg = f"{name} GPU rows failed: {type(e).__name__}: {str(e)[-1500:]}"
                notes.append(msg)
                save()
                print("  " + msg, flush=True)
            finally:
                torch.cuda.empty_cache()
    else:
        print("  (no GPU or --skip-gpu: PaSST/M2D rows skipped)")

    save()
    print(f"wrote {out}")
    return 1 if notes and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
