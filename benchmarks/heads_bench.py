"""Head-tier benchmark on synthetic features (no data needed).

For each size (demo: 380 training clips × 128-d with the demo's 128-wide fused head; BSD10k:
10,956 clips × 1024 and × 4096 with the submitted head, hidden 2D):

1. trainer epoch vs a naive loop of the same model (``FusionHead`` + per-item ``DataLoader`` +
   ``torch.optim.AdamW`` + ``LambdaLR`` + ``clip_grad_norm_`` + per-epoch validation): ratio;
2. a K=20 vectorised search (``run_search``: stacked, in cache-sized groups on a CPU) vs 20
   sequential single runs of the same trainer: ratio (all 20 stacked at once is timed too);
3. the optimizer step's bytes/s (parameters r/w, gradients r, AdamW moments r/w: 28 bytes per
   parameter at float32) against this machine's copy bandwidth (bytes read + written);
4. a whole K=20 stage-1 search (``--search-sizes``: 384-d and 1024-d features, the stage-1 space,
   ≤ 30 epochs, patience 10) on a synthetic task with a known answer
   (``testkit.synthetic_heads.fusion_task``: the Bayes-optimal classifier's validation hF is
   printed next to the searches'), three ways: ``before`` (the former trainer: early-stopped
   configurations stay in the stack until the last one stops), ``after`` (they leave it) and
   ``halving`` (successive halving, first rung ``--rung-epochs``). All K configurations are stacked
   at once (as on a GPU; ``--search-stack`` changes it). The default runs the 384-d search on a
   twentieth of BSD10k's 10,956 clips (``--search-clips``, ``--search-sizes``), a few minutes on 2
   busy CPU cores; ``--full-search`` runs all clips at both widths (hours on 2 CPU cores, minutes on
   a GPU). Besides seconds it counts configuration-epochs computed (stack rows × epochs), which
   does not depend on the machine.

``--device cuda`` runs the same comparisons on a GPU: features, heads and optimizer state live on
the GPU (``TrainConfig.device``), the naive loop keeps its dataset in CPU memory and moves every
batch to the GPU, the copy bandwidth is a device-to-device copy, and every clock is read after
``torch.cuda.synchronize()``. The K-configuration search stacks all K on a GPU.

At BSD10k sizes a full epoch takes minutes on a CPU, so every timed "epoch" is truncated to
``--steps`` updates (plus a validation pass over a quarter as many clips, the 64/16 ratio) and the
full-epoch time is extrapolated from it; both sides of every ratio use the same truncation. Each
run's one-off set-up (building heads, optimizer state) is timed alone (0 epochs) and subtracted.
Timings are the best of ``--repeats`` interleaved runs (the machine may be shared).

    python benchmarks/heads_bench.py                 # all sizes
    python benchmarks/heads_bench.py --sizes demo    # quick
    python benchmarks/heads_bench.py --device cuda --steps 100 --out /tmp/heads_bench_cuda.json
    python benchmarks/heads_bench.py --sizes '' --full-search   # only the search, at BSD10k size
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # testkit/ is a top-level folder of the checkout, not an installed package

from cache.metric import hierarchical_scores  # noqa: E402
from cache.taxonomy import NUM_CLASSES  # noqa: E402
from heads.batched_adamw import BatchedAdamW  # noqa: E402
from heads.losses import class_frequency_weights  # noqa: E402
from heads.model import FusionHead  # noqa: E402
from heads.schedule import reference_schedule  # noqa: E402
from heads.search import SearchSpace, auto_stack, ranking, run_search, sample_configs  # noqa: E402
from heads.stacked import StackedHeads  # noqa: E402
from heads.training import TrainConfig, train_stacked  # noqa: E402
from testkit.synthetic_heads import fusion_task, synthetic_data  # noqa: E402

SIZES = {
    # name: (n_total, dim, hidden, full-epoch training clips)
    "demo": (596, 128, 128, 380),
    "bsd10k-1024": (10956, 1024, None, 7011),
    "bsd10k-4096": (10956, 4096, None, 7011),
}


DEVICE = torch.device("cpu")  # set by main() from --device


def sync() -> None:
    """Wait for queued GPU work, so a clock read after it covers the work (no-op on a CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def best_of(fns: dict, repeats: int) -> dict:
    """Run each callable ``repeats`` times, interleaved; best wall time of each."""
    out = {k: math.inf for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            out[k] = min(out[k], time.perf_counter() - t)
    return out


class ClipDataset(Dataset):
    """The usual map-style dataset: one dict of tensors per clip, built from numpy arrays."""

    def __init__(self, data):
        self.X, self.prior = data.X.numpy(), data.prior.numpy()
        self.missing, self.labels = data.missing.numpy(), data.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "h": torch.from_numpy(self.X[i]),
            "prior": torch.from_numpy(self.prior[i]),
            "missing": torch.tensor(bool(self.missing[i])),
            "label": int(self.labels[i]),
        }


def naive_run(cfg: TrainConfig, train, val, dim: int, epochs: int, style: str = "dict") -> None:
    """The obvious loop: nn.Module head, per-item DataLoader (``dict``: a map-style dataset of
    per-clip dicts over numpy arrays; ``tensor``: TensorDataset), torch AdamW, LambdaLR, gradient
    clipping and a validation pass per epoch. The datasets stay in CPU memory; on a GPU every
    batch is moved to it (``.to(device)``), as a plain training loop does."""
    torch.manual_seed(cfg.seed)
    dev = DEVICE
    head = FusionHead(dim, NUM_CLASSES, **cfg.head_kwargs()).to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if style == "dict":
        loader = DataLoader(ClipDataset(train), batch_size=cfg.batch_size, shuffle=True)
        val_loader = DataLoader(ClipDataset(val), batch_size=256)
        unpack = lambda b: (b["h"], b["prior"], b["missing"], b["label"])  # noqa: E731
    else:
        loader = DataLoader(
            TensorDataset(train.X, train.prior, train.missing, train.labels),
            batch_size=cfg.batch_size,
            shuffle=True,
        )
        val_loader = DataLoader(TensorDataset(val.X, val.prior, val.missing, val.labels), batch_size=256)
        unpack = lambda b: b  # noqa: E731
    sched = reference_schedule(opt, max(len(loader), 1), max(epochs, 1))
    w = class_frequency_weights(train.labels).to(dev)
    for _ in range(epochs):
        head.train()
        for batch in loader:
            x, q, m, y = (t.to(dev) for t in unpack(batch))
            loss = F.cross_entropy(head(x, q, m), y, weight=w)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
        head.eval()
        with torch.no_grad():
            preds = []
            for batch in val_loader:
                x, q, m, _ = unpack(batch)
                preds.append(head(x.to(dev), q.to(dev), m.to(dev)).argmax(1))
        hierarchical_scores(val.labels.numpy(), torch.cat(preds).cpu().numpy())


def copy_bandwidth(n_bytes: int = 1 << 28, repeats: int = 5) -> float:
    """Bytes moved per second (read + write) by a large tensor copy: the best of one thread and
    all threads, so the floor is the machine's, not the thread setting's. On a GPU: a
    device-to-device copy of 1 GiB (reads + writes counted)."""
    if DEVICE.type == "cuda":
        a = torch.empty(max(n_bytes, 1 << 30) // 4, device=DEVICE).uniform_()
        b = torch.empty_like(a)
        b.copy_(a)
        t = best_of({"copy": lambda: b.copy_(a)}, repeats * 2)["copy"]
        del a, b
        torch.cuda.empty_cache()
        return 2 * (max(n_bytes, 1 << 30) // 4) * 4 / t
    a = torch.empty(n_bytes // 4).uniform_()
    b = torch.empty_like(a)
    threads = torch.get_num_threads()
    best = 0.0
    for n in sorted({1, threads, torch.get_num_interop_threads(), __import__("os").cpu_count() or 1}):
        torch.set_num_threads(n)
        b.copy_(a)
        t = best_of({"copy": lambda: b.copy_(a)}, repeats)["copy"]
        best = max(best, 2 * a.numel() * 4 / t)
    torch.set_num_threads(threads)
    return best


def optimizer_step(dim: int, hidden, k: int = 1, repeats: int = 5) -> dict:
    """Seconds per BatchedAdamW step and its bytes/s for K heads of the submitted preset."""
    torch.manual_seed(0)
    heads = [FusionHead(dim, preset="submitted", hidden=hidden) for _ in range(k)]
    st = StackedHeads.from_heads(heads, DEVICE)
    opt = BatchedAdamW(st.params, [1e-3] * k)
    grads = [torch.randn_like(p) for p in st.params.values()]
    opt.set_grads(grads)
    opt.step()
    t = best_of({"step": opt.step}, repeats)["step"]
    n = sum(p.numel() for p in st.params.values())
    return {"params": n, "seconds": t, "bytes": 28 * n, "bytes_per_s": 28 * n / t, "fused": bool(opt.fused)}


def bench_size(
    name: str, steps: int, k: int, repeats: int, skip_search_above: float, epochs: int = 5
) -> dict:
    n_total, dim, hidden, n_train_full = SIZES[name]
    full_steps = math.ceil(n_train_full / 18)
    truncated = name != "demo"
    n_train = steps * 18 if truncated else n_train_full
    n_val = max(18, n_train // 4)
    train = synthetic_data(n_train, dim=dim, signal="both", seed=0)
    val = synthetic_data(n_val, dim=dim, signal="both", seed=1)
    E = epochs if not truncated else 1
    base = TrainConfig(epochs=E, hidden=hidden, device=str(DEVICE), lr=1e-3, patience=100)
    # the trainer's inputs already on the device (its .to(device) is then a no-op); the naive
    # loops keep CPU copies and move each batch
    dtrain, dval = train.to(DEVICE), val.to(DEVICE)
    scale = (full_steps / steps if truncated else 1.0) / E
    res = {
        "size": name,
        "truncated": truncated,
        "n_total": n_total,
        "dim": dim,
        "hidden": hidden or 2 * dim,
        "steps_timed": n_train // 18 + (n_train % 18 > 0),
        "full_epoch_steps": full_steps,
        "extrapolation_factor": scale,
    }
    head_params = FusionHead(dim, preset="submitted", hidden=hidden).n_parameters()
    res["head_parameters"] = head_params
    zero = dataclasses.replace(base, epochs=0)
    t = best_of(
        {
            "trainer": lambda: train_stacked([base], dtrain, dval),
            "naive": lambda: naive_run(base, train, val, dim, E, "dict"),
            "naive_tensordataset": lambda: naive_run(base, train, val, dim, E, "tensor"),
        },
        repeats,
    )
    # set-up (building and stacking the heads, optimizer state) is paid once per run, not per
    # epoch: time it alone and leave it out of the per-epoch figures
    t0 = best_of(
        {
            "trainer": lambda: train_stacked([zero], dtrain, dval),
            "naive": lambda: naive_run(zero, train, val, dim, 0, "dict"),
            "naive_tensordataset": lambda: naive_run(zero, train, val, dim, 0, "tensor"),
        },
        repeats,
    )
    net = {k: v - t0[k] for k, v in t.items()}
    # when the one-off set-up is nearly the whole run (a 100 M-parameter head on a GPU), the
    # difference is noise: keep the set-up in both sides' times instead (a conservative ratio)
    res["setup_subtracted"] = all(net[k] > 0.1 * t[k] for k in t)
    t = net if res["setup_subtracted"] else t
    res["epochs_timed"] = E
    res["setup_s"] = t0
    res["epoch_s"] = {k: v * scale for k, v in t.items()}
    res["epoch_speedup"] = t["naive"] / t["trainer"]
    res["epoch_speedup_tensordataset"] = t["naive_tensordataset"] / t["trainer"]
    search_params = k * head_params
    if search_params * 16 * 4 > skip_search_above:
        res["search"] = f"skipped: {k} stacked heads need ~{search_params * 16 * 4 / 2**30:.0f} GiB"
    else:
        cfgs = [dataclasses.replace(base, seed=i, lr=1e-3 * (1 + i / k)) for i in range(k)]
        zcfgs = [dataclasses.replace(c, epochs=0) for c in cfgs]
        stack = auto_stack(base, dim) or k
        res["search_stack"] = min(stack, k)
        fns = {
            "vectorised": lambda: run_search(cfgs, dtrain, dval),
            "all_stacked": lambda: train_stacked(cfgs, dtrain, dval),
            "sequential": lambda: [train_stacked([c], dtrain, dval) for c in cfgs],
        }
        zfns = {
            "vectorised": lambda: run_search(zcfgs, dtrain, dval),
            "all_stacked": lambda: train_stacked(zcfgs, dtrain, dval),
            "sequential": lambda: [train_stacked([c], dtrain, dval) for c in zcfgs],
        }
        if stack >= k:  # run_search stacks all k at once (on a GPU): the same run as all_stacked
            del fns["vectorised"], zfns["vectorised"]
        ts = best_of(fns, max(1, repeats - 1))
        ts0 = best_of(zfns, max(1, repeats - 1))
        ts.setdefault("vectorised", ts["all_stacked"])
        ts0.setdefault("vectorised", ts0["all_stacked"])
        res["search_setup_s"] = ts0
        ts = {k: max(v - ts0[k], 1e-9) for k, v in ts.items()}
        res["search_s"] = {
            "vectorised": ts["vectorised"] * scale,
            "all_stacked": ts["all_stacked"] * scale,
            "sequential": ts["sequential"] * scale,
            "naive_sequential_estimate": k * t["naive"] * scale,
        }
        res["search_speedup"] = ts["sequential"] / ts["vectorised"]
        res["search_speedup_vs_naive"] = k * t["naive"] / ts["vectorised"]
    res["optimizer"] = optimizer_step(dim, hidden, 1, repeats)
    if DEVICE.type == "cuda":
        res["gpu_peak_memory_bytes"] = torch.cuda.max_memory_allocated(DEVICE)
        torch.cuda.empty_cache()
    return res


SEARCH_DIMS = {"bsd10k-384": 384, "bsd10k-1024": 1024}


def search_summary(results, seconds: float, oracle_hf: float, stack: int) -> dict:
    """Time, best validation hF and work of one search (configuration-epochs computed: each
    stack's rows × its epochs, from the ``stacked`` column of the histories)."""
    best = ranking(results)[0]
    computed = 0
    for lo in range(0, len(results), stack):
        group = results[lo : lo + stack]
        for e in range(max(len(r.history) for r in group)):
            computed += max(r.history[e]["stacked"] for r in group if len(r.history) > e)
    return {
        "seconds": seconds,
        "best_val_hF": results[best].best_val.get("hF"),
        "best_config": best,
        "best_lr": results[best].config.lr,
        "best_epoch": results[best].best_epoch,
        "gap_to_oracle": oracle_hf - results[best].best_val.get("hF", float("nan")),
        "config_epochs_trained": sum(len(r.history) for r in results),
        "config_epochs_computed": computed,
        "epochs_trained": [len(r.history) for r in results],
        "stopped_by": [r.stopped_by for r in results],
    }


def bench_search(
    name: str, clips: int, k: int, epochs: int, patience: int, rung_epochs: int, stack: int
) -> dict:
    """A K-configuration stage-1 search before / after / with successive halving (see the module doc)."""
    dim = SEARCH_DIMS[name]
    n_train, n_val = round(0.64 * clips), round(0.16 * clips)  # the cpjku split's 64/16/20
    train, val, oracle = fusion_task(n_train, n_val, dim, seed=0)
    oracle_hf = hierarchical_scores(val.labels.numpy(), oracle).hF
    base = TrainConfig(epochs=epochs, patience=patience, device=str(DEVICE))
    configs = sample_configs(base, SearchSpace(k=k, seed=0))
    stack = stack or auto_stack(base, dim) or k
    dtrain, dval = train.to(DEVICE), val.to(DEVICE)
    res = {
        "size": name,
        "clips": clips,
        "n_train": n_train,
        "n_val": n_val,
        "dim": dim,
        "k": k,
        "epochs": epochs,
        "patience": patience,
        "rung_epochs": rung_epochs,
        "stack": stack,
        "oracle_val_hF": oracle_hf,
        "head_parameters": FusionHead(dim, preset="submitted").n_parameters(),
    }
    runs = {
        "before": lambda: [
            r
            for lo in range(0, k, stack)
            for r in train_stacked(configs[lo : lo + stack], dtrain, dval, shrink=False)
        ],
        "after": lambda: run_search(configs, dtrain, dval, max_stack=stack),
        "halving": lambda: run_search(
            configs, dtrain, dval, max_stack=stack, halving=True, rung_epochs=rung_epochs
        ),
    }
    for variant, fn in runs.items():
        sync()
        t = time.perf_counter()
        results = fn()
        sync()
        res[variant] = search_summary(results, time.perf_counter() - t, oracle_hf, stack)
        print(
            f"  {name} {variant}: {res[variant]['seconds']:.1f} s, "
            f"best val hF {res[variant]['best_val_hF']:.4f}",
            flush=True,
        )
    b = res["before"]
    res["same_results_before_after"] = (
        res["after"]["best_val_hF"] == b["best_val_hF"]
        and res["after"]["epochs_trained"] == b["epochs_trained"]
    )
    for v in ("after", "halving"):
        res[v]["speedup"] = b["seconds"] / res[v]["seconds"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="demo,bsd10k-1024,bsd10k-4096")
    ap.add_argument("--steps", type=int, default=20, help="updates per timed epoch at BSD10k sizes")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument(
        "--epochs", type=int, default=5, help="epochs per timed run at the demo size (time / epochs)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument(
        "--max-search-bytes",
        type=float,
        default=None,
        help="skip the search above this estimated memory (default: 12 GiB on CPU, 60%% of the GPU's)",
    )
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where features, heads and optimizer state live (auto = cuda if available)",
    )
    ap.add_argument(
        "--search-sizes",
        default="bsd10k-384",
        help="whole-search comparison (before / after / halving) at these widths ('' = skip; "
        "bsd10k-384, bsd10k-1024)",
    )
    ap.add_argument(
        "--search-clips", type=int, default=548, help="clips of the search task (64%% train, 16%% val)"
    )
    ap.add_argument(
        "--full-search",
        action="store_true",
        help="the search at BSD10k's full 10,956 clips and both widths (hours on 2 CPU cores)",
    )
    ap.add_argument("--search-epochs", type=int, default=30)
    ap.add_argument("--search-patience", type=int, default=10)
    ap.add_argument("--rung-epochs", type=int, default=2, help="first rung of successive halving")
    ap.add_argument(
        "--search-stack",
        type=int,
        default=-1,
        help="configurations stacked at once in the search comparison (-1 = all K, 0 = auto as run_search)",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "heads_bench.json"))
    args = ap.parse_args()
    if args.full_search:
        args.search_clips, args.search_sizes = 10956, "bsd10k-384,bsd10k-1024"
    if args.threads:
        torch.set_num_threads(args.threads)
    global DEVICE
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    DEVICE = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    gpu = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None
    if args.max_search_bytes is None:
        args.max_search_bytes = (
            0.6 * torch.cuda.get_device_properties(DEVICE).total_memory if gpu else 12 * 2**30
        )
    bw = copy_bandwidth()
    rows = []
    targets = {
        "demo_epoch_speedup": ">= 5",
        "demo_search_speedup": ">= 3",
        "bsd10k_optimizer_floor_ratio": "<= 1.5",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every size, so a run cut short by a time limit keeps what it measured
        out.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "processor": platform.processor(),
                    "device": str(DEVICE),
                    "gpu": gpu,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "copy_bytes_per_s": bw,
                    "k": args.k,
                    "steps": args.steps,
                    "targets": targets,
                    "results": rows,
                    "search": searches,
                },
                indent=1,
            )
        )

    searches: list[dict] = []
    for name in [n.strip() for n in args.sizes.split(",") if n.strip()]:
        r = bench_size(name.strip(), args.steps, args.k, args.repeats, args.max_search_bytes, args.epochs)
        r["optimizer"]["copy_bytes_per_s"] = bw
        r["optimizer"]["floor_ratio"] = bw / r["optimizer"]["bytes_per_s"]
        rows.append(r)
        save()
        print(f"done {name}", flush=True)
    for name in [n.strip() for n in args.search_sizes.split(",") if n.strip()]:
        searches.append(
            bench_search(
                name,
                args.search_clips,
                args.k,
                args.search_epochs,
                args.search_patience,
                args.rung_epochs,
                args.k if args.search_stack < 0 else args.search_stack,
            )
        )
        save()
    where = f"GPU {gpu}" if gpu else f"{torch.get_num_threads()} threads"
    print(f"\nhead-tier benchmark · torch {torch.__version__} · {where} · copy bandwidth {bw / 1e9:.1f} GB/s")
    print(
        "| size | head params | epoch trainer (s) | naive dict-Dataset (s) | ratio "
        "| naive TensorDataset (s) | ratio "
        f"| search K={args.k:d} vec (s) | sequential (s) | ratio | opt step (ms) | opt GB/s | copy/opt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    k = args.k
    for r in rows:
        s = r.get("search_s")
        o = r["optimizer"]
        srch = (
            f"{s['vectorised']:.2f} (stacks of {r['search_stack']}; all {k}: {s['all_stacked']:.2f}) | "
            f"{s['sequential']:.2f} | {r['search_speedup']:.1f}× "
            f"({r['search_speedup_vs_naive']:.1f}× vs {k} naive)"
            if s
            else f"{r['search']} | — | —"
        )
        print(
            f"| {r['size']} ({r['dim']}-d{', extrapolated' if r['truncated'] else ''}) | "
            f"{r['head_parameters']:,} | {r['epoch_s']['trainer']:.3f} | {r['epoch_s']['naive']:.3f} | "
            f"{r['epoch_speedup']:.1f}× | {r['epoch_s']['naive_tensordataset']:.3f} | "
            f"{r['epoch_speedup_tensordataset']:.1f}× | {srch} | {o['seconds'] * 1e3:.1f} | "
            f"{o['bytes_per_s'] / 1e9:.1f} | "
            f"{o['floor_ratio']:.2f} |"
        )
    print("targets on CPU: " + ", ".join(f"{k} {v}" for k, v in targets.items()))
    if searches:
        print(
            f"\nK = {args.k} stage-1 search (≤ {args.search_epochs} epochs, "
            f"patience {args.search_patience}) on a "
            f"synthetic task with a known answer; halving: first rung {args.rung_epochs} epochs"
        )
        print(
            "| size | clips (train/val) | stack | oracle val hF | before: s, hF, config-epochs "
            "| after: s, hF, config-epochs, speed-up | halving: s, hF, config-epochs, speed-up |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in searches:

            def cell(v, r=r):
                return (
                    f"{r[v]['seconds']:.1f} s, {r[v]['best_val_hF']:.4f}, {r[v]['config_epochs_computed']}"
                    + (f", {r[v]['speedup']:.2f}×" if v != "before" else "")
                )

            print(
                f"| {r['size']} ({r['dim']}-d) | {r['clips']} ({r['n_train']}/{r['n_val']}) | {r['stack']} | "
                f"{r['oracle_val_hF']:.4f} | {cell('before')} | {cell('after')} | {cell('halving')} |"
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
