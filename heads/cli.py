"""``python -m heads <command>``: the head tier's command line.

Commands that take ``--config FILE.toml`` also take ``--set key=value`` overrides (repeatable),
e.g. ``--set stage1.k=8 --set train.device=cpu``; the resolved config is saved with the results.
Exit codes: 0 success, 2 a user error (one line naming the file, table or field and what to do;
``--debug`` shows the traceback instead), 141 when the reader of the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import json
import sys

from cache.cli_output import quiet_on_closed_pipe
from cache.config import ConfigError, load_config


def _add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", required=required, help="TOML config file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable), e.g. stage1.k=8",
    )


def _add_data(p: argparse.ArgumentParser, split: bool = True) -> None:
    g = p.add_argument_group("data folders of a --config (shortcuts for --set data.*)")
    g.add_argument("--clean", help="clean labelled dataset root (data.clean.root)")
    g.add_argument("--noisy", help="noisy labelled dataset root (data.noisy.root)")
    g.add_argument("--eval", help="unlabelled evaluation dataset root (data.eval.root)")
    if split:
        g.add_argument("--split", help="split JSON (data.split_file)")


def _pipeline_cfg(args):
    from .pipeline_config import PipelineConfig

    overrides = list(args.overrides)
    for flag, key in (
        ("clean", "data.clean.root"),
        ("noisy", "data.noisy.root"),
        ("eval", "data.eval.root"),
        ("split", "data.split_file"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(str(value))}")
    if getattr(args, "out", None):
        overrides.append(f"out={json.dumps(str(args.out))}")
    return load_config(PipelineConfig, args.config, overrides)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m heads", description=__doc__.split("\n")[0])
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True)
    # --debug after the command too (SUPPRESS: a subcommand's default must not undo the top-level flag)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )
    sub.add_parser = _with_parents(sub.add_parser, debug)

    p = sub.add_parser(
        "pipeline", help="stage 1 search → pseudo-labels → stages 2, 3 → ensemble → report → submission"
    )
    _add_config(p)
    p.add_argument("--out", help="output folder (overrides the config's out)")
    _add_data(p)

    p = sub.add_parser("stage", help="run one stage of a pipeline config (earlier stages must have run)")
    _add_config(p)
    p.add_argument("--stage", type=int, required=True, choices=(1, 2, 3))
    p.add_argument("--out")
    _add_data(p)

    p = sub.add_parser("pseudo-labels", help="pseudo-labels from a pipeline's stage 1, or from logits tables")
    _add_config(p, required=False)
    p.add_argument("--out")
    p.add_argument(
        "--store", action="append", default=[], help="store to read logits from and write to (repeatable)"
    )
    p.add_argument("--runs", nargs="+", default=[], help="logits/<run> names or glob patterns")
    p.add_argument("--name", help="pseudo_labels/<name> to write")
    _add_data(p)

    p = sub.add_parser(
        "ensemble", help="ensemble selection on validation hF (pipeline config, or logits tables)"
    )
    _add_config(p, required=False)
    p.add_argument("--out")
    p.add_argument("--dataset", help="labelled dataset root (with --runs)")
    p.add_argument("--store", default="")
    p.add_argument("--split", default="", help="split JSON (default: --split-preset/--fold)")
    p.add_argument("--split-preset", default="cpjku")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--runs", nargs="+", default=[], help="logits/<run> names or glob patterns")
    p.add_argument("--method", default="greedy", choices=("greedy", "exhaustive", "all"))
    p.add_argument("--max-size", type=int, default=0)
    p.add_argument("--never-predicted", default="zero", choices=("zero", "drop"))
    _add_data(p, split=False)

    p = sub.add_parser("report", help="results table, per-class table, confusion matrix, training curves")
    _add_config(p, required=False)
    p.add_argument("--out")
    p.add_argument("--predictions", help="predictions.npz written by `ensemble` (instead of --config)")
    p.add_argument("--decoding", default="argmax", choices=("argmax", "expected-credit"))
    _add_data(p)

    p = sub.add_parser("submit", help="submission files (<label>.output.csv, <label>.meta.yaml)")
    _add_config(p, required=False)
    p.add_argument("--out")
    p.add_argument("--ensemble", help="ensemble.json (instead of --config)")
    p.add_argument("--dataset", help="unlabelled evaluation dataset root (with --ensemble)")
    p.add_argument("--store", default="")
    p.add_argument("--label", default="Heads_1")
    p.add_argument("--decoding", default="", help="argmax | expected-credit (default: the ensemble's)")
    _add_data(p)

    p = sub.add_parser(
        "predict", help="predict a dataset's clips with saved heads (its cache must hold their inputs)"
    )
    p.add_argument("--run", nargs="+", required=True, help="run folder(s) or an ensemble.json")
    p.add_argument("--dataset", required=True)
    p.add_argument("--store", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--label", default="predictions")
    p.add_argument("--decoding", default="argmax", choices=("argmax", "expected-credit"))
    p.add_argument("--write-logits", default="", metavar="RUN", help="also write logits/<RUN> into the store")

    for name, hlp in (
        ("train", "train one head configuration"),
        ("search", "random search of K configurations"),
    ):
        p = sub.add_parser(name, help=hlp)
        _add_config(p, required=False)

    p = sub.add_parser("cv", help="pipeline on each fold; test hF mean ± std")
    _add_config(p)
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--out")

    p = sub.add_parser("baseline", help="official-baseline recipe: shipped CLAP audio+text + MLP, 5 folds")
    _add_config(p, required=False)
    p.add_argument("--dataset")
    p.add_argument("--store")
    p.add_argument("--out")
    p.add_argument("--folds")
    return ap


def _with_parents(add_parser, parent):
    def add(name, **kw):
        return add_parser(name, parents=[parent, *kw.pop("parents", [])], **kw)

    return add


#: errors a user can cause (bad config, missing table or file, bad values): one line, exit 2
USER_ERRORS = (ConfigError, ValueError, KeyError, OSError, RuntimeError)  # OSError: disk full, read-only, ...


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        from cache.errors import describe_os_error

        return describe_os_error(e)
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def main(argv: list[str] | None = None) -> int:
    return quiet_on_closed_pipe(lambda: _main(build_parser().parse_args(argv)))


def _main(args) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        return _run(args, progress)
    except BrokenPipeError:
        raise
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2


def _run(args, progress: bool) -> int:
    from .baseline import BaselineConfig, run_baseline
    from .cross_validation import cross_validate
    from .logits_tables import ensemble_from_runs, pseudo_labels_from_runs, report_from_predictions
    from .pipeline import Pipeline
    from .predict import predict_dataset, submit_from_ensemble
    from .train_search import RunConfig, train_or_search

    cmd = args.command
    if cmd == "pipeline":
        Pipeline(_pipeline_cfg(args), progress=progress).run()
    elif cmd == "stage":
        pipe = Pipeline(_pipeline_cfg(args), progress=progress)
        pipe.run_stage(args.stage)
    elif cmd == "pseudo-labels":
        if args.config:
            Pipeline(_pipeline_cfg(args), progress=progress).make_pseudo_labels()
        else:
            if not (args.store and args.runs and args.name):
                raise ValueError("without --config, pass --store (one or more), --runs and --name")
            from .data import existing_store

            pseudo_labels_from_runs([existing_store(s, write=True) for s in args.store], args.runs, args.name)
    elif cmd == "ensemble":
        if args.config:
            Pipeline(_pipeline_cfg(args), progress=progress).make_ensemble()
        else:
            if not (args.dataset and args.runs and args.out):
                raise ValueError("without --config, pass --dataset, --runs and --out")
            ensemble_from_runs(
                args.dataset,
                args.runs,
                args.out,
                store=args.store,
                split_file=args.split,
                split_preset=args.split_preset,
                fold=args.fold,
                method=args.method,
                max_size=args.max_size,
                never_predicted=args.never_predicted,
            )
    elif cmd == "report":
        if args.config:
            print(Pipeline(_pipeline_cfg(args), progress=progress).report())
        else:
            if not (args.predictions and args.out):
                raise ValueError("without --config, pass --predictions and --out")
            report_from_predictions(args.predictions, args.out, args.decoding)
    elif cmd == "submit":
        if args.config:
            Pipeline(_pipeline_cfg(args), progress=progress).submit()
        else:
            if not (args.ensemble and args.dataset and args.out):
                raise ValueError("without --config, pass --ensemble, --dataset and --out")
            submit_from_ensemble(
                args.ensemble, args.dataset, args.out, args.label, store=args.store, decoding=args.decoding
            )
    elif cmd == "predict":
        predict_dataset(
            args.run,
            args.dataset,
            args.out,
            store=args.store,
            label=args.label,
            decoding=args.decoding,
            logits_name=args.write_logits,
        )
    elif cmd in ("train", "search"):
        cfg = load_config(RunConfig, args.config, args.overrides)
        train_or_search(cfg, search=cmd == "search", progress=progress)
    elif cmd == "cv":
        cfg = _pipeline_cfg(argparse.Namespace(config=args.config, overrides=args.overrides, out=None))
        out = args.out or (cfg.out.rstrip("/") + "-cv")
        cross_validate(cfg, [int(f) for f in args.folds.split(",")], out, progress=progress)
    elif cmd == "baseline":
        ov = list(args.overrides)
        for key in ("dataset", "store", "out"):
            if getattr(args, key):
                ov.append(f"{key}={json.dumps(str(getattr(args, key)))}")
        if args.folds:
            ov.append(f"folds=[{args.folds}]")
        cfg = load_config(BaselineConfig, args.config, ov)
        run_baseline(cfg, progress=progress)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
