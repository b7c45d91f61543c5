"""Typed configuration of ``python -m extract embeddings``.

One convention, parsed by ``cache.config`` alone: ``--config FILE.toml`` (the fields of
:class:`EmbeddingsConfig` as top-level keys, architecture overrides in an ``[arch]`` table) plus
repeatable ``--set key=value`` (``--set batch_size=64``, ``--set arch.depth=2``). The dedicated
flags (``--dataset``, ``--backbone``, ``--batch-size``, …, ``--arch KEY=VALUE``) are shorthands
for ``--set`` of one key each (:data:`SHORTHANDS`). Precedence: defaults < file < ``--set`` <
shorthands. The resolved configuration is recorded in the table's attributes (``config``) and
reads back with :func:`cache.config.load_config` after :func:`cache.config.dump_toml`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.config import dump_toml, load_config, split_override, to_dict

TEXT_SOURCES = ("summary", "metadata", "tags")
DTYPES = ("float16", "float32")
LOADERS = ("auto", "processes", "threads")


class ExtractionError(RuntimeError):
    """The run cannot start (bad option combination, missing summaries, mismatching table…)."""


@dataclass
class EmbeddingsConfig:
    """Everything one extraction run depends on; saved (resolved) in the store table's attrs."""

    dataset: Path | None = None  # dataset root (metadata/, audio/, features/)
    backbone: str = ""  # registry name (extract.backbones)
    variant: str | None = None  # backbone variant; None = its default
    checkpoint: Path | None = None  # local weights file (folder for M2D)
    tokenizer: Path | None = None  # local tokenizer folder for text towers
    text_source: str | None = None  # "summary" | "metadata" | "tags"; required for text towers
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
    arch: dict[str, Any] = field(default_factory=dict)  # backbone architecture overrides ([arch] table)
    progress: bool = True  # tqdm progress bar

    def validate(self) -> EmbeddingsConfig:
        if self.dataset is None:
            raise ValueError("--dataset is required (a dataset root with metadata/ and audio/)")
        if not self.backbone:
            raise ValueError("--backbone is required")
        if self.text_source is not None and self.text_source not in TEXT_SOURCES:
            raise ValueError(f"--text-source must be one of {TEXT_SOURCES}, got {self.text_source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if int(self.batch_size) < 0:
            raise ValueError(
                f"batch_size must be >= 1 (or 0 = the backbone's default), got {self.batch_size}"
            )
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
        """The JSON/TOML-ready dict recorded in the table's ``config`` attribute."""
        return to_dict(self)


#: dedicated flags: (flag, config key, argparse keywords). Each is a shorthand for ``--set KEY=VALUE``.
SHORTHANDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--dataset", "dataset", dict(type=Path, help="dataset root (metadata/, audio/, features/)")),
    ("--backbone", "backbone", dict(help="registered backbone name (logmel, minilm, shipped, passt, …)")),
    ("--variant", "variant", dict(help="backbone variant (default: the backbone's default)")),
    ("--checkpoint", "checkpoint", dict(type=Path, help="local weights file (M2D: weights folder)")),
    ("--tokenizer", "tokenizer", dict(type=Path, help="local tokenizer folder for text towers")),
    (
        "--text-source",
        "text_source",
        dict(
            choices=TEXT_SOURCES,
            help="text fed to a text tower: cached LLM "
            "summaries, cleaned metadata, or the tags as keywords (required for "
            "text towers)",
        ),
    ),
    (
        "--summaries",
        "summaries",
        dict(help="name of llm/summaries/<NAME> (default: the only one in the store)"),
    ),
    ("--store", "store", dict(type=Path, help="cache store path (default: <dataset>/cache.zarr)")),
    ("--group", "group", dict(help="table path (default: embeddings/<backbone>@<hash8>[~<text-source>])")),
    ("--dtype", "dtype", dict(choices=DTYPES, help="stored embedding dtype (default float32)")),
    (
        "--batch-size",
        "batch_size",
        dict(type=int, help="windows/texts per forward (0 = the backbone's default: 32; logmel on a CPU 2)"),
    ),
    (
        "--num-workers",
        "num_workers",
        dict(type=int, help="decode workers (-1 = auto: 0 on a CPU, 2 on a GPU)"),
    ),
    (
        "--loader",
        "loader",
        dict(
            choices=LOADERS,
            help="decode in DataLoader worker processes, in threads, or auto "
            "(default: threads; measured faster than worker processes on CPU and GPU hosts)",
        ),
    ),
    ("--chunk-rows", "chunk_rows", dict(type=int, help="rows per resumable chunk (256)")),
    (
        "--overwrite",
        "overwrite",
        dict(action="store_const", const=True, help="replace an existing table made with other settings"),
    ),
    ("--device", "device", dict(help="auto (default), cpu, cuda, cuda:1, …")),
    ("--no-autocast", "autocast", dict(action="store_const", const=False, help="run in float32 on GPU too")),
    (
        "--random-init",
        "random_init",
        dict(
            action="store_const",
            const=True,
            help="build the backbone with random weights (tests/benchmarks only)",
        ),
    ),
    ("--seed", "seed", dict(type=int, help="torch seed before building the backbone (0)")),
    (
        "--allow-missing",
        "allow_missing",
        dict(action="append", metavar="GLOB", help="checkpoint key allowed to be missing (repeatable)"),
    ),
    (
        "--allow-unexpected",
        "allow_unexpected",
        dict(action="append", metavar="GLOB", help="unexpected checkpoint key to ignore (repeatable)"),
    ),
    ("--no-progress", "progress", dict(action="store_const", const=False, help="no progress bar")),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m extract embeddings",
        description="Extract embeddings of every clip of a dataset into its cache store (resumable, "
        "shardable with accelerate launch). Configuration: --config FILE.toml and --set KEY=VALUE; the other "
        "options are shorthands for --set of one key (they win over --set and the file).",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML file: EmbeddingsConfig keys, [arch] table")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key (repeatable; TOML value syntax), e.g. batch_size=64 or arch.depth=2",
    )
    for flag, key, kw in SHORTHANDS:
        kw = dict(kw)
        kw["help"] = f"{kw['help']} [{key}]"
        p.add_argument(flag, dest=key, default=None, **kw)
    p.add_argument(
        "--arch",
        dest="arch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backbone architecture override (repeatable; TOML value syntax) [arch.KEY]",
    )
    p.add_argument(  # deprecated alias of --arch
        "--override",
        dest="deprecated_override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=argparse.SUPPRESS,
    )
    return p


def _toml_literal(value: Any) -> str:
    """``value`` as a TOML literal (the text after ``=`` in a ``--set``), written by cache.config."""
    return dump_toml({"v": value}).strip()[len("v = ") :]


def shorthand_sets(args: argparse.Namespace) -> list[str]:
    """The ``KEY=VALUE`` items the dedicated flags given stand for (``--arch k=v`` → ``arch.k=v``)."""
    items = []
    for _, key, _ in SHORTHANDS:
        value = getattr(args, key)
        if value is not None:
            items.append(f"{key}={_toml_literal(str(value) if isinstance(value, Path) else value)}")
    for option, arch_items in (("--override", args.deprecated_override), ("--arch", args.arch)):
        for item in arch_items:
            key, text = split_override(item, option)
            items.append(f"arch.{key}={text}")
    return items


def parse_config(argv: Sequence[str]) -> EmbeddingsConfig:
    """Defaults < TOML file (``--config``) < ``--set`` < dedicated flags; validated."""
    args = build_parser().parse_args(list(argv))
    if args.deprecated_override:
        print(
            "note: --override is deprecated; use --arch KEY=VALUE (backbone architecture overrides)",
            file=sys.stderr,
        )
    for item in args.sets:
        split_override(item, "--set")  # a malformed item is named as the user wrote it
    return load_config(EmbeddingsConfig, args.config, [*args.sets, *shorthand_sets(args)]).validate()
