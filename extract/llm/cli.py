"""Command line of the LLM tier: ``python -m extract priors|summaries ...``.

Examples::

    python -m extract priors --dataset data/BSD10k --provider embedded
    python -m extract priors --dataset data/BSD10k --provider embedded-knn \\
        --train-dataset data/BSD10k --split runs/split.json
    python -m extract priors --dataset data/BSD10k --provider openai --model gpt-5-mini --dry-run
    python -m extract summaries --dataset data/BSD10k --config llm.toml --set llm.concurrency=8

Configuration: defaults < ``--config FILE.toml`` (an ``[llm]`` section) < ``--set llm.KEY=VALUE``
(repeatable) < the dedicated options below, each a shorthand for one ``llm.*`` key.

Exit status: 0 done; 2 a mistake to fix (usage, config, input files, API key, model name: one
line says what); 3 incomplete (requests failed after their retries, no usable row, or batches
still pending: re-run the same command later to continue); 1 an unexpected error (``--debug``
shows its traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

from cache.cli_output import silence_stdout

from .config import ConfigError, LLMRunConfig, load_config
from .errors import APIFailure, UserError
from .response_cache import redact

COMMANDS = ("priors", "summaries")
EXIT_ERROR, EXIT_USER, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 1, 2, 3, 130

#: option dest -> config key it is a shorthand for
SHORTHANDS = {
    "dataset": "llm.dataset",
    "provider": "llm.provider",
    "model": "llm.model",
    "api": "llm.api",
    "base_url": "llm.base_url",
    "store": "llm.store",
    "name": "llm.name",
    "concurrency": "llm.concurrency",
    "timeout": "llm.timeout",
    "dry_run": "llm.dry_run",
    "cache_dir": "llm.cache_dir",
    "train_dataset": "llm.train_dataset",
    "split": "llm.split",
    "split_preset": "llm.split_preset",
    "fold": "llm.fold",
    "from_file": "llm.from_file",
    "truth": "llm.truth",
    "batch_wait_s": "llm.batch_wait_s",
    "retry_rejected": "llm.retry_rejected",
    "progress": "llm.progress",
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m extract priors|summaries",
        description="LLM tier: class priors or metadata summaries into the dataset's cache store.",
    )
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("--config", help="TOML config file with an [llm] section")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set llm.temperature=0.2 --set llm.knn_k=30",
    )
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    g = ap.add_argument_group("shorthands for llm.* keys")
    g.add_argument("--dataset", help="dataset root (metadata/<NAME>_metadata.csv) [llm.dataset]")
    g.add_argument(
        "--provider",
        help="openai | openai-batch | embedded | embedded-knn | reference-jsonl (default embedded) "
        "[llm.provider]",
    )
    g.add_argument("--model", help="model name (remote providers; default gpt-5.4-mini) [llm.model]")
    g.add_argument(
        "--api", choices=("responses", "chat"), help="OpenAI API flavour (default responses) [llm.api]"
    )
    g.add_argument(
        "--base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 [llm.base_url]"
    )
    g.add_argument("--store", help="cache store (default <dataset>/cache.zarr) [llm.store]")
    g.add_argument("--name", help="table name: llm/<kind>/<name> (default: the provider name) [llm.name]")
    g.add_argument("--concurrency", type=int, help="requests in flight (default 16) [llm.concurrency]")
    g.add_argument("--timeout", type=float, help="seconds per request (default 120) [llm.timeout]")
    g.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="print request count, estimated tokens and cost; send nothing [llm.dry_run]",
    )
    g.add_argument(
        "--cache-dir",
        help="response cache folder (default $BST_LLM_CACHE or ~/.cache/bst-hac/llm) [llm.cache_dir]",
    )
    g.add_argument("--train-dataset", help="embedded-knn: the labelled clean set [llm.train_dataset]")
    g.add_argument("--split", help="embedded-knn: split JSON (python -m cache split ...) [llm.split]")
    g.add_argument("--split-preset", help="embedded-knn: make the split: cpjku | baseline [llm.split_preset]")
    g.add_argument("--fold", type=int, help="fold of --split-preset (default 0) [llm.fold]")
    g.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="reference-jsonl: the reference run's predictions.jsonl to import [llm.from_file]",
    )
    g.add_argument(
        "--truth", help="CSV id,class to score the prior against (e.g. the demo's *-truth.csv) [llm.truth]"
    )
    g.add_argument(
        "--batch-wait",
        type=float,
        dest="batch_wait_s",
        help="openai-batch: seconds to wait for open batches (default 0: submit/check and exit) "
        "[llm.batch_wait_s]",
    )
    g.add_argument(
        "--retry-rejected",
        action="store_true",
        default=None,
        help="re-ask clips whose cached answer was unusable [llm.retry_rejected]",
    )
    g.add_argument(
        "--no-progress",
        action="store_false",
        dest="progress",
        default=None,
        help="no progress output [llm.progress = false]",
    )
    return ap


def _literal(value) -> str:
    """``value`` as a TOML literal (what ``--set`` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def resolve_config(args: argparse.Namespace) -> LLMRunConfig:
    """Defaults < --config TOML < --set < the dedicated options (and the command sets ``llm.kind``)."""
    overrides = list(args.overrides)
    for dest, key in SHORTHANDS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides.append(f"{key}={_literal(value)}")
    overrides.append(f"llm.kind={_literal(args.command)}")
    return load_config(args.config, overrides)


def _one_line(e: BaseException) -> str:
    text = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(redact(text).split())


def exit_code_for(e: BaseException) -> int:
    """2 for a mistake the user can fix, 3 for an API failure a re-run may fix, 1 otherwise."""
    from cache.errors import SchemaError

    if isinstance(e, (ConfigError, UserError, ValueError, FileNotFoundError, KeyError, SchemaError)):
        return EXIT_USER
    if isinstance(e, APIFailure):
        return EXIT_INCOMPLETE
    return EXIT_ERROR


def main(argv: list[str]) -> int:
    """Run ``priors`` or ``summaries`` (``argv[0]``) with the remaining options; returns the exit status."""
    debug = "--debug" in argv
    try:
        try:
            args = build_parser().parse_args(list(argv))
        except SystemExit as e:
            return int(e.code or 0)
        from .runner import Runner

        cfg = resolve_config(args)
        code, _ = Runner(cfg.llm).run()
        return code
    except BrokenPipeError:  # e.g. `--help | head`: the reader is gone, nothing to say
        return silence_stdout()
    except KeyboardInterrupt:
        print(
            "interrupted: answers received so far are in the response cache; re-run to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        code = exit_code_for(e)
        hint = " (re-run with --debug for the traceback)" if code == EXIT_ERROR else ""
        print(f"error: {_one_line(e)}{hint}", file=sys.stderr)
        return code
