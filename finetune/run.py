"""Fine-tune one stage end to end: ``accelerate launch finetune/run.py --config FILE.toml [--stage N] [overrides]``.

One process: ``python finetune/run.py ...``. Overrides are ``section.key=value``,
``--section.key value`` or an unambiguous bare key (``lr=3e-6``, ``--epochs 5``); see
``finetune.config`` and docs/finetune.md. ``--resume`` continues from the newest training
state in ``output.dir`` (mid-epoch). Exit codes: 0 done, 2 invalid config or launch.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finetune.config import ConfigError, apply_overrides, load_config, parse_overrides, to_toml  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="finetune/run.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="overrides: key=value | --section.key value (e.g. train.lr=3e-6 --data.clean /data/BSD10k)")
    p.add_argument("--config", help="TOML config file (configs/finetune/<backbone>_stage<N>.toml)")
    p.add_argument("--stage", type=int, choices=(1, 2, 3), help="training stage (overrides train.stage)")
    p.add_argument("--resume", action="store_true", help="continue from the newest training state in output.dir")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    try:
        cfg = apply_overrides(load_config(args.config), parse_overrides(rest))
        if args.stage:
            cfg.train.stage = args.stage
        if args.print_config:
            print(to_toml(cfg))
            return 0
        from finetune.trainer import train

        train(cfg, resume=args.resume)
    except ConfigError as e:
        print(f"finetune: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
