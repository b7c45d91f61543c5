"""Fine-tune one stage end to end:
``accelerate launch finetune/run.py --config FILE.toml [--stage N] [--set K=V ...]``.

One process: ``python finetune/run.py ...``. Overrides are ``--set section.key=value``
(repeatable; TOML values, e.g. ``--set train.lr=3e-6``); ``--stage N`` picks the config file's
``[stageN]`` section (shorthand for ``--set train.stage=N``); see ``finetune.config`` and
docs/finetune.md. ``--resume`` continues from the newest training state in ``output.dir``
(mid-epoch). Exit codes: 0 done, 2 invalid config, data or launch (one line, printed by rank 0).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__":  # run as a script: import the packages next to it, not another installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cache.errors import SchemaError  # noqa: E402
from cache.locks import LockedError  # noqa: E402
from finetune.config import STAGES, ConfigError, load_config, to_toml  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="finetune/run.py",
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", help="TOML config file (configs/finetune/<backbone>.toml, or a run's config.toml)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.lr=3e-6 --set data.clean=/data/BSD10k",
    )
    p.add_argument(
        "--stage",
        type=int,
        choices=STAGES,
        help="training stage: the config's [stageN] section (shorthand for --set train.stage=N)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest training state in output.dir"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_known_args(argv)


def _is_rank0() -> bool:
    """True in the first process of a launch (and in a plain one-process run)."""
    return os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    try:
        if rest:
            raise ConfigError(
                f"unrecognised argument(s) {' '.join(rest)}: overrides are --set section.key=value "
                "(e.g. --set train.lr=3e-6)"
            )
        cfg = load_config(args.config, args.overrides, args.stage)
        if args.print_config:
            print(to_toml(cfg))
            return 0
        from finetune.trainer import train

        train(cfg, resume=args.resume)
    except (ConfigError, LockedError, SchemaError) as e:  # user errors: a bad config, a busy or damaged table
        if _is_rank0():  # every rank fails alike; one line, not one per process
            print(f"finetune: {e}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:  # disk full, read-only output folder, ...: the states already saved are kept
        if e.errno is None or not e.strerror:
            raise
        from cache.errors import describe_os_error

        print(
            f"finetune: {describe_os_error(e).replace('--store PATH', 'another output.dir')}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
