"""Command line of the data layer: ``python -m cache <command> ...``.

Commands: ``validate`` (read and check dataset manifests), ``split`` (build and save a
development split), ``info`` / ``failures`` (inspect a cache store), ``verify`` (check every
chunk of a store), ``export`` / ``import`` (HDF5 copies of complete tables). The demo dataset
comes from ``python -m demo``. Exit codes: 0 success (``validate`` also when rows have
problems), 1 ``verify`` found damage, 2 bad input (one line; ``--debug`` shows the traceback).
See ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cli_output import quiet_on_closed_pipe
from .errors import SchemaError, describe_os_error
from .locks import LockedError
from .manifest import Manifest, ManifestError, load_class_descriptions, load_manifest, shared_ids
from .schema import FAILED, OK, PENDING, WARNING
from .store import Store
from .taxonomy import CLASSES
from .verify import Report, broken_metadata, missing_chunk_files, verify_store, verify_table


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------- validate
def _non_target_counts(m: Manifest) -> dict[str, int]:
    return {
        k.removeprefix("non_target_"): v
        for k, v in sorted(m.report.counts.items())
        if k.startswith("non_target_")
    }


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
            print(
                "non-target rows dropped: " + (", ".join(f"{k} {v}" for k, v in nt.items()) if nt else "none")
            )
            desc = load_class_descriptions(m.root)
            if desc is None:
                print("class descriptions: metadata/BST_description.csv not found")
            else:
                lacking = [c for c in CLASSES if c not in desc]
                print(
                    f"class descriptions: {len(desc)}/{len(CLASSES)} classes in BST_description.csv"
                    + (f" (missing: {', '.join(lacking)})" if lacking else "")
                )
        print()
    labelled = {
        f"{m.name} ({i})" if [x.name for x in manifests].count(m.name) > 1 else m.name: m.class_counts()
        for i, m in enumerate(manifests)
        if m.labelled
    }
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
        split = split_manifest(
            m,
            preset=args.preset,
            fold=args.fold,
            seed=args.seed,
            n_folds=args.n_folds,
            val_size=args.val_size,
        )
    except ValueError as e:
        return _fail(str(e))
    split.save(args.out)
    label = dict(zip(m.ids.tolist(), m.labels.tolist(), strict=True))
    counts = {}
    for part in ("train", "val", "test"):
        bc = np.bincount([label[i] for i in split.part(part)], minlength=len(CLASSES))
        counts[part] = {c: int(n) for c, n in zip(CLASSES, bc, strict=False)}
    print(split.describe())
    print(_class_table(counts))
    print(f"saved {args.out}")
    return 0


# ---------------------------------------------------------------------------- store inspection
def _open_store(path: str) -> Store:
    return Store(path, mode="r")


def _provenance_summary(attrs: dict) -> str:
    keys = (
        "producer",
        "created",
        "code_version",
        "backbone",
        "checkpoint_sha256",
        "manifest_digest",
        "seed",
        "prompt_version",
        "model",
    )
    parts = [
        f"{k}={str(attrs[k])[:16] if k.endswith(('sha256', 'digest')) else attrs[k]}"
        for k in keys
        if k in attrs
    ]
    if "imported_from" in attrs:
        parts.append(f"imported_from={attrs['imported_from'].get('file')}")
    return ", ".join(parts) or "no provenance attributes"


def _table_error(store: Store, table: str, e: Exception) -> str:
    """One line for a table that cannot be read: the damaged file when ``verify`` finds it, else the error."""
    if isinstance(e, SchemaError) and "schema v" in str(e):
        return str(e)
    report = Report()
    try:
        verify_table(store, table, report)
    except Exception:  # noqa: BLE001 (the diagnosis must not hide the original error)
        pass
    if report.problems:
        return _first_problem(report.problems, store.path)
    return f"table '{table}' in {store.path} cannot be read ({type(e).__name__}: {e})"


def _info_table(store: Store, t: str) -> tuple[int, int, bool]:
    """Print one table of ``info``; returns (failed rows, rows with warnings, damaged)."""
    a = store.attrs(t)
    g = store.root[t]
    arrays = ", ".join(
        f"{n}{tuple(g[n].shape)}:{g[n].dtype}"
        for n in sorted(g.array_keys())
        if n not in ("ids", "status", "error", "warning", "chunk_done")
    )
    w = store.open_rows(t) if a.get("kind") == "rows" else None
    missing = missing_chunk_files(store, t, rows=w) if "kind" in a else []
    damaged = f"DAMAGED ({len(missing)} chunk file(s) missing)" if missing else ""
    nf = nw = 0
    if "kind" not in a:
        print(f"- {t}  [INCOMPLETE: its creation was interrupted; re-running its producer recreates it]")
    elif w is not None:
        status = np.asarray(g["status"][...])
        nf = int((status == FAILED).sum())
        nw = sum(1 for x in g[WARNING][...] if x) if w.has_warnings else 0  # older tables lack the array
        done = int(w.done_mask().sum())
        state = damaged or (
            "complete"
            if a.get("complete") and done == w.n_chunks
            else f"INCOMPLETE ({done}/{w.n_chunks} chunks)"
        )
        print(
            f"- {t}  [row table, {a.get('n_rows')} rows, {state}; ok {int((status == OK).sum())}, "
            f"failed {nf}, pending {int((status == PENDING).sum())}" + (f", warnings {nw}]" if nw else "]")
        )
    else:
        state = damaged or ("complete" if a.get("complete") else "INCOMPLETE")
        print(f"- {t}  [table, {a.get('n_rows')} rows, {state}]")
    for line in missing[:5]:
        print(f"    missing: {line}")
    if len(missing) > 5:
        print(f"    … and {len(missing) - 5} more")
    print(f"    arrays: {arrays or 'none'}")
    print(f"    provenance: {_provenance_summary(a)}")
    return nf, nw, bool(missing)


def cmd_info(args: argparse.Namespace) -> int:
    broken = broken_metadata(args.store)
    if broken:
        return _fail(_first_problem([line for _, line in broken], args.store))
    try:
        store = _open_store(args.store)
    except (FileNotFoundError, SchemaError) as e:
        return _fail(str(e))
    root = dict(store.root.attrs)
    print(
        f"store {store.path} (cache schema v{root.get('schema_version')}, created {root.get('created', '?')})"
    )
    tables = store.tables()
    if not tables:
        print("no tables")
    n_failed, n_warned, n_damaged = 0, 0, 0
    for t in tables:
        try:
            nf, nw, damaged = _info_table(store, t)
        except (SchemaError, ValueError, RuntimeError, OSError, KeyError) as e:
            if args.debug:
                raise
            return _fail(_table_error(store, t, e))
        n_failed += nf
        n_warned += nw
        n_damaged += damaged
    print(
        f"{len(tables)} table(s); {n_failed} failed row(s)"
        + (f", {n_warned} row(s) with warnings" if n_warned else "")
        + (" (see: python -m cache failures)" if n_failed or n_warned else "")
    )
    if n_damaged:
        print(
            f"{n_damaged} DAMAGED table(s): chunk files they say were written are missing; "
            f"run python -m cache verify --store {store.path}, then re-run their producers"
        )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if not Path(args.store).is_dir():
        return _fail(f"cache store not found: {args.store}")
    report = verify_store(args.store)
    for line in report.problems:
        print(line)
    for line in report.notes:
        print(f"note: {line}", file=sys.stderr)
    print(
        f"{report.tables} table(s), {report.chunks} chunk(s) checked: "
        + (f"{len(report.problems)} problem(s)" if report.problems else "no problems"),
        file=sys.stderr,
    )
    return 1 if report.problems else 0


def cmd_failures(args: argparse.Namespace) -> int:
    try:
        store = _open_store(args.store)
    except (FileNotFoundError, SchemaError) as e:
        return _fail(str(e))

    def wanted(t: str) -> bool:
        return not args.table or t == args.table or t.startswith(args.table + "/")

    rows = [r for r in store.failures() if wanted(r[0])]
    warns = [r for r in store.warnings() if wanted(r[0])]  # usable rows with suspicious input
    for t, cid, reason in rows:
        print(f"{t}\t{cid}\t{reason}")
    for t, cid, text in warns:
        print(f"{t}\t{cid}\twarning: {text}")
    print(
        f"{len(rows)} failed row(s)" + (f", {len(warns)} row(s) with warnings (embedded)" if warns else ""),
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------------------- hdf5
def cmd_export(args: argparse.Namespace) -> int:
    from .hdf5 import ExportError, export_hdf5

    try:
        store = _open_store(args.store)
        done = export_hdf5(
            store,
            args.out,
            args.group,
            skip_incomplete=args.skip_incomplete,
            compression=args.compression,
            progress=True,
        )
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
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show the traceback of an error")

    v = sub.add_parser(
        "validate",
        parents=[debug],
        help="read and check dataset folders; report problems, counts and shared ids",
    )
    v.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="DIR",
        help="dataset root (audio/, metadata/); repeat for several",
    )
    v.add_argument("--no-audio-check", action="store_true", help="do not require audio/<id>.wav to exist")
    v.add_argument(
        "--max-lines", type=int, default=50, help="problems listed per dataset (the rest summarised)"
    )
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser(
        "split",
        parents=[debug],
        help="build a stratified train/val/test split of one fold and save it as JSON",
    )
    s.add_argument("--dataset", required=True, metavar="DIR")
    s.add_argument("--preset", default="cpjku", choices=["cpjku", "baseline", "custom"])
    s.add_argument("--seed", type=int, default=None, help="seed for --preset custom")
    s.add_argument("--fold", type=int, default=0)
    s.add_argument("--n-folds", type=int, default=5)
    s.add_argument("--val-size", type=float, default=0.2)
    s.add_argument("--out", required=True, metavar="SPLIT.json")
    s.add_argument(
        "--no-audio-check", action="store_true", help="split on metadata rows even if audio is missing"
    )
    s.set_defaults(func=cmd_split)

    i = sub.add_parser(
        "info", parents=[debug], help="tables of a cache store, their rows, provenance and failures"
    )
    i.add_argument("--store", required=True, metavar="S.zarr")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser(
        "verify",
        parents=[debug],
        help="check every chunk of every table of a store (exit 1 and one line per problem)",
    )
    c.add_argument("--store", required=True, metavar="S.zarr")
    c.set_defaults(func=cmd_verify)

    f = sub.add_parser(
        "failures",
        parents=[debug],
        help="list failed rows (table, id, reason) of a store, then rows "
        "with warnings (table, id, 'warning: …'; embedded, but their input is suspicious)",
    )
    f.add_argument("--store", required=True, metavar="S.zarr")
    f.add_argument("--table", default=None, help="only this table (or prefix)")
    f.set_defaults(func=cmd_failures)

    e = sub.add_parser("export", parents=[debug], help="export complete tables of a store to HDF5")
    e.add_argument("--store", required=True, metavar="S.zarr")
    e.add_argument("--out", required=True, metavar="F.h5")
    e.add_argument(
        "--group",
        action="append",
        default=None,
        metavar="G",
        help="table path or prefix (e.g. embeddings); repeat; default all",
    )
    e.add_argument(
        "--skip-incomplete", action="store_true", help="leave incomplete tables out instead of refusing"
    )
    e.add_argument(
        "--compression", default=None, choices=["gzip", "lzf"], help="HDF5 compression (default none)"
    )
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("import", parents=[debug], help="import tables of an HDF5 export into a store")
    m.add_argument("--store", required=True, metavar="S.zarr")
    m.add_argument("--h5", required=True, metavar="F.h5")
    m.add_argument(
        "--group", action="append", default=None, metavar="G", help="table path or prefix; default all"
    )
    m.add_argument("--overwrite", action="store_true", help="replace tables that already exist in the store")
    m.set_defaults(func=cmd_import)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    return quiet_on_closed_pipe(lambda: _main(build_parser().parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        raise
    except (SchemaError, LockedError, ManifestError, OSError, ValueError, RuntimeError, KeyError) as e:
        if args.debug:
            raise
        if isinstance(e, (SchemaError, LockedError, ManifestError, FileNotFoundError)):
            return _fail(str(e))
        if isinstance(e, OSError) and e.errno:  # disk full, read-only, forbidden: not store damage
            return _fail(describe_os_error(e))
        found = _diagnose(getattr(args, "store", None))  # a damaged store: name the file
        return _fail(found or f"{type(e).__name__}: {e} (run with --debug for the traceback)")


def _diagnose(store: str | None) -> str | None:
    """The first damage ``verify`` finds in ``store`` (a broken zarr.json or chunk), as one line."""
    if not store or not Path(store).is_dir():
        return None
    try:
        problems = verify_store(store).problems
    except Exception:  # noqa: BLE001 (the diagnosis must not hide the original error)
        return None
    return _first_problem(problems, store) if problems else None


def _first_problem(problems: Sequence[str], store) -> str:
    """The first of ``problems``, pointing at ``cache verify`` for the others."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more: python -m cache verify --store {store})" if more else "")


if __name__ == "__main__":
    sys.exit(main())
