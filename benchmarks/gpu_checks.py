"""Quick correctness checks on a GPU (the heads tests pin ``device="cpu"``, so these run instead).

    python benchmarks/gpu_checks.py [--device auto|cuda|cpu] [--parts heads,backbones,precision] [--out FILE]

``heads`` (on the device): BatchedAdamW with clipping against ``torch.optim.AdamW``; the
hand-written gradients against autograd; a head learns from the prior (val hF > 0.8); a K=4
stacked search against the four single runs (weights allclose 1e-4, same best epochs), also in
stacks of 2; ``predict_logits`` on the device against the CPU.
``backbones``: BEATs, M2D and PaSST built randomly initialised, forward passes on 10 s windows
(one full, one half-length) in float32 and under bf16 and fp16 autocast; relative error
``‖a − b‖ / ‖a‖`` of the embeddings against float32 (and finite outputs).
``precision``: every audio backbone (tiny random-init configurations, as in
tests/extract/test_mixed_precision.py) on a full-scale tone at a quarter of its sample rate and
on near-silence, under fp16 and bf16 autocast on the device: finite embeddings, relative error to
float32 within 3e-3 (fp16) / 2e-2 (bf16), the bounds of the CPU test.
Prints PASS/FAIL lines and a table; writes JSON; exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

RESULTS: list[dict] = []


def record(name: str, ok: bool, **info) -> None:
    RESULTS.append({"check": name, "ok": bool(ok), **info})
    extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {extra}", flush=True)


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[n].detach().float().cpu() - b[n].detach().float().cpu()).abs().max()) for n in a)


# ------------------------------------------------------------------------------------------- heads
def check_heads(device: torch.device) -> None:
    from heads.batched_adamw import BatchedAdamW, clip_grad_norms_
    from heads.losses import item_weights, loss_targets, mixed_loss
    from heads.model import FusionHead
    from heads.search import SearchSpace, run_search, sample_configs
    from heads.stacked import StackedHeads
    from heads.training import TrainConfig, predict_logits, train_head
    from testkit.synthetic_heads import synthetic_data

    dev = str(device)

    def leaf_copies(st):
        return {n: v.detach().clone().requires_grad_(True) for n, v in st.params.items()}

    # 1. BatchedAdamW (fused kernel on the device) + per-configuration clipping vs torch.optim.AdamW
    torch.manual_seed(1)
    heads = [FusionHead(5, dropout=0.0) for _ in range(3)]
    refs = [FusionHead(5, dropout=0.0) for _ in range(3)]
    for r, h in zip(refs, heads, strict=True):
        r.load_state_dict(h.state_dict())
        r.to(device)
    lrs, wds = [1e-2, 3e-3, 1e-3], [0.01, 0.0, 0.1]
    st = StackedHeads.from_heads(heads, device)
    opt = BatchedAdamW(st.params, lrs, wds)
    ref_opts = [
        torch.optim.AdamW(r.parameters(), lr=lr, weight_decay=wd)
        for r, lr, wd in zip(refs, lrs, wds, strict=True)
    ]
    data = synthetic_data(9, dim=5, seed=2).to(device)
    names = list(st.params)
    for _ in range(4):
        leaf = leaf_copies(st)
        logits = st(data.X, data.prior, data.missing, params=leaf)
        loss = sum(torch.nn.functional.cross_entropy(logits[k], data.labels) for k in range(3))
        grads = list(torch.autograd.grad(loss, [leaf[n] for n in names]))
        clip_grad_norms_(grads, 0.5)
        opt.set_grads(grads)
        opt.step()
        for r, o in zip(refs, ref_opts, strict=True):
            o.zero_grad()
            torch.nn.functional.cross_entropy(r(data.X, data.prior, data.missing), data.labels).backward()
            torch.nn.utils.clip_grad_norm_(r.parameters(), 0.5)
            o.step()
    d = max(
        max_diff({n: st.params[n][k] for n in names}, dict(r.named_parameters())) for k, r in enumerate(refs)
    )
    record(
        "heads: BatchedAdamW == torch AdamW (4 steps, clipping)", d < 1e-5, max_abs_diff=d, fused=opt.fused
    )

    # 2. hand-written gradients vs autograd
    torch.manual_seed(2)
    K, B, D = 3, 7, 6
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for preset, missing in (("submitted", "learned"), ("workshop", "zero"), ("no-prior", "zero")):
        hs = [FusionHead(D, preset=preset, missing_prior=missing, hidden=10, dropout=0.2) for _ in range(K)]
        st = StackedHeads.from_heads(hs, device)
        ds = [synthetic_data(B, dim=D, seed=s) for s in range(K)]
        h = torch.stack([x.X for x in ds]).to(device)
        prior = torch.stack([x.prior for x in ds]).to(device)
        miss = torch.stack([x.missing for x in ds]).to(device)
        labels = torch.stack([x.labels for x in ds]).to(device)
        labels[0, 2] = -1
        pseudo = torch.softmax(torch.randn(K, B, 23, generator=g), -1).to(device)
        has = (torch.rand(K, B, generator=g) > 0.3).to(device)
        lam = torch.tensor([0.0, 0.4, 1.0], device=device)
        weights = (torch.rand(23, generator=g) + 0.5).to(device)
        uniforms = torch.rand(K, B, st.dropout_width, generator=g).to(device)
        gflat, gviews = st.grad_buffer()
        y, w = item_weights(labels, weights)  # the trainer's fused loss, prepared as train_stacked does
        T, s = loss_targets(y, w, lam, pseudo, has.to(torch.float32), B, 23)
        qx = st.prior_inputs(prior, miss) if st.template.uses_prior else None
        losses = st.fast_loss_and_grads(h, qx, st.dropout_masks(uniforms), T, s, gviews)
        leaf = leaf_copies(st)
        logits = st(h, prior, miss, uniforms, params=leaf)
        ref = torch.stack(
            [mixed_loss(logits[k], labels[k], weights, pseudo[k], has[k], float(lam[k])) for k in range(K)]
        )  # the reference form
        auto = torch.autograd.grad(ref.sum(), list(leaf.values()), allow_unused=True)
        worst = max(worst, float((losses - ref).abs().max()))
        for view, ga in zip(gviews.values(), auto, strict=True):
            ga = torch.zeros_like(view) if ga is None else ga
            worst = max(worst, float(((view - ga).abs() / (ga.abs() + 1e-3)).max()))
    record("heads: hand-written gradients == autograd (3 presets)", worst < 1e-3, max_rel_diff=worst)

    # 3. a head learns on the device
    train = synthetic_data(500, dim=16, signal="prior", seed=0)
    val = synthetic_data(200, dim=16, signal="prior", seed=1)
    t0 = time.perf_counter()
    res = train_head(TrainConfig(lr=2e-3, epochs=12, device=dev, hidden=64), train, val)
    record(
        "heads: learns from the prior on the device (val hF > 0.8)",
        res.best_val["hF"] > 0.8,
        hF=res.best_val["hF"],
        seconds=time.perf_counter() - t0,
    )

    # 4. K-stacked search == single runs on the device
    train = synthetic_data(300, dim=32, signal="both", seed=0)
    val = synthetic_data(100, dim=32, signal="both", seed=1)
    configs = sample_configs(
        TrainConfig(epochs=6, patience=10, device=dev, hidden=48), SearchSpace(k=4, seed=5)
    )
    together = run_search(configs, train, val)
    alone = [train_head(c, train, val) for c in configs]
    chunked = run_search(configs, train, val, max_stack=2)
    d1 = max(max_diff(a.state_dict, t.state_dict) for a, t in zip(alone, together, strict=True))
    d2 = max(max_diff(a.state_dict, t.state_dict) for a, t in zip(chunked, together, strict=True))
    same_epochs = [a.best_epoch for a in alone] == [t.best_epoch for t in together]
    ok = same_epochs and all(
        torch.allclose(t.state_dict[n], a.state_dict[n], rtol=1e-4, atol=1e-4)
        for a, t in zip(alone, together, strict=True)
        for n in a.state_dict
    )
    record(
        "heads: K=4 stacked search == 4 single runs (allclose 1e-4)",
        ok,
        max_abs_diff=d1,
        same_best_epochs=same_epochs,
    )
    record("heads: stacks of 2 == all 4 stacked (allclose 1e-4)", d2 < 1e-4, max_abs_diff=d2)

    # 5. predict_logits on the device == on the CPU
    a = predict_logits(together, val, device=dev)
    b = predict_logits(together, val, device="cpu")
    d = float(abs(a - b).max())
    record("heads: predict_logits on the device == CPU", d < 1e-3, max_abs_diff=d)


# ------------------------------------------------------------------------------------------- backbones
def check_backbones(device: torch.device, names: list[str], batch: int) -> list[dict]:
    from extract.backbones import BackboneConfig, build_backbone

    rows = []
    for name in names:
        try:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            bb = build_backbone(BackboneConfig(name, random_init=True)).eval().to(device)
            build_s = time.perf_counter() - t0
            ws = bb.spec.window_samples
            g = torch.Generator().manual_seed(0)
            windows = (0.1 * torch.randn(batch, ws, generator=g)).to(device)
            lengths = torch.full((batch,), ws, dtype=torch.long)
            if batch > 1:
                lengths[-1] = ws // 2
                windows[-1, ws // 2 :] = 0
            lengths = lengths.to(device)
            row = {
                "backbone": name,
                "window_samples": ws,
                "sample_rate": bb.spec.sample_rate,
                "batch": batch,
                "build_s": build_s,
            }
            with torch.inference_mode():
                ref = bb.embed_windows(windows, lengths).float()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                ref = bb.embed_windows(windows, lengths).float()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["fp32_ms"] = 1e3 * (time.perf_counter() - t0)
                row["dim"] = int(ref.shape[-1])
                row["fp32_finite"] = bool(torch.isfinite(ref).all())
                dtypes = (
                    {"bf16": torch.bfloat16, "fp16": torch.float16}
                    if device.type == "cuda"
                    else {"bf16": torch.bfloat16}
                )
                for tag, dt in dtypes.items():
                    with torch.autocast(device.type, dtype=dt):
                        out = bb.embed_windows(windows, lengths)
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        out = bb.embed_windows(windows, lengths)
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        row[f"{tag}_ms"] = 1e3 * (time.perf_counter() - t0)
                    out = out.float()
                    rel = float(
                        torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref).clamp(min=1e-12)
                    )
                    row[f"{tag}_rel_err"] = rel
                    row[f"{tag}_finite"] = bool(torch.isfinite(out).all())
                    row[f"{tag}_cosine_min"] = float(
                        torch.nn.functional.cosine_similarity(out, ref, dim=-1).min()
                    )
            ok = row["fp32_finite"] and all(row[f"{t}_finite"] and row[f"{t}_rel_err"] < 0.1 for t in dtypes)
            record(
                f"backbone {name}: random-init forward on {ws / bb.spec.sample_rate:g} s windows, "
                "fp32 vs autocast",
                ok,
                **{k: v for k, v in row.items() if k.endswith("rel_err")},
            )
            rows.append(row)
            del bb
        except Exception as e:  # a missing optional package must not hide the other backbones
            traceback.print_exc()
            record(f"backbone {name}: random-init forward", False, error=f"{type(e).__name__}: {e}"[:300])
            rows.append({"backbone": name, "error": f"{type(e).__name__}: {e}"[:1000]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------- precision
def check_precision(device: torch.device) -> None:
    """Every audio backbone (tiny, random init) under fp16 and bf16 autocast on ``device``: finite and
    within the tests' tolerance of float32 on a full-scale tone and near-silence
    (as tests/extract/test_mixed_precision.py on the CPU)."""
    import tempfile

    from testkit.tiny_backbones import CASES, TOLERANCE, autocast_errors, build_case, write_tiny_tokenizer

    tokenizer = write_tiny_tokenizer(Path(tempfile.mkdtemp(prefix="gpu_checks_tok_")))
    tags = {torch.float16: "fp16", torch.bfloat16: "bf16"}
    for case in CASES:
        try:
            bb = build_case(case, tokenizer).to(device)
            by_signal: dict[str, tuple[bool, dict]] = {}
            for label, dtype, ref_ok, finite, err in autocast_errors(bb, device):
                ok, info = by_signal.get(label, (True, {}))
                info[f"{tags[dtype]}_rel_err"] = err
                by_signal[label] = (ok and ref_ok and finite and err <= TOLERANCE[dtype], info)
            for label, (ok, info) in by_signal.items():
                record(
                    f"precision {case} {label}: autocast fp16/bf16 finite and close to float32", ok, **info
                )
            del bb
        except Exception as e:
            traceback.print_exc()
            record(f"precision {case}", False, error=f"{type(e).__name__}: {e}"[:300])
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--parts", default="heads,backbones,precision")
    ap.add_argument("--backbones", default="beats,m2d,passt")
    ap.add_argument(
        "--batch", type=int, default=0, help="windows per backbone forward (default: 8 on GPU, 2 on CPU)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_checks.json")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"checks on {device} ({gpu or 'no GPU'}), torch {torch.__version__}, "
        f"cuda {torch.version.cuda}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}",
        flush=True,
    )
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    rows: list[dict] = []
    if "heads" in parts:
        try:
            check_heads(device)
        except Exception as e:
            traceback.print_exc()
            record("heads checks", False, error=f"{type(e).__name__}: {e}"[:300])
    if "precision" in parts:
        check_precision(device)
    if "backbones" in parts:
        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = check_backbones(device, names, args.batch or (8 if device.type == "cuda" else 2))
        print(
            "\n| backbone | dim | batch | fp32 ms | bf16 ms | bf16 rel err | bf16 min cos | fp16 ms "
            "| fp16 rel err |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        f = lambda r, k, fmt: format(r[k], fmt) if k in r else "—"  # noqa: E731
        for r in rows:
            if "error" in r:
                print(f"| {r['backbone']} | error: {r['error'][:80]} |||||||")
                continue
            print(
                f"| {r['backbone']} | {r['dim']} | {r['batch']} | {f(r, 'fp32_ms', '.1f')} | "
                f"{f(r, 'bf16_ms', '.1f')} | {f(r, 'bf16_rel_err', '.2e')} | "
                f"{f(r, 'bf16_cosine_min', '.5f')} | {f(r, 'fp16_ms', '.1f')} | "
                f"{f(r, 'fp16_rel_err', '.2e')} |"
            )
    n_fail = sum(not r["ok"] for r in RESULTS)
    print(f"\ngpu checks: {len(RESULTS) - n_fail} passed, {n_fail} failed", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": str(device),
                "gpu": gpu,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "checks": RESULTS,
                "backbones": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
