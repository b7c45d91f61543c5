"""Command line of the LLM tier: ``python -m extract priors|summaries ...`` (also ``python -m extract.llm``).

Examples::

    python -m extract priors --dataset data/BSD10k --provider embedded
    python -m extract priors --dataset data/BSD10k --provider embedded-knn \\
        --train-dataset data/BSD10k --split runs/split.json
    python -m extract priors --dataset data/BSD10k --provider openai --model gpt-5-mini --dry-run
    python -m extract summaries --dataset data/BSD10k --provider openai --api chat \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

Exit status: 0 done, 1 bad input / failure, 2 bad usage, 3 batches still pending.
"""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError, LLMConfig, apply_overrides, load_config, parse_set
from .response_cache import redact

COMMANDS = ("priors", "summaries")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m extract priors|summaries",
                                 description="LLM tier: class priors or metadata summaries into the dataset's cache store.")
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("--dataset", required=True, help="dataset root (metadata/<NAME>_metadata.csv)")
    ap.add_argument("--provider", help="openai | openai-batch | embedded | embedded-knn | reference-jsonl (default embedded)")
    ap.add_argument("--model", help="model name (remote providers; default gpt-5.4-mini)")
    ap.add_argument("--api", choices=("responses", "chat"), help="OpenAI API flavour (default responses)")
    ap.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    ap.add_argument("--store", help="cache store (default <dataset>/cache.zarr)")
    ap.add_argument("--name", help="table name: llm/<kind>/<name> (default: the provider name)")
    ap.add_argument("--concurrency", type=int, help="requests in flight (default 16)")
    ap.add_argument("--timeout", type=float, help="seconds per request (default 120)")
    ap.add_argument("--dry-run", action="store_true", default=None,
                    help="print request count, estimated tokens and cost; send nothing")
    ap.add_argument("--cache-dir", help="response cache folder (default $BST_LLM_CACHE or ~/.cache/bst-hac/llm)")
    ap.add_argument("--config", help="TOML file with LLMConfig fields (top level or [llm])")
    ap.add_argument("--train-dataset", help="embedded-knn: the labelled clean set")
    ap.add_argument("--split", help="embedded-knn: split JSON (python -m cache split ...)")
    ap.add_argument("--split-preset", help="embedded-knn: make the split: cpjku | baseline")
    ap.add_argument("--fold", type=int, help="fold of --split-preset (default 0)")
    ap.add_argument("--from", dest="from_file", metavar="FILE",
                    help="reference-jsonl: the reference run's predictions.jsonl to import")
    ap.add_argument("--truth", help="CSV id,class to score the prior against (e.g. the demo's *-truth.csv)")
    ap.add_argument("--batch-wait", type=float, dest="batch_wait_s",
                    help="openai-batch: seconds to wait for open batches (default 0: submit/check and exit)")
    ap.add_argument("--retry-rejected", action="store_true", default=None,
                    help="re-ask clips whose cached answer was unusable")
    ap.add_argument("--no-progress", action="store_false", dest="progress", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any config field, e.g. --set temperature=0.2 --set knn_k=30")
    return ap


def resolve_config(args: argparse.Namespace) -> LLMConfig:
    """Defaults < --config TOML < --set < explicit options."""
    cfg = load_config(args.config)
    cfg = apply_overrides(cfg, parse_set(args.set), where="--set")
    explicit = {"kind": args.command}
    for name in ("dataset", "provider", "model", "api", "base_url", "store", "name", "concurrency", "timeout",
                 "dry_run", "cache_dir", "from_file", "train_dataset", "split", "split_preset", "fold", "truth", "batch_wait_s",
                 "retry_rejected", "progress"):
        v = getattr(args, name)
        if v is not None:
            explicit[name] = v
    return apply_overrides(cfg, explicit, where="command line").validate()


def main(argv: list[str]) -> int:
    """Run ``priors`` or ``summaries`` (``argv[0]``) with the remaining options; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    try:
        cfg = resolve_config(args)
        from .runner import Runner

        code, _ = Runner(cfg).run()
        return code
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError, KeyError) as e:
        print(f"error: {redact(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: answers received so far are in the response cache; re-run to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
