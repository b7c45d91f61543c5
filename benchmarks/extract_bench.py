"""Extraction-tier throughput on this machine.

    python benchmarks/extract_bench.py [--clips 120] [--passt-clips 24] [--texts 10000] [--rows 20000]

* runner vs naive loop (clips/s, ratio) for ``logmel`` and a short-input (1 s windows) random-init
  PaSST. The naive loops run in the main process with the same model, front-end and cached
  resampler, one clip at a time: "naive" = load_audio, split_windows, ``embed_windows`` on the
  clip's full windows, mean; "naive+trim" = load_audio, ``embed_clips`` on that one clip (which
  already cuts short windows, so it isolates the gain of workers + batching);
* MiniLM: 10k metadata strings through ``MiniLMEncoder.encode`` in float32 and bfloat16, and through
  the runner (texts/s);
* store I/O: a float32 (rows, 768) matrix written/read through the cache store's row tables
  (Zarr) vs ``numpy.save``/``numpy.load`` (MB/s).

Targets (issue 3): runner ≥ 3× the naive loop for logmel; 10k texts in ≤ 60 s; Zarr reads ≥ 50%
of numpy's. Prints a table and writes ``benchmarks/results/extract_bench.json``.

``--device cuda`` (or ``auto`` with a GPU) runs the models on the GPU: the runner with its float16
autocast, the naive loops on the same GPU in float32 (each clip's windows moved to the GPU, the
embedding copied back), and PaSST on its full 10 s windows with clips up to 30 s
(``--passt-window-seconds``/``--passt-max-seconds`` change that). ``--skip-minilm`` leaves out
the text part (it needs the MiniLM weights installed).

    python benchmarks/extract_bench.py --device cuda --skip-minilm --clips 120 --passt-clips 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cache.chunks import read_array  # noqa: E402
from cache.store import Store  # noqa: E402
from extract.audio import load_audio  # noqa: E402
from extract.backbones import BackboneConfig, build_backbone  # noqa: E402
from extract.config import EmbeddingsConfig  # noqa: E402
from extract.runner import run_embeddings  # noqa: E402
from extract.text import clean_metadata  # noqa: E402
from extract.windowing import embed_clips, module_device, split_windows  # noqa: E402
from testkit.bsd_dataset import labelled_row, write_metadata, write_wav  # noqa: E402

WORDS = [
    "dog",
    "rain",
    "car",
    "piano",
    "crowd",
    "door",
    "wind",
    "synth",
    "bird",
    "engine",
    "speech",
    "drum",
    "guitar",
    "thunder",
    "kitchen",
    "street",
    "whoosh",
    "laser",
    "violin",
    "footsteps",
]


# ------------------------------------------------------------------------------------------- data
def durations(n: int, rng: np.random.Generator, max_s: float = 30.0) -> np.ndarray:
    """BSD-like clip lengths (0.3–30 s, mean ≈ 11 s): half log-uniform, half uniform."""
    log_u = np.exp(rng.uniform(np.log(0.3), np.log(max_s), n))
    uni = rng.uniform(0.3, max_s, n)
    return np.where(rng.random(n) < 0.5, log_u, uni)


def write_bench_metadata(root: Path, n: int, rng: np.random.Generator) -> None:
    rows = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(2, 12)))
        desc = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 80))))
        rows.append(
            labelled_row(
                str(i),
                "fx-o",
                uploader="u",
                title=f"{words[0]} {words[1]} {i}",
                tags=",".join(words),
                description=f"<p>Recorded {desc}.</p> https://example.org/{i}",
            )
        )
    write_metadata(root, rows, "BENCH")


def write_audio_dataset(root: Path, n: int, seed: int = 0, max_s: float = 30.0) -> tuple[Path, float]:
    """n WAV clips (44.1 kHz, 16-bit, mono) with BSD-like durations; returns (root, total seconds)."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    write_bench_metadata(root, n, rng)
    d = durations(n, rng, max_s)
    for i, sec in enumerate(d):
        write_wav(root, str(i), 0.1 * rng.standard_normal(int(sec * 44100)).astype(np.float32), 44100)
    return root, float(d.sum())


# ------------------------------------------------------------------------------------------- audio
def naive_loop(backbone, paths: list[Path], trim: bool) -> float:
    """Clips/s of a one-clip-at-a-time loop in the main process (same model and front-end, on the
    model's device, float32; each clip's embedding is copied back to the CPU)."""
    spec = backbone.spec
    dev = module_device(backbone)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            try:
                wave = load_audio(p, spec.sample_rate)
            except ValueError:
                continue
            if trim:
                embed_clips(backbone, [wave]).cpu()
            else:
                windows, lengths = split_windows(wave, spec.window_samples, spec.padding)
                emb = backbone.embed_windows(windows.to(dev), lengths.to(dev))
                emb[lengths.to(dev) > 0].mean(0).cpu()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return len(paths) / (time.perf_counter() - t0)


def runner_rate(root: Path, store: Path, backbone: str, workers: int, batch: int, **kw) -> float:
    """Clips/s of the runner's processing loop (decode, embed, pool, write; the one-time manifest
    loading, model construction and table creation are excluded, as the naive loop's model is prebuilt)."""
    cfg = EmbeddingsConfig(
        dataset=root,
        backbone=backbone,
        store=store,
        num_workers=workers,
        batch_size=batch,
        progress=False,
        overwrite=True,
        **kw,
    )
    summary = run_embeddings(cfg)
    return summary.rows_processed / summary.seconds


def bench_audio(
    name: str,
    backbone_cfg: BackboneConfig,
    root: Path,
    n: int,
    workers: int,
    batch: int,
    runner_kw: dict,
    repeats: int = 2,
    device: str = "cpu",
) -> dict:
    """Best of ``repeats`` interleaved measurements of the runner and the two naive loops."""
    torch.manual_seed(0)
    backbone = build_backbone(backbone_cfg).eval().to(device)
    runner_kw = {**runner_kw, "device": device}
    paths = [root / "audio" / f"{i}.wav" for i in range(n)]
    load_audio(paths[0], backbone.spec.sample_rate)  # warm the cached resampler, like the runner's workers
    best = {"runner": 0.0, "runner_threads": 0.0, "runner_processes": 0.0, "naive": 0.0, "naive_trim": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (imports)
        runner_rate(root, Path(tmp) / "warm.zarr", backbone_cfg.name, -1, batch, **runner_kw)
        for _ in range(repeats):
            # the runner's defaults (num_workers -1 = auto), then decode threads and worker processes
            best["runner"] = max(
                best["runner"],
                runner_rate(root, Path(tmp) / "s.zarr", backbone_cfg.name, -1, batch, **runner_kw),
            )
            best["runner_threads"] = max(
                best["runner_threads"],
                runner_rate(
                    root,
                    Path(tmp) / "s.zarr",
                    backbone_cfg.name,
                    workers,
                    batch,
                    loader="threads",
                    **runner_kw,
                ),
            )
            best["runner_processes"] = max(
                best["runner_processes"],
                runner_rate(
                    root,
                    Path(tmp) / "s.zarr",
                    backbone_cfg.name,
                    workers,
                    batch,
                    loader="processes",
                    **runner_kw,
                ),
            )
            best["naive"] = max(best["naive"], naive_loop(backbone, paths, trim=False))
            best["naive_trim"] = max(best["naive_trim"], naive_loop(backbone, paths, trim=True))
    auto_workers = 0 if device == "cpu" else 2
    return {
        "backbone": name,
        "clips": n,
        "runner_clips_s": best["runner"],
        "runner_workers": auto_workers,
        "runner_threads_clips_s": best["runner_threads"],
        "runner_processes_clips_s": best["runner_processes"],
        "naive_clips_s": best["naive"],
        "naive_trim_clips_s": best["naive_trim"],
        "ratio_vs_naive": best["runner"] / best["naive"],
        "ratio_vs_naive_trim": best["runner"] / best["naive_trim"],
        "workers": workers,
        "batch": batch or "backbone default",
        "repeats": repeats,
        "device": device,
        "runner_autocast": device.startswith("cuda"),
    }


# ------------------------------------------------------------------------------------------- text
def bench_minilm(n: int, tmp: Path, rng: np.random.Generator, runner_n: int = 2000) -> dict:
    """10k metadata strings through ``MiniLMEncoder.encode`` in float32 (default) and bfloat16
    (``compute_dtype``; min cosine to float32 reported), and the runner on the first ``runner_n``."""
    from cache.manifest import load_manifest
    from extract.backbones.minilm import MiniLMEncoder

    root = tmp / "text"
    write_bench_metadata(root, n, rng)
    m = load_manifest(root, require_audio=False)
    texts = [clean_metadata(a, b, c) for a, b, c in zip(m.title, m.tags, m.description, strict=True)]
    res: dict = {"texts": n, "mean_chars": float(np.mean([len(t) for t in texts]))}
    ref = None
    for dtype in ("float32", "bfloat16"):
        enc = MiniLMEncoder(compute_dtype=dtype)
        enc.encode(texts[:256])  # warm-up
        t0 = time.perf_counter()
        emb = enc.encode(texts)
        dt = time.perf_counter() - t0
        res[dtype] = {"encode_s": dt, "encode_texts_s": n / dt}
        if ref is None:
            ref = emb
            res["mean_tokens"] = float(
                np.mean(
                    [
                        len(x)
                        for x in enc.tokenizer(texts, truncation=True, max_length=enc.max_length)["input_ids"]
                    ]
                )
            )
        else:
            res[dtype]["min_cosine_to_float32"] = float((emb * ref).sum(1).min())
    res["encode_s"], res["encode_texts_s"] = res["float32"]["encode_s"], res["float32"]["encode_texts_s"]
    sub = tmp / "text_sub"  # the runner (same encoder, chunked writes) on the first runner_n strings
    write_bench_metadata(sub, min(n, runner_n), np.random.default_rng(2))
    t0 = time.perf_counter()
    summary = run_embeddings(
        EmbeddingsConfig(
            dataset=sub,
            backbone="minilm",
            text_source="metadata",
            chunk_rows=1024,
            store=tmp / "text.zarr",
            progress=False,
            overwrite=True,
        )
    )
    t_run = time.perf_counter() - t0
    res.update({"runner_texts": summary.n_rows, "runner_s": t_run, "runner_texts_s": summary.n_rows / t_run})
    return res


# ------------------------------------------------------------------------------------------- store
def bench_store(rows: int, dim: int, tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, dim)).astype(np.float32)
    mb = X.nbytes / 1e6
    ids = [str(i) for i in range(rows)]
    npy = tmp / "x.npy"
    t0 = time.perf_counter()
    np.save(npy, X)
    np_write = time.perf_counter() - t0
    np_read = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        Y = np.load(npy)
        np_read = min(np_read, time.perf_counter() - t0)
    assert np.array_equal(X, Y)

    store = Store(tmp / "bench.zarr")
    t0 = time.perf_counter()
    w = store.create_rows(
        "embeddings/bench@none", ids, {"audio": ((dim,), "float32")}, chunk_rows=1024, overwrite=True
    )
    status = np.ones(w.chunk_rows, np.uint8)
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        w.write_chunk(k, {"audio": X[lo:hi]}, status[: hi - lo], [""] * (hi - lo))
    w.finalize()
    z_write = time.perf_counter() - t0
    z_read = np.inf
    for _ in range(3):  # best of 3, like numpy's read below is from the page cache too
        t0 = time.perf_counter()
        Z = read_array(Store(tmp / "bench.zarr", mode="r").root["embeddings/bench@none"]["audio"])
        z_read = min(z_read, time.perf_counter() - t0)
    assert np.array_equal(X, Z)
    t0 = time.perf_counter()
    t = Store(tmp / "bench.zarr", mode="r").read_table("embeddings/bench@none")
    z_table = time.perf_counter() - t0
    assert np.array_equal(X, t["audio"])
    return {
        "rows": rows,
        "dim": dim,
        "MB": mb,
        "numpy_write_MB_s": mb / np_write,
        "numpy_read_MB_s": mb / np_read,
        "zarr_write_MB_s": mb / z_write,
        "zarr_read_MB_s": mb / z_read,
        "zarr_read_table_MB_s": mb / z_table,
        "zarr_read_vs_numpy": np_read / z_read,
        "zarr_read_table_vs_numpy": np_read / z_table,
    }


# ------------------------------------------------------------------------------------------- main
def audio_rows(name: str, r: dict, fmt: str, target: str) -> list[tuple[str, str]]:
    """Table rows of one ``bench_audio`` result: the runner's three loaders and the two naive loops."""
    naive = "" if r["device"] == "cpu" else ", fp32"
    return [
        (
            f"{name} runner (defaults: {r['runner_workers']} decode workers)",
            f"{r['runner_clips_s']:{fmt}} clips/s",
        ),
        (f"{name} runner ({r['workers']} decode threads)", f"{r['runner_threads_clips_s']:{fmt}} clips/s"),
        (
            f"{name} runner ({r['workers']} worker processes)",
            f"{r['runner_processes_clips_s']:{fmt}} clips/s",
        ),
        (
            f"{name} naive (full windows{naive})",
            f"{r['naive_clips_s']:{fmt}} clips/s  -> runner {r['ratio_vs_naive']:.2f}x ({target})",
        ),
        (
            f"{name} naive+trim (embed_clips{naive})",
            f"{r['naive_trim_clips_s']:{fmt}} clips/s  -> runner {r['ratio_vs_naive_trim']:.2f}x",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=300, help="clips for the logmel comparison")
    ap.add_argument(
        "--passt-clips", type=int, default=12, help="clips (≤ 4 s) for the PaSST comparison (0: skip it)"
    )
    ap.add_argument("--texts", type=int, default=10000)
    ap.add_argument("--rows", type=int, default=20000, help="rows of the (rows, 768) store matrix")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the models run (auto = cuda if available)",
    )
    ap.add_argument("--skip-minilm", action="store_true", help="leave out the MiniLM text part")
    ap.add_argument(
        "--passt-window-seconds",
        type=float,
        default=None,
        help="PaSST window length (default: 1 s on CPU, the full 10 s on GPU)",
    )
    ap.add_argument(
        "--passt-max-seconds",
        type=float,
        default=None,
        help="longest PaSST benchmark clip (default: 4 s on CPU, 30 s on GPU)",
    )
    ap.add_argument(
        "--passt-batch", type=int, default=16, help="PaSST windows per forward pass in the runner"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extract_bench.json")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    device = (
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    win = args.passt_window_seconds or (10.0 if device == "cuda" else 1.0)
    max_s = args.passt_max_seconds or (30.0 if device == "cuda" else 4.0)
    threads = torch.get_num_threads()
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
            "device": device,
            "gpu": gpu,
        },
        "notes": [],
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        root, total = write_audio_dataset(tmp / "audio_ds", args.clips)
        results["audio_dataset"] = {"clips": args.clips, "seconds": total, "rate": 44100}
        results["logmel"] = bench_audio(
            "logmel", BackboneConfig("logmel"), root, args.clips, args.workers, 0, {}, device=device
        )
        try:
            from extract.backbones import available_backbones

            if "passt" not in available_backbones():
                raise ImportError("passt backbone not registered")
            if args.passt_clips <= 0:
                raise ImportError("--passt-clips 0")
            proot, ptotal = write_audio_dataset(tmp / "passt_ds", args.passt_clips, seed=1, max_s=max_s)
            ov = {} if win == 10.0 else {"window_seconds": win}
            results["passt"] = bench_audio(
                f"passt (random, {win:g} s windows)",
                BackboneConfig("passt", random_init=True, overrides=ov),
                proot,
                args.passt_clips,
                args.workers,
                args.passt_batch,
                {"random_init": True, "arch": ov},
                device=device,
            )
            results["passt"]["seconds"] = ptotal
            results["passt"]["window_seconds"] = win
            results["passt"]["max_clip_seconds"] = max_s
        except ImportError as e:
            results["notes"].append(f"PaSST skipped: {e}")
        if args.skip_minilm:
            results["notes"].append("MiniLM skipped (--skip-minilm)")
        else:
            results["minilm"] = bench_minilm(args.texts, tmp, np.random.default_rng(2))
        results["store"] = bench_store(args.rows, 768, tmp)

    lm, st, mi = results["logmel"], results["store"], results.get("minilm")
    rows = audio_rows("logmel", lm, ".1f", "target >= 3x")
    if "passt" in results:
        pa = results["passt"]
        amp = ", fp16 autocast" if pa["runner_autocast"] else ""
        rows += audio_rows(
            f"passt (random, {pa['window_seconds']:g} s win{amp})", pa, ".2f", "reported, not targeted"
        )
    if mi:
        bf = mi["bfloat16"]
        rows += [
            (
                f"minilm encode {mi['texts']} texts (float32)",
                f"{mi['encode_s']:.1f} s = {mi['encode_texts_s']:.0f} texts/s (target <= 60 s)",
            ),
            (
                f"minilm encode {mi['texts']} texts (bfloat16)",
                f"{bf['encode_s']:.1f} s = {bf['encode_texts_s']:.0f} "
                f"texts/s (min cosine {bf['min_cosine_to_float32']:.4f})",
            ),
            (
                f"minilm runner {mi['runner_texts']} texts",
                f"{mi['runner_s']:.1f} s = {mi['runner_texts_s']:.0f} texts/s",
            ),
        ]
    rows += [
        (
            f"store {st['MB']:.0f} MB numpy save/load",
            f"{st['numpy_write_MB_s']:.0f} / {st['numpy_read_MB_s']:.0f} MB/s",
        ),
        (
            f"store {st['MB']:.0f} MB zarr write / store read",
            f"{st['zarr_write_MB_s']:.0f} / {st['zarr_read_MB_s']:.0f} MB/s "
            f"(read = {100 * st['zarr_read_vs_numpy']:.0f}% of numpy; "
            "target >= 50%)",
        ),
        (
            "store zarr read_table (+status/error)",
            f"{st['zarr_read_table_MB_s']:.0f} MB/s ({100 * st['zarr_read_table_vs_numpy']:.0f}% of numpy)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    where = f", GPU {gpu}" if gpu else ""
    print(f"extraction benchmark ({os.cpu_count()} CPUs, torch threads {threads}{where})")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for n in results["notes"]:
        print("  note:", n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
