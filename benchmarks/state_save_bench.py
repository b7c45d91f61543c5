r"""Training-state saving at real size: how long ``finetune/run.py``'s training thread is blocked.

    python benchmarks/state_save_bench.py                    # CPU, PaSST-sized state
    python benchmarks/state_save_bench.py --device cuda      # on a GPU

A fine-tuning run saves its training state (model, AdamW moments, schedule, RNG states) after
every epoch and every ``train.checkpoint_every`` updates. For PaSST that is ~86 M parameters,
i.e. ~1 GB with the two AdamW moments. This bench builds the real backbone (random init, no
download) with a linear head, allocates the AdamW state with one update, and times
``finetune.checkpointing.StateFolders.save`` into a temporary folder:

* **foreground**: ``background=False`` — the training thread writes the file itself (what every
  save cost before states were written in the background);
* **background**: ``background=True`` — the training thread's share (copy to host memory, gather of
  the RNG states), then how long the write went on after ``save`` returned (``wait``).

One ``StateFolders`` per mode saves ``1 + --repeats`` times, as in a run: the first save also
allocates (and on a GPU pins) the host buffers that later saves reuse; it is reported apart.

Prints a table and writes JSON (default ``benchmarks/results/state_save_bench.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(backbone: str, device: str):
    from accelerate import Accelerator

    from extract.backbones import BackboneConfig, build_backbone

    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(name=backbone, random_init=True))
    dim = net.spec.audio_dim
    model = torch.nn.ModuleDict({"backbone": net, "head": torch.nn.Linear(dim, 23)}).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    for p in params:  # one update allocates both moments, as after the first training step
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    acc = Accelerator(cpu=device == "cpu")
    model, opt = acc.prepare(model, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return acc, model, opt, sched, sum(p.numel() for p in params)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="passt")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where the states are written (default: a temporary folder)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "state_save_bench.json"))
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no GPU available", file=sys.stderr)
        return 2
    from finetune.checkpointing import STATE_FILE, StateFolders, TrainState

    acc, model, opt, sched, n_params = build(args.backbone, args.device)
    root = Path(tempfile.mkdtemp(prefix="statebench-", dir=args.dir))
    rows: dict[str, list[dict]] = {"foreground": [], "background": []}
    folders = {m: StateFolders(root / m, acc, background=m == "background") for m in rows}
    try:
        for _ in range(1 + args.repeats):  # the first save of a run also allocates the host buffers
            for mode in rows:
                sync(args.device)
                t0 = time.perf_counter()
                folders[mode].save({"global_step": 0}, model, opt, [sched, TrainState()])
                t1 = time.perf_counter()
                folders[mode].wait()
                t2 = time.perf_counter()
                size = (root / mode / "last" / STATE_FILE).stat().st_size
                rows[mode].append({"blocked_s": t1 - t0, "wait_s": t2 - t1, "bytes": size})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = {m: min(r[1:], key=lambda x: x["blocked_s"]) for m, r in rows.items()}
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    result = {
        "machine": platform.platform(),
        "device": gpu or "cpu",
        "backbone": args.backbone,
        "parameters": n_params,
        "state_bytes": best["foreground"]["bytes"],
        "runs": rows,
        "best": best,
        "blocked_ratio": best["foreground"]["blocked_s"] / max(1e-9, best["background"]["blocked_s"]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"state-save benchmark: {args.backbone}, {n_params / 1e6:.1f} M trainable parameters, "
        f"state file {best['foreground']['bytes'] / 2**30:.2f} GiB, device {gpu or 'cpu'} "
        f"(best of {args.repeats} saves after the first)"
    )
    print("| save | training thread blocked (s) | write after save returned (s) | first save blocked (s) |")
    print("|---|---|---|---|")
    for m, b in best.items():
        print(f"| {m} | {b['blocked_s']:.2f} | {b['wait_s']:.2f} | {rows[m][0]['blocked_s']:.2f} |")
    print(f"blocked time: {result['blocked_ratio']:.1f}x less with background writes; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
