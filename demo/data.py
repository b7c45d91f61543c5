"""Demo dataset generator: three small synthetic datasets in exactly the real BSD layout.

    OUT/BSD10k-demo/       clean labelled set (~25 clips per class, confidence 1-5)
    OUT/BSD35k-CS-demo/    noisy crowd-sourced set (~2x larger, ~40% wrong labels, *-other and
                           top-level-only rows, a few sound_ids shared with the clean set)
    OUT/BSD2k-demo/        unlabelled evaluation set keyed by anonymous_id (UUIDs)
    OUT/BSD2k-demo-truth.csv, OUT/BSD35k-CS-demo-truth.csv   the true classes (id,class)
    OUT/README.txt, OUT/demo_config.json

Each dataset root holds ``audio/<id>.wav`` (44.1 kHz, 16-bit PCM, mono, 0.2-30 s),
``metadata/<NAME>_metadata.csv``, ``metadata/BST_description.csv`` (labelled sets) and
``features/clap_{audio,text}_embeddings/<id>.npy`` stand-ins for the shipped LAION-CLAP
features (float32 (512,): fixed random projections of log-mel statistics / of a hashed
bag of words of title+tags+description, plus noise). Same seed and config -> byte-identical
files. Labels are synthetic. See ``docs/demo_data.md``.

    python -m demo --out DIR [--seed 0] [--scale 1.0] [--max-duration 30]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import re
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from cache.config import ConfigError, from_dict, load_config, read_toml
from cache.manifest import LABELLED_COLUMNS, UNLABELLED_REQUIRED
from cache.provenance import base_provenance
from cache.taxonomy import CLASS_NAMES, CLASSES, TOP_DIGIT, top_of

from . import audio as demo_audio
from . import text as demo_text

GENERATOR_VERSION = 1
CLEAN, NOISY, EVAL = "BSD10k-demo", "BSD35k-CS-demo", "BSD2k-demo"
DATASETS = (CLEAN, NOISY, EVAL)
METADATA_COLUMNS = LABELLED_COLUMNS  # the columns the manifest reader requires, in its order
EVAL_COLUMNS = UNLABELLED_REQUIRED
BST_COLUMNS = (
    "class_idx",
    "class_key",
    "class_key_long",
    "top_level",
    "second_level",
    "description",
    "examples",
)
EMBED_DIM = 512
# median duration factor per top level
_TOP_DURATION = {"m": 1.4, "is": 0.55, "sp": 1.2, "fx": 0.75, "ss": 1.5}
_LICENSES = (
    ("http://creativecommons.org/publicdomain/zero/1.0/", 0.45),
    ("https://creativecommons.org/licenses/by/4.0/", 0.3),
    ("http://creativecommons.org/licenses/by/3.0/", 0.1),
    ("http://creativecommons.org/licenses/by-nc/4.0/", 0.1),
    ("http://creativecommons.org/licenses/sampling+/1.0/", 0.05),
)
_CONFIDENCE_P = np.array([0.04, 0.08, 0.18, 0.30, 0.40])  # confidence 1..5 in the clean set


@dataclass
class DemoConfig:
    """Everything that determines the generated files (saved to OUT/demo_config.json)."""

    seed: int = 0
    scale: float = 1.0  # multiplies every clip count
    max_duration: float = 30.0  # seconds; lower it for quick tests
    clean_per_class: float = 25.0
    noisy_factor: float = 2.0  # noisy set size relative to the clean set
    eval_per_class: float = 10.0
    label_noise: float = 0.4  # fraction of the noisy set's target rows with a wrong label
    other_fraction: float = 0.06  # noisy rows labelled <top>-other
    top_only_fraction: float = 0.03  # noisy rows labelled with the top level only
    shared: float = 10.0  # sound_ids in both the clean and noisy set (times scale)
    informative: float = 0.6  # metadata modes: informative / misleading / generic (the rest)
    misleading: float = 0.15
    foreign: float = 0.15  # metadata in Spanish, German or French
    median_duration: float = 1.0  # seconds, before the per-top-level factor
    long_fraction: float = 0.01  # clips of 10-30 s (at least one per set)
    feature_noise: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "scale": self.scale > 0,
            "max_duration": 0.2 <= self.max_duration <= 30.0,
            "label_noise": 0 <= self.label_noise < 1,
            "informative": 0 <= self.informative <= 1,
            "misleading": 0 <= self.misleading <= 1 - self.informative,
            "other_fraction": 0 <= self.other_fraction + self.top_only_fraction < 0.5,
            "median_duration": self.median_duration > 0,
            "foreign": 0 <= self.foreign <= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "invalid demo config value(s): " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> DemoConfig:
        """Read ``[demo_data]`` (or top-level keys) of a TOML file; ``overrides`` (not None) win."""
        data = read_toml(path)
        data = dict(data.get("demo_data", data))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return from_dict(cls, data, where=str(path))


@dataclass
class DemoFile:
    """A demo config file: its ``[demo_data]`` table (``--set demo_data.KEY=VALUE`` on the command line)."""

    demo_data: DemoConfig = field(default_factory=DemoConfig)


def load_demo_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> DemoConfig:
    """DemoConfig: defaults < the TOML file's ``[demo_data]`` table < ``demo_data.KEY=VALUE`` overrides."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if "=" in item and "." not in key:
            raise ConfigError(
                f"--set {item}: demo settings are keys of [demo_data]; write --set demo_data.{item}"
            )
    return load_config(DemoFile, path, overrides).demo_data


@dataclass
class Clip:
    key: str  # the id used for files: sound_id or anonymous_id
    dataset: str
    true_class: str
    duration: float
    mode: str  # metadata mode
    lang: str
    wrong: str | None  # class the misleading metadata points to
    uploader: str
    license: str
    seed_key: tuple[int, ...]  # audio/metadata random streams
    label: str = ""  # class column ("" for the evaluation set)
    confidence: str = ""
    source: Clip | None = None  # for shared ids: the clean clip whose files are reused
    title: str = ""
    tags: str = ""
    description: str = ""


# ---------------------------------------------------------------------------- planning
def _counts(
    rng: np.random.Generator, per_class: float, scale: float, minimum: int, spread: float
) -> np.ndarray:
    f = rng.uniform(1 - spread, 1 + spread, len(CLASSES))
    return np.maximum(minimum, np.round(per_class * scale * f)).astype(int)


def _class_idx(label: str) -> str:
    top = top_of(label)
    if label == top:
        return f"{TOP_DIGIT[top]}00"
    if label.endswith("-other"):
        return f"{TOP_DIGIT[top]}99"
    siblings = [c for c in CLASSES if top_of(c) == top]
    return f"{TOP_DIGIT[top]}{siblings.index(label) + 1:02d}"


def _durations(rng: np.random.Generator, classes: list[str], cfg: DemoConfig) -> np.ndarray:
    med = np.array([cfg.median_duration * _TOP_DURATION[top_of(c)] for c in classes])
    d = np.exp(rng.normal(np.log(med), 0.55))
    can_be_long = np.flatnonzero([top_of(c) != "is" for c in classes])
    k = max(1, int(round(cfg.long_fraction * len(classes))))
    if can_be_long.size:
        d[rng.choice(can_be_long, size=min(k, can_be_long.size), replace=False)] = rng.uniform(
            10, 30, min(k, can_be_long.size)
        )
    return np.round(np.clip(d, 0.2, min(30.0, cfg.max_duration)), 3)


def _modes(rng: np.random.Generator, n: int, cfg: DemoConfig) -> list[str]:
    n_inf, n_mis = int(round(cfg.informative * n)), int(round(cfg.misleading * n))
    modes = np.array(["generic"] * n, dtype=object)
    perm = rng.permutation(n)
    modes[perm[:n_inf]] = "informative"
    modes[perm[n_inf : n_inf + n_mis]] = "misleading"
    return modes.tolist()


def plan(cfg: DemoConfig) -> dict[str, list[Clip]]:
    """Decide every clip (id, true class, label, duration, metadata mode…) from the seed."""
    rng = np.random.default_rng([cfg.seed, 1])
    users = demo_text.uploader_names(rng, 80)
    lic_p = np.array([p for _, p in _LICENSES])
    n_clean = _counts(rng, cfg.clean_per_class, cfg.scale, 2, 0.3)
    n_noisy = _counts(rng, cfg.clean_per_class * cfg.noisy_factor, cfg.scale, 2, 0.35)
    n_eval = _counts(rng, cfg.eval_per_class, cfg.scale, 1, 0.2)
    n_shared = min(int(n_clean.sum()), max(1, int(round(cfg.shared * cfg.scale))))
    total_ids = int(n_clean.sum() + n_noisy.sum())
    sound_ids = (rng.choice(899_000, size=total_ids, replace=False) + 1000).tolist()

    out: dict[str, list[Clip]] = {}
    for set_no, (name, counts) in enumerate(((CLEAN, n_clean), (NOISY, n_noisy), (EVAL, n_eval))):
        classes = [c for c, k in zip(CLASSES, counts, strict=True) for _ in range(k)]
        classes = [classes[i] for i in rng.permutation(len(classes))]
        n = len(classes)
        durs = _durations(rng, classes, cfg)
        modes = _modes(rng, n, cfg)
        clips = []
        for i, c in enumerate(classes):
            lang = "en" if rng.random() >= cfg.foreign else str(rng.choice(["es", "de", "fr"]))
            wrong = demo_text.plausible_wrong(rng, c, CLASSES) if modes[i] == "misleading" else None
            if name == EVAL:
                key = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            else:
                key = str(sound_ids.pop())
            clips.append(
                Clip(
                    key=key,
                    dataset=name,
                    true_class=c,
                    duration=float(durs[i]),
                    mode=modes[i],
                    lang=lang,
                    wrong=wrong,
                    uploader=users[int(rng.integers(len(users)))],
                    license=_LICENSES[int(rng.choice(len(_LICENSES), p=lic_p))][0],
                    seed_key=(cfg.seed, set_no, i),
                )
            )
        out[name] = clips

    # clean labels: the truth, with a confidence 1-5
    for c in out[CLEAN]:
        c.label = c.true_class
        c.confidence = str(int(rng.choice(5, p=_CONFIDENCE_P)) + 1)
    # shared ids: the same Freesound clip (audio and metadata) appears in the noisy set too
    for src in [out[CLEAN][i] for i in np.sort(rng.choice(len(out[CLEAN]), size=n_shared, replace=False))]:
        out[NOISY].append(dataclasses.replace(src, dataset=NOISY, confidence="", label="", source=src))
    # noisy labels: *-other and top-level-only rows, then ~label_noise of the rest moved to
    # plausible wrong classes
    noisy = out[NOISY]
    perm = rng.permutation(len(noisy))
    n_other = int(round(cfg.other_fraction * len(noisy)))
    n_top = int(round(cfg.top_only_fraction * len(noisy)))
    for j in perm[:n_other]:
        noisy[j].label = top_of(noisy[j].true_class) + "-other"
    for j in perm[n_other : n_other + n_top]:
        noisy[j].label = top_of(noisy[j].true_class)
    targets = perm[n_other + n_top :]
    n_wrong = int(round(cfg.label_noise * len(targets)))
    for k, j in enumerate(targets):
        noisy[j].label = (
            demo_text.plausible_wrong(rng, noisy[j].true_class, CLASSES)
            if k < n_wrong
            else noisy[j].true_class
        )
    return out


# ---------------------------------------------------------------------------- features
_P_AUDIO: np.ndarray | None = None
_P_TEXT: np.ndarray | None = None
_TEXT_BUCKETS = 4096


def _projections() -> tuple[np.ndarray, np.ndarray]:
    global _P_AUDIO, _P_TEXT
    if _P_AUDIO is None:
        r = np.random.default_rng(0xC1A9)
        _P_AUDIO = (r.standard_normal((128, EMBED_DIM)) / np.sqrt(128)).astype(np.float32)
        _P_TEXT = (r.standard_normal((_TEXT_BUCKETS, EMBED_DIM)) / np.sqrt(8)).astype(np.float32)
    return _P_AUDIO, _P_TEXT


def audio_embedding(x: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """(512,) float32 stand-in for a CLAP audio embedding: projection of log-mel stats + noise."""
    p_audio, _ = _projections()
    stats = demo_audio.logmel_stats(x)
    stats[:64] = (stats[:64] + 9.0) / 4.0  # rough centring of the log-mel means
    stats[64:] = (stats[64:] - 2.0) / 1.5
    return (stats @ p_audio + noise * rng.standard_normal(EMBED_DIM)).astype(np.float32)


def text_embedding(text: str, rng: np.random.Generator, noise: float) -> np.ndarray:
    """(512,) float32 stand-in for a CLAP text embedding: projection of a hashed bag of words + noise."""
    _, p_text = _projections()
    toks = re.findall(r"\w+", text.lower())
    emb = np.zeros(EMBED_DIM, np.float32)
    if toks:
        buckets = np.array([zlib.crc32(t.encode("utf-8")) % _TEXT_BUCKETS for t in toks])
        emb = p_text[buckets].sum(0) / np.sqrt(len(toks))
    return (emb + noise * rng.standard_normal(EMBED_DIM)).astype(np.float32)


# ---------------------------------------------------------------------------- writing
def _csv_text(header: Sequence[str], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _bst_rows() -> list[dict[str, str]]:
    rows = []
    for top in TOP_DIGIT:
        long, desc, ex = demo_text.TOP_DESCRIPTIONS[top]
        rows.append(
            {
                "class_idx": f"{TOP_DIGIT[top]}00",
                "class_key": top,
                "class_key_long": long,
                "top_level": long,
                "second_level": "",
                "description": desc,
                "examples": ex,
            }
        )
        for c in (c for c in CLASSES if top_of(c) == top):
            name = CLASS_NAMES[c][:1].upper() + CLASS_NAMES[c][1:]
            desc, ex = demo_text.CLASS_DESCRIPTIONS[c]
            rows.append(
                {
                    "class_idx": _class_idx(c),
                    "class_key": c,
                    "class_key_long": f"{long}-{name}",
                    "top_level": long,
                    "second_level": name,
                    "description": desc,
                    "examples": ex,
                }
            )
        rows.append(
            {
                "class_idx": f"{TOP_DIGIT[top]}99",
                "class_key": f"{top}-other",
                "class_key_long": f"{long}-Other",
                "top_level": long,
                "second_level": "Other",
                "description": f"{long} that fit none of the other {long.lower()} classes.",
                "examples": "",
            }
        )
    return rows


def _readme(cfg: DemoConfig, counts: dict[str, dict[str, int]]) -> str:
    lines = [
        "Demo data for the BST heterogeneous audio classification system (DCASE 2026 Task 1 layout).",
        "",
        "EVERYTHING HERE IS SYNTHETIC: the audio is generated noise, tones and pulses, the metadata is",
        "made up, and the labels are the generator's own classes. It exists to exercise the pipeline",
        "end to end; numbers measured on it say nothing about real data.",
        "",
        f"Generated by `python -m demo` (generator v{GENERATOR_VERSION}, seed {cfg.seed}, "
        f"scale {cfg.scale}).",
        "",
        f"{CLEAN}/     clean labelled set (stands in for BSD10k): {counts[CLEAN]['rows']} clips, "
        "confidence 1-5",
        f"{NOISY}/  noisy crowd-sourced set (stands in for BSD35k-CS): {counts[NOISY]['rows']} rows, "
        "about "
        f"{int(round(cfg.label_noise * 100))}% wrong labels,",
        f"                   {counts[NOISY]['other']} *-other and {counts[NOISY]['top_only']} "
        "top-level-only rows, "
        f"{counts[NOISY]['shared']} sound_ids shared with {CLEAN}",
        f"{EVAL}/      unlabelled evaluation set keyed by anonymous_id: {counts[EVAL]['rows']} clips",
        f"{EVAL}-truth.csv      true classes of the evaluation set (id,class), to score a demo submission;",
        "                          real evaluation data has no such file",
        f"{NOISY}-truth.csv  true classes of every noisy-set row (id,class)",
        "",
        "Each dataset folder: audio/<id>.wav (44.1 kHz 16-bit mono), metadata/<NAME>_metadata.csv,",
        "metadata/BST_description.csv (labelled sets), features/clap_{audio,text}_embeddings/<id>.npy",
        "(512-d float32 stand-ins for the shipped LAION-CLAP features: random projections of log-mel",
        "statistics and of hashed metadata words, not real CLAP embeddings).",
        "",
    ]
    return "\n".join(lines)


def _is_up_to_date(out: Path, cfg: DemoConfig) -> bool:
    marker = out / "demo_config.json"
    if not marker.exists():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if (
        saved.get("config") != dataclasses.asdict(cfg)
        or saved.get("generator_version") != GENERATOR_VERSION
        or not saved.get("complete")
    ):
        return False
    for name, info in saved.get("datasets", {}).items():
        root = out / name
        n_audio = sum(1 for _ in (root / "audio").glob("*.wav")) if (root / "audio").is_dir() else -1
        if n_audio != info.get("audio_files") or not (root / "metadata" / f"{name}_metadata.csv").exists():
            return False
    return True


def _prepare(out: Path, overwrite: bool) -> None:
    """Remove what a previous generation wrote (audio/, metadata/, features/ of each set);
    anything else in a dataset folder (e.g. a cache.zarr store) is kept."""
    ours = (out / "demo_config.json").exists()
    for name in DATASETS:
        root = out / name
        present = [root / d for d in ("audio", "metadata", "features") if (root / d).exists()]
        if present and not (ours or overwrite):
            raise FileExistsError(
                f"{root} already holds data not written by python -m demo "
                f"({', '.join(p.name for p in present)}); pass --overwrite to replace it"
            )
        for p in present:
            shutil.rmtree(p)
    (out / "demo_config.json").unlink(missing_ok=True)


def generate_demo(
    out_dir: str | Path,
    seed: int = 0,
    scale: float = 1.0,
    *,
    config: DemoConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
    force: bool = False,
    **config_fields: Any,
) -> dict[str, Any]:
    """Write the three demo datasets under ``out_dir``; return paths and counts.

    ``config`` (or ``seed``, ``scale`` and any other :class:`DemoConfig` field as keyword)
    decides everything; the same config gives byte-identical CSV, WAV and NPY files. If
    ``out_dir`` already holds a complete generation with the same config, nothing is written
    (unless ``force``). Folders that hold data not written by this generator are refused
    unless ``overwrite``.
    """
    cfg = config or DemoConfig(seed=seed, scale=scale, **config_fields)
    out = Path(out_dir)
    t0 = time.perf_counter()
    clips = plan(cfg)
    if not force and _is_up_to_date(out, cfg):
        saved = json.loads((out / "demo_config.json").read_text())
        return _result(out, clips, saved["stats"], skipped=True)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out, overwrite)
    for name in DATASETS:
        for sub in ("audio", "metadata", "features/clap_audio_embeddings", "features/clap_text_embeddings"):
            (out / name / sub).mkdir(parents=True, exist_ok=True)

    all_clips = [c for name in DATASETS for c in clips[name]]
    bar = None
    if progress:
        from cache.progress import progress as progress_bar

        bar = progress_bar(total=len(all_clips), desc="demo clips", unit="clip", file=sys.stderr)
    samples = 0
    for c in all_clips:
        root = out / c.dataset
        wav = root / "audio" / f"{c.key}.wav"
        fa = root / "features" / "clap_audio_embeddings" / f"{c.key}.npy"
        ft = root / "features" / "clap_text_embeddings" / f"{c.key}.npy"
        if c.source is not None:  # shared id: the very same clip as in the clean set
            src_root = out / c.source.dataset
            c.title, c.tags, c.description = c.source.title, c.source.tags, c.source.description
            shutil.copyfile(src_root / "audio" / f"{c.key}.wav", wav)
            shutil.copyfile(src_root / "features" / "clap_audio_embeddings" / f"{c.key}.npy", fa)
            shutil.copyfile(src_root / "features" / "clap_text_embeddings" / f"{c.key}.npy", ft)
        else:
            rng_a = np.random.default_rng([*c.seed_key, 7])
            rng_m = np.random.default_rng([*c.seed_key, 11])
            pcm = demo_audio.to_pcm16(demo_audio.synth_clip(rng_a, c.true_class, c.duration))
            buf = io.BytesIO()  # via memory: soundfile fsyncs real files on close, which is slow
            sf.write(buf, pcm, demo_audio.SR, subtype="PCM_16", format="WAV")
            wav.write_bytes(buf.getvalue())
            samples += pcm.size
            c.title, c.tags, c.description = demo_text.make_metadata(
                rng_m, c.true_class, c.mode, c.lang, c.uploader, c.wrong
            )
            np.save(fa, audio_embedding(pcm.astype(np.float32) / 32768.0, rng_a, cfg.feature_noise))
            np.save(ft, text_embedding(" ".join((c.title, c.tags, c.description)), rng_m, cfg.feature_noise))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    bst = _csv_text(BST_COLUMNS, _bst_rows())
    for name in (CLEAN, NOISY):
        rows = [
            {
                "sound_id": c.key,
                "class": c.label,
                "class_idx": _class_idx(c.label),
                "class_top": top_of(c.label),
                "confidence": c.confidence,
                "uploader": c.uploader,
                "license": c.license,
                "title": c.title,
                "tags": c.tags,
                "description": c.description,
            }
            for c in sorted(clips[name], key=lambda c: int(c.key))
        ]
        (out / name / "metadata" / f"{name}_metadata.csv").write_text(
            _csv_text(METADATA_COLUMNS, rows), encoding="utf-8"
        )
        (out / name / "metadata" / "BST_description.csv").write_text(bst, encoding="utf-8")
    rows = [
        {"anonymous_id": c.key, "title": c.title, "tags": c.tags, "description": c.description}
        for c in sorted(clips[EVAL], key=lambda c: c.key)
    ]
    (out / EVAL / "metadata" / f"{EVAL}_metadata.csv").write_text(
        _csv_text(EVAL_COLUMNS, rows), encoding="utf-8"
    )
    for name in (EVAL, NOISY):
        truth = [{"id": c.key, "class": c.true_class} for c in sorted(clips[name], key=lambda c: c.key)]
        (out / f"{name}-truth.csv").write_text(_csv_text(("id", "class"), truth), encoding="utf-8")

    audio_bytes = sum((out / n / "audio" / f"{c.key}.wav").stat().st_size for n in DATASETS for c in clips[n])
    stats = {
        "seconds": round(time.perf_counter() - t0, 2),
        "audio_hours": round(sum(c.duration for n in DATASETS for c in clips[n]) / 3600, 4),
        "audio_bytes": audio_bytes,
        "samples_synthesised": samples,
    }
    counts = _counts_summary(clips)
    (out / "README.txt").write_text(_readme(cfg, counts), encoding="utf-8")
    marker = {
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "complete": True,
        "datasets": {n: {"rows": counts[n]["rows"], "audio_files": counts[n]["rows"]} for n in DATASETS},
        "counts": counts,
        "stats": stats,
        "provenance": base_provenance("demo.data", seed=cfg.seed),
    }
    (out / "demo_config.json").write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
    return _result(out, clips, stats, skipped=False)


def _counts_summary(clips: dict[str, list[Clip]]) -> dict[str, dict[str, int]]:
    out = {}
    for name, cl in clips.items():
        d = {"rows": len(cl)}
        if name == NOISY:
            d["other"] = sum(c.label.endswith("-other") for c in cl)
            d["top_only"] = sum(c.label in TOP_DIGIT for c in cl)
            tgt = [c for c in cl if c.label in CLASSES]
            d["targets"] = len(tgt)
            d["wrong_labels"] = sum(c.label != c.true_class for c in tgt)
            d["shared"] = sum(c.source is not None for c in cl)
        elif name == CLEAN:
            d["targets"] = len(cl)
        d["informative"] = sum(c.mode == "informative" for c in cl)
        d["misleading"] = sum(c.mode == "misleading" for c in cl)
        d["generic"] = sum(c.mode == "generic" for c in cl)
        out[name] = d
    return out


def _result(out: Path, clips: dict[str, list[Clip]], stats: dict[str, Any], skipped: bool) -> dict[str, Any]:
    counts = _counts_summary(clips)
    datasets = {}
    for n in DATASETS:
        datasets[n] = {"root": out / n, "metadata": out / n / "metadata" / f"{n}_metadata.csv", **counts[n]}
    return {
        "out": out,
        "datasets": datasets,
        "skipped": skipped,
        "truth": {EVAL: out / f"{EVAL}-truth.csv", NOISY: out / f"{NOISY}-truth.csv"},
        "shared_ids": sorted(c.key for c in clips[NOISY] if c.source is not None),
        "readme": out / "README.txt",
        "config": out / "demo_config.json",
        **stats,
    }


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo", description="Generate the synthetic demo datasets in the real BSD layout."
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--config", metavar="TOML", help="a TOML file with a [demo_data] table of DemoConfig values"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--scale", type=float, default=None, help="multiplies all clip counts (default 1.0)")
    p.add_argument("--max-duration", type=float, default=None, help="longest clip in seconds (default 30)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="demo_data.KEY=VALUE",
        help="override any DemoConfig field, e.g. --set demo_data.label_noise=0.3 (repeatable)",
    )
    p.add_argument(
        "--force", action="store_true", help="regenerate even if OUT already holds this exact demo"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace dataset folders in OUT that were not written by python -m demo",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        shorthands = {"seed": args.seed, "scale": args.scale, "max_duration": args.max_duration}
        overrides = [*args.set, *(f"demo_data.{k}={v!r}" for k, v in shorthands.items() if v is not None)]
        cfg = load_demo_config(args.config, overrides)
        res = generate_demo(
            args.out, config=cfg, overwrite=args.overwrite, force=args.force, progress=not args.no_progress
        )
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if res["skipped"]:
        print(f"{res['out']}: demo data already generated with this config (use --force to regenerate)")
    else:
        print(
            f"wrote demo data to {res['out']} in {res['seconds']:.1f} s "
            f"({res['audio_hours'] * 3600:.0f} s of audio, {res['audio_bytes'] / 1e6:.1f} MB of WAV)"
        )
    for name, d in res["datasets"].items():
        extra = ""
        if name == NOISY:
            extra = (
                f"; {d['wrong_labels']}/{d['targets']} target labels wrong, {d['other']} *-other, "
                f"{d['top_only']} top-level-only, {d['shared']} ids shared with {CLEAN}"
            )
        print(f"  {name}: {d['rows']} rows{extra}  ({d['metadata']})")
    print(f"  truth for scoring the demo: {res['truth'][EVAL]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
