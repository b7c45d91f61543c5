"""Command line of the data layer: ``python -m cache <command> ...``.

Commands: ``validate`` (read and check dataset manifests), ``split`` (build and save a
development split), ``info`` / ``failures`` (inspect a cache store), ``export`` /
``import`` (HDF5 copies of complete tables). The demo dataset comes from ``python -m demo``.
Exit codes: 0 success (``validate`` also when rows have problems), 2 bad input.
See ``docs/data.md``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from typing import Sequence

import numpy as np

from .manifest import Manifest, ManifestError, load_class_descriptions, load_manifest, shared_ids
from .store import FAILED, OK, PENDING, SchemaError, Store
from .taxonomy import CLASSES


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------- validate
def _non_target_counts(m: Manifest) -> dict[str, int]:
    return {k.removeprefix("non_target_"): v for k, v in sorted(m.report.counts.items()) if k.startswith("non_target_")}


def _class_table(columns: dict[str, dict[str, int]]) -> str:
    names = list(columns)
    lines = ["| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for c in CLASSES:
        lines.append(f"| {c} | " + " | ".join(str(columns[n].get(c, 0)) for n in names) + " |")
    lines.append("| total | " + " | ".join(str(sum(columns[n].values())) for n in names) + " |")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    manifests: list[Manifest] = []
    unreadable = 0
    for d in args.dataset:
        try:
            m = load_manifest(d, require_audio=not args.no_audio_check)
        except (ManifestError, OSError) as e:
            print(f"== {d}: cannot be read\n{e}\n")
            unreadable += 1
            continue
        manifests.append(m)
        print(f"== {m.name} ({m.csv_path})")
        print(m.report.format(max_lines=args.max_lines))
        print(f"usable rows: {len(m)} ({'labelled' if m.labelled else 'unlabelled, keyed by anonymous_id'})")
        nt = _non_target_counts(m)
        if m.labelled:
            print("non-target rows dropped: " + (", ".join(f"{k} {v}" for k, v in nt.items()) if nt else "none"))
            desc = load_class_descriptions(m.root)
            if desc is None:
                print("class descriptions: metadata/BST_description.csv not found")
            else:
                lacking = [c for c in CLASSES if c not in desc]
                print(f"class descriptions: {len(desc)}/{len(CLASSES)} classes in BST_description.csv"
                      + (f" (missing: {', '.join(lacking)})" if lacking else ""))
        print()
    labelled = {f"{m.name} ({i})" if [x.name for x in manifests].count(m.name) > 1 else m.name: m.class_counts()
                for i, m in enumerate(manifests) if m.labelled}
    if labelled:
        print("usable rows per class:")
        print(_class_table(labelled))
        print()
    for a, b in itertools.combinations(manifests, 2):
        both = shared_ids(a, b)
        sample = ", ".join(both[:10]) + (" …" if len(both) > 10 else "")
        print(f"ids shared by {a.name} and {b.name}: {len(both)}" + (f" ({sample})" if both else ""))
    return 2 if unreadable else 0


# ---------------------------------------------------------------------------- split
def cmd_split(args: argparse.Namespace) -> int:
    from .splits import split_manifest

    try:
        m = load_manifest(args.dataset, require_audio=not args.no_audio_check)
    except (ManifestError, OSError) as e:
        return _fail(f"cannot read dataset {args.dataset}:\n{e}")
    if not m.labelled:
        return _fail(f"{m.name} is unlabelled (anonymous_id); only labelled sets can be split")
    try:
        split = split_manifest(m, preset=args.preset, fold=args.fold, seed=args.seed,
                               n_folds=args.n_folds, val_size=args.val_size)
    except ValueError as e:
        return _fail(str(e))
    split.save(args.out)
    label = dict(zip(m.ids.tolist(), m.labels.tolist()))
    counts = {}
    for part in ("train", "val", "test"):
        bc = np.bincount([label[i] for i in split.part(part)], minlength=len(CLASSES))
        counts[part] = {c: int(n) for c, n in zip(CLASSES, bc)}
    print(split.describe())
    print(_class_table(counts))
    print(f"saved {args.out}")
    return 0


# ---------------------------------------------------------------------------- store inspection
def _open_store(path: str) -> Store:
    return Store(path, mode="r")


def _provenance_summary(attrs: dict) -> str:
    keys = ("producer", "created", "code_version", "backbone", "checkpoint_sha256", "manifest_digest", "seed",
            "prompt_version", "model")
    parts = [f"{k}={str(attrs[k])[:16] if k.endswith(('sha256', 'digest')) else attrs[k]}" for k in keys if k in attrs]
    if "imported_from" in attrs:
        parts.append(f"imported_from={attrs['imported_from'].get('file')}")
    return ", ".join(parts) or "no provenance attributes"


def cmd_info(args: argparse.Namespace) -> int:
    try:
        store = _open_store(args.store)
    except (FileNotFoundError, SchemaError) as e:
        return _fail(str(e))
    root = dict(store.root.attrs)
    print(f"store {store.path} (cache schema v{root.get('schema_version')}, created {root.get('created', '?')})")
    tables = store.tables()
    if not tables:
        print("no tables")
    n_failed = 0
    for t in tables:
        a = store.attrs(t)
        g = store.root[t]
        arrays = ", ".join(f"{n}{tuple(g[n].shape)}:{g[n].dtype}" for n in sorted(g.array_keys())
                           if n not in ("ids", "status", "error", "chunk_done"))
        if a.get("kind") == "rows":
            w = store.open_rows(t)
            status = np.asarray(g["status"][...])
            nf = int((status == FAILED).sum())
            n_failed += nf
            done = int(w.done_mask().sum())
            state = "complete" if a.get("complete") else f"INCOMPLETE ({done}/{w.n_chunks} chunks)"
            print(f"- {t}  [row table, {a.get('n_rows')} rows, {state}; ok {int((status == OK).sum())}, "
                  f"failed {nf}, pending {int((status == PENDING).sum())}]")
        else:
            state = "complete" if a.get("complete") else "INCOMPLETE"
            print(f"- {t}  [table, {a.get('n_rows')} rows, {state}]")
        print(f"    arrays: {arrays or 'none'}")
        print(f"    provenance: {_provenance_summary(a)}")
    print(f"{len(tables)} table(s); {n_failed} failed row(s)" + (" (see: python -m cache failures)" if n_failed else ""))
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    try:
        store = _open_store(args.store)
    except (FileNotFoundError, SchemaError) as e:
        return _fail(str(e))
    rows = [r for r in store.failures() if not args.table or r[0] == args.table or r[0].startswith(args.table + "/")]
    for t, cid, reason in rows:
        print(f"{t}\t{cid}\t{reason}")
    print(f"{len(rows)} failed row(s)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- hdf5
def cmd_export(args: argparse.Namespace) -> int:
    from .hdf5 import ExportError, export_hdf5

    try:
        store = _open_store(args.store)
        done = export_hdf5(store, args.out, args.group, skip_incomplete=args.skip_incomplete,
                           compression=args.compression, progress=True)
    except (FileNotFoundError, SchemaError, ExportError) as e:
        return _fail(str(e))
    print(f"exported {len(done)} table(s) to {args.out}: {', '.join(done)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .hdf5 import ExportError, import_hdf5

    try:
        store = Store(args.store, mode="a")
        done = import_hdf5(store, args.h5, args.group, overwrite=args.overwrite, progress=True)
    except (FileNotFoundError, SchemaError, ExportError) as e:
        return _fail(str(e))
    print(f"imported {len(done)} table(s) into {args.store}: {', '.join(done)}")
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cache", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="read and check dataset folders; report problems, counts and shared ids")
    v.add_argument("--dataset", action="append", required=True, metavar="DIR",
                   help="dataset root (audio/, metadata/); repeat for several")
    v.add_argument("--no-audio-check", action="store_true", help="do not require audio/<id>.wav to exist")
    v.add_argument("--max-lines", type=int, default=50, help="problems listed per dataset (the rest summarised)")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("split", help="build a stratified train/val/test split of one fold and save it as JSON")
    s.add_argument("--dataset", required=True, metavar="DIR")
    s.add_argument("--preset", default="cpjku", choices=["cpjku", "baseline", "custom"])
    s.add_argument("--seed", type=int, default=None, help="seed for --preset custom")
    s.add_argument("--fold", type=int, default=0)
    s.add_argument("--n-folds", type=int, default=5)
    s.add_argument("--val-size", type=float, default=0.2)
    s.add_argument("--out", required=True, metavar="SPLIT.json")
    s.add_argument("--no-audio-check", action="store_true", help="split on metadata rows even if audio is missing")
    s.set_defaults(func=cmd_split)

    i = sub.add_parser("info", help="tables of a cache store, their rows, provenance and failures")
    i.add_argument("--store", required=True, metavar="S.zarr")
    i.set_defaults(func=cmd_info)

    f = sub.add_parser("failures", help="list failed rows (table, id, reason) of a store")
    f.add_argument("--store", required=True, metavar="S.zarr")
    f.add_argument("--table", default=None, help="only this table (or prefix)")
    f.set_defaults(func=cmd_failures)

    e = sub.add_parser("export", help="export complete tables of a store to HDF5")
    e.add_argument("--store", required=True, metavar="S.zarr")
    e.add_argument("--out", required=True, metavar="F.h5")
    e.add_argument("--group", action="append", default=None, metavar="G",
                   help="table path or prefix (e.g. embeddings); repeat; default all")
    e.add_argument("--skip-incomplete", action="store_true", help="leave incomplete tables out instead of refusing")
    e.add_argument("--compression", default=None, choices=["gzip", "lzf"], help="HDF5 compression (default none)")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("import", help="import tables of an HDF5 export into a store")
    m.add_argument("--store", required=True, metavar="S.zarr")
    m.add_argument("--h5", required=True, metavar="F.h5")
    m.add_argument("--group", action="append", default=None, metavar="G", help="table path or prefix; default all")
    m.add_argument("--overwrite", action="store_true", help="replace tables that already exist in the store")
    m.set_defaults(func=cmd_import)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
