"""Typed configuration of ``python -m extract embeddings`` (TOML file + command-line overrides)."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cache.config import ConfigError, field_types, from_dict, parse_value, read_toml, split_override

TEXT_SOURCES = ("summary", "metadata")
DTYPES = ("float16", "float32")
LOADERS = ("auto", "processes", "threads")


@dataclass
class EmbeddingsConfig:
    """Everything one extraction run depends on; saved (resolved) in the store table's attrs."""

    dataset: Path | None = None  # dataset root (metadata/, audio/, features/)
    backbone: str = ""  # registry name (extract.backbones)
    variant: str | None = None  # backbone variant; None = its default
    checkpoint: Path | None = None  # local weights file (folder for M2D)
    tokenizer: Path | None = None  # local tokenizer folder for text towers
    text_source: str | None = None  # "summary" | "metadata"; required for text towers
    summaries: str | None = None  # llm/summaries/<name> to read when text_source = "summary"
    store: Path | None = None  # default: <dataset>/cache.zarr
    group: str | None = None  # table path; default embeddings/<backbone>@<hash8>[~<text-source>]
    dtype: str = "float32"  # stored embedding dtype
    batch_size: int = 0  # windows (or texts) per forward pass; 0 = the backbone's default for the device
    # decode workers (0 = decode in the main process); -1 = auto: 0 on a CPU, where the model's
    # intra-op threads already use every core and decode threads only contend with them (measured
    # 1.26x faster for logmel on 2 cores), 2 on a GPU
    num_workers: int = -1
    # "processes": torch DataLoader worker processes; "threads": a thread pool (soundfile and torch
    # release the GIL); "auto" = threads (worker processes measured slower on a 2-core CPU and on a
    # 16-core GPU host: moving every waveform between processes costs more than it saves)
    loader: str = "auto"
    chunk_rows: int = 256  # rows per resumable chunk
    overwrite: bool = False  # replace an existing table with other settings
    device: str = "auto"  # "auto" (accelerate's device / cuda if available / cpu), "cpu", "cuda:0", …
    autocast: bool = True  # mixed precision on GPU (float16 autocast); ignored on CPU
    random_init: bool = False  # build the backbone without weights (tests, benchmarks); group hash "random"
    seed: int = 0  # torch seed set before building the backbone (random-init weights are reproducible)
    allow_missing: list[str] = field(default_factory=list)  # checkpoint keys allowed to be missing (globs)
    allow_unexpected: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # backbone architecture overrides (TOML table)
    progress: bool = True  # tqdm progress bar

    def validate(self) -> "EmbeddingsConfig":
        if self.dataset is None:
            raise ValueError("--dataset is required (a dataset root with metadata/ and audio/)")
        if not self.backbone:
            raise ValueError("--backbone is required")
        if self.text_source is not None and self.text_source not in TEXT_SOURCES:
            raise ValueError(f"--text-source must be one of {TEXT_SOURCES}, got {self.text_source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if int(self.batch_size) < 0:
            raise ValueError(f"batch_size must be >= 1 (or 0 = the backbone's default), got {self.batch_size}")
        if int(self.chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")
        if self.loader not in LOADERS:
            raise ValueError(f"--loader must be one of {LOADERS}, got {self.loader!r}")
        if int(self.num_workers) < -1:
            raise ValueError(f"num_workers must be >= 0 (or -1 = auto), got {self.num_workers}")
        return self

    @property
    def store_path(self) -> Path:
        from cache.store import default_store_path

        return Path(self.store) if self.store else default_store_path(self.dataset)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Fields from a TOML file: top-level keys, or an ``[embeddings]`` table. Unknown keys raise."""
    data = read_toml(path)
    if "embeddings" in data and isinstance(data["embeddings"], dict):
        data = data["embeddings"]
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = field_types(EmbeddingsConfig)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def _parse_override(item: str) -> tuple[str, Any]:
    try:
        key, text = split_override(item, "--override")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return key, parse_value(text)


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="python -m extract embeddings",
        description="Extract embeddings of every clip of a dataset into its cache store (resumable, shardable "
                    "with accelerate launch).",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML file with any of the options below")
    p.add_argument("--dataset", type=Path, default=S, help="dataset root (metadata/, audio/, features/)")
    p.add_argument("--backbone", default=S, help="registered backbone name (logmel, minilm, shipped, passt, …)")
    p.add_argument("--variant", default=S, help="backbone variant (default: the backbone's default)")
    p.add_argument("--checkpoint", type=Path, default=S, help="local weights file (M2D: weights folder)")
    p.add_argument("--tokenizer", type=Path, default=S, help="local tokenizer folder for text towers")
    p.add_argument("--text-source", dest="text_source", choices=TEXT_SOURCES, default=S,
                   help="text fed to a text tower: cached LLM summaries or cleaned metadata (required for text towers)")
    p.add_argument("--summaries", default=S, help="name of llm/summaries/<NAME> (default: the only one in the store)")
    p.add_argument("--store", type=Path, default=S, help="cache store path (default: <dataset>/cache.zarr)")
    p.add_argument("--group", default=S, help="table path (default: embeddings/<backbone>@<hash8>[~<text-source>])")
    p.add_argument("--dtype", choices=DTYPES, default=S, help="stored embedding dtype (default float32)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=S, help="windows/texts per forward (0 = the backbone's default: 32; logmel on a CPU 2)")
    p.add_argument("--num-workers", dest="num_workers", type=int, default=S, help="decode workers (-1 = auto: 0 on a CPU, 2 on a GPU)")
    p.add_argument("--loader", choices=LOADERS, default=S,
                   help="decode in DataLoader worker processes, in threads, or auto (default: threads; "
                        "measured faster than worker processes on CPU and GPU hosts)")
    p.add_argument("--chunk-rows", dest="chunk_rows", type=int, default=S, help="rows per resumable chunk (256)")
    p.add_argument("--overwrite", action="store_const", const=True, default=S,
                   help="replace an existing table made with other settings")
    p.add_argument("--device", default=S, help="auto (default), cpu, cuda, cuda:1, …")
    p.add_argument("--no-autocast", dest="autocast", action="store_const", const=False, default=S,
                   help="run in float32 on GPU too")
    p.add_argument("--random-init", dest="random_init", action="store_const", const=True, default=S,
                   help="build the backbone with random weights (tests/benchmarks only)")
    p.add_argument("--seed", type=int, default=S, help="torch seed before building the backbone (0)")
    p.add_argument("--allow-missing", dest="allow_missing", action="append", default=S, metavar="GLOB",
                   help="checkpoint key allowed to be missing (repeatable)")
    p.add_argument("--allow-unexpected", dest="allow_unexpected", action="append", default=S, metavar="GLOB",
                   help="unexpected checkpoint key to ignore (repeatable)")
    p.add_argument("--override", dest="overrides", action="append", type=_parse_override, default=S,
                   metavar="KEY=VALUE", help="backbone architecture override (repeatable; TOML value syntax)")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=S,
                   help="no progress bar")
    return p


def parse_config(argv: Sequence[str]) -> EmbeddingsConfig:
    """Defaults < TOML file (``--config``) < command-line options."""
    args = vars(build_parser().parse_args(list(argv)))
    values: dict[str, Any] = {}
    cfg_file = args.pop("config", None)
    if cfg_file is not None:
        values.update(load_toml(cfg_file))
    if "overrides" in args:
        merged = dict(values.get("overrides") or {})
        merged.update(dict(args.pop("overrides")))
        args["overrides"] = merged
    values.update(args)
    # command-line values are typed by argparse: a value that does not fit comes from the file
    cfg = from_dict(EmbeddingsConfig, values, str(cfg_file) if cfg_file is not None else "command line")
    return cfg.validate()
