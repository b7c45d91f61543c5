"""Random search over the search ranges of ``finetune.search_space``: write, list, run and collect trials.

    python -m finetune.sweep write   --out DIR --config BACKBONE.toml --stage N [--backbone B]
                                     [--trials 20] [--seed 0] [--init-from-sweep STAGE2_SWEEP_DIR]
                                     [--set section.key=value ...]
    python -m finetune.sweep list    --out DIR
    python -m finetune.sweep run     --out DIR [--launcher "accelerate launch --num_processes 8"] [--only 0,3]
    python -m finetune.sweep collect --out DIR

``write`` samples ``--trials`` configurations (learning rate log-uniform, λ uniform; epochs,
warm-up and decay start from the search range unless given with ``--set``) with a generator
seeded by ``--seed`` and writes one TOML per trial (``DIR/trial_XX/trial.toml``; run name
``<prefix>-tXX``, train.seed = base seed + XX) plus ``DIR/sweep.json``. ``run`` launches the
trials one after another in the current working directory, each writing into its trial folder
(interrupted ones resume); ``collect`` writes ``results.md`` (the head tier's search table,
sorted by validation hF), ``results.json`` and ``results.csv``. Exit 2: invalid config or arguments.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from cache.config import ConfigError, split_override

from .checkpointing import StateFolders
from .config import STAGES, FinetuneConfig, load_config, to_toml
from .launch_command import RUN_SCRIPT
from .search_space import TRIALS_PER_STAGE, SearchRange, search_range

#: train keys a trial takes from the search range unless given with --set
RANGE_KEYS = ("epochs", "warmup_epochs", "decay_start_epoch")
#: train keys the sweep draws: a --set of them is refused
DRAWN_KEYS = ("lr", "lam")


def sample_trials(rng_seed: int, space: SearchRange, n: int) -> list[dict[str, float]]:
    """``n`` (lr, λ) draws: lr log-uniform in [lr_min, lr_max], λ uniform in [lam_min, lam_max]."""
    rng = np.random.default_rng(rng_seed)
    lr = np.exp(rng.uniform(math.log(space.lr_min), math.log(space.lr_max), size=n))
    lam = rng.uniform(space.lam_min, space.lam_max, size=n) if space.lam_max > 0 else np.zeros(n)
    return [{"lr": float(a), "lam": float(b)} for a, b in zip(lr, lam, strict=True)]


def trial_configs(
    base: FinetuneConfig, out: Path, space: SearchRange, n: int, seed: int, keep: Sequence[str] = ()
) -> list[FinetuneConfig]:
    """``n`` trial configs: ``base`` with drawn lr/λ and the range's epochs, warm-up and decay start
    (except the train keys named in ``keep``, which keep ``base``'s value)."""
    prefix = base.output.run_name or f"ft-{base.backbone.name}-s{space.stage}-sweep{seed}"
    out_cfgs = []
    for i, draw in enumerate(sample_trials(seed, space, n)):
        cfg = copy.deepcopy(base)
        cfg.train.stage, cfg.train.lr, cfg.train.lam = space.stage, draw["lr"], draw["lam"]
        for key in RANGE_KEYS:
            if key not in keep:
                setattr(cfg.train, key, getattr(space, key))
        cfg.train.seed = base.train.seed + i
        cfg.output.dir = str(trial_folder(out, i))
        cfg.output.run_name = f"{prefix}-t{i:02d}"
        out_cfgs.append(cfg)
    return out_cfgs


def best_trial(sweep_dir: str | Path) -> Path:
    """Output folder of the finished trial with the highest validation hF."""
    rows = collect_results(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"no finished trial (result.json) under {sweep_dir}")
    return Path(rows[0]["output_dir"])


def trial_folder(out: str | Path, trial: int) -> Path:
    """``<out>/trial_XX``: where trial ``trial`` of a sweep keeps its trial.toml and its run's outputs."""
    return Path(out) / f"trial_{trial:02d}"


def write_sweep(
    out: Path,
    base: FinetuneConfig,
    backbone: str,
    stage: int,
    trials: int,
    seed: int,
    init_from_sweep: str = "",
    keep: Sequence[str] = (),
) -> list[Path]:
    """Write ``trial_XX/trial.toml`` and ``sweep.json``; ``keep``: train keys set explicitly (see
    :func:`trial_configs`)."""
    try:
        space = search_range(backbone, stage)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if init_from_sweep:
        base.train.init_from = str(best_trial(init_from_sweep))
    cfgs = trial_configs(base, out, space, trials, seed, keep)
    paths = []
    for cfg in cfgs:
        cfg.validate()
        folder = Path(cfg.output.dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trial.toml").write_text(to_toml(cfg))
        paths.append(folder / "trial.toml")
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "backbone": backbone,
                "stage": stage,
                "trials": trials,
                "seed": seed,
                "range": space.__dict__,
                "init_from": base.train.init_from,
                "kept": sorted(k for k in keep if k in RANGE_KEYS),
                "configs": [
                    {
                        "trial": i,
                        "config": str(p.relative_to(out)),
                        "lr": c.train.lr,
                        "lam": c.train.lam,
                        "seed": c.train.seed,
                        "run_name": c.output.run_name,
                    }
                    for i, (p, c) in enumerate(zip(paths, cfgs, strict=True))
                ],
            },
            indent=1,
        )
    )
    return paths


def list_trials(out: Path) -> list[dict[str, Any]]:
    meta = json.loads((out / "sweep.json").read_text())
    rows = []
    for t in meta["configs"]:
        folder = trial_folder(out, t["trial"])
        status = (
            "done"
            if (folder / "result.json").exists()
            else ("started" if StateFolders(folder / "state", None).exists() else "pending")
        )
        rows.append({**t, "status": status})
    return rows


def run_trials(out: Path, launcher: Sequence[str], only: Sequence[int] | None = None) -> int:
    """Run pending/unfinished trials in order with ``launcher`` (e.g. ``accelerate launch ...``); returns
    failures.

    Each trial runs in the current working directory (the config's relative data paths are
    read from there) and writes into its own trial folder, wherever the sweep folder is.
    """
    failures = 0
    for t in list_trials(out):
        if (only and t["trial"] not in only) or t["status"] == "done":
            continue
        folder = trial_folder(out, t["trial"]).resolve()
        cmd = [
            *launcher,
            str(RUN_SCRIPT),
            "--config",
            str(folder / "trial.toml"),
            "--set",
            f"output.dir={json.dumps(str(folder))}",
        ]
        if t["status"] == "started":
            cmd.append("--resume")
        print(
            f"[sweep] trial {t['trial']:02d}: lr {t['lr']:.3g}, λ {t['lam']:.3f}: {shlex.join(cmd)}",
            flush=True,
        )
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            failures += 1
            print(f"[sweep] trial {t['trial']:02d} failed (exit {rc}); {_after_failure(folder)}", flush=True)
    return failures


def _after_failure(folder: Path) -> str:
    """What running the sweep again does with a failed trial."""
    if StateFolders(folder / "state", None).latest() is not None:
        return "`run` again resumes it from its last training state"
    return "it saved no training state: `run` again starts it from the beginning (fix the error above first)"


def collect_results(out: str | Path) -> list[dict[str, Any]]:
    """Finished trials' results, sorted by validation hF (best first; ties: lower trial first)."""
    rows = []
    for f in sorted(Path(out).glob("trial_*/result.json")):
        r = json.loads(f.read_text())
        r["trial"] = f.parent.name
        rows.append(r)
    return sorted(rows, key=lambda r: (-r["val"]["hF"], r["trial"]))


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """The head tier's search table (``heads.search.results_table``) over fine-tuned trials."""
    from heads.search import results_table

    runs = [
        SimpleNamespace(
            best_val=r["val"],
            best_epoch=r["best_epoch"],
            history=[None] * r["epochs_run"],
            config=SimpleNamespace(lr=r["lr"], lam=r["lam"], seed=r["seed"]),
        )
        for r in rows
    ]
    return results_table(runs, [r["run"] for r in rows])


def write_results(out: Path) -> list[dict[str, Any]]:
    rows = collect_results(out)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "results.md").write_text(results_markdown(rows) + "\n")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "rank",
                "run",
                "trial",
                "lr",
                "lam",
                "seed",
                "best_epoch",
                "epochs_run",
                "val_hP",
                "val_hR",
                "val_hF",
                "test_hP",
                "test_hR",
                "test_hF",
                "weights",
            ]
        )
        for k, r in enumerate(rows, start=1):
            w.writerow(
                [
                    k,
                    r["run"],
                    r["trial"],
                    r["lr"],
                    r["lam"],
                    r["seed"],
                    r["best_epoch"],
                    r["epochs_run"],
                    r["val"]["hP"],
                    r["val"]["hR"],
                    r["val"]["hF"],
                    r["test"]["hP"],
                    r["test"]["hR"],
                    r["test"]["hF"],
                    r["weights"],
                ]
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m finetune.sweep", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("write", "list", "run", "collect"))
    p.add_argument("--out", required=True, help="sweep folder")
    p.add_argument("--config", help="base config (write), e.g. configs/finetune/passt.toml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a value of the base config (write; repeatable)",
    )
    p.add_argument("--backbone", help="search range of this backbone (default: the config's backbone.name)")
    p.add_argument(
        "--stage",
        type=int,
        choices=STAGES,
        help="stage: the config's [stageN] section and search range (default: the config's train.stage)",
    )
    p.add_argument("--trials", type=int, default=TRIALS_PER_STAGE)
    p.add_argument("--seed", type=int, default=0, help="seed of the search's sampler")
    p.add_argument(
        "--init-from-sweep",
        default="",
        help="stage 3: start every trial from the best trial of this stage-2 sweep",
    )
    p.add_argument("--launcher", default=sys.executable, help="command that runs finetune/run.py (run)")
    p.add_argument("--only", default="", help="comma-separated trial numbers (run)")
    args, rest = p.parse_known_args(argv)
    try:
        return _command(args, rest)
    except ConfigError as e:
        print(f"finetune.sweep: {e}", file=sys.stderr, flush=True)
        return 2


def _set_train_keys(overrides: Sequence[str]) -> set[str]:
    """The ``train.*`` keys that ``--set`` items name."""
    keys = (split_override(item, "--set")[0] for item in overrides)
    return {k.split(".", 1)[1] for k in keys if k.startswith("train.")}


def _command(args: argparse.Namespace, rest: Sequence[str]) -> int:
    if rest:
        raise ConfigError(f"unrecognised argument(s) {' '.join(rest)}: overrides are --set section.key=value")
    if args.action != "write" and (args.overrides or args.config):
        raise ConfigError(
            "--config and --set apply to `write` only (a written trial.toml holds the whole config)"
        )
    out = Path(args.out)
    if args.action == "write":
        explicit = _set_train_keys(args.overrides)
        drawn = sorted(explicit & set(DRAWN_KEYS))
        if drawn:
            raise ConfigError(
                f"the sweep draws {', '.join('train.' + k for k in drawn)} from the search range: "
                "drop that --set (use finetune/run.py for one fixed value)"
            )
        base = load_config(args.config, args.overrides, args.stage)
        paths = write_sweep(
            out,
            base,
            args.backbone or base.backbone.name,
            base.train.stage,
            args.trials,
            args.seed,
            args.init_from_sweep,
            keep=sorted(explicit),
        )
        print(f"wrote {len(paths)} trial configs under {out}")
    elif args.action == "list":
        for t in list_trials(out):
            print(
                f"{t['trial']:02d}  {t['status']:8s} lr {t['lr']:.3g}  λ {t['lam']:.3f}  seed {t['seed']}  "
                f"{trial_folder(out, t['trial']) / 'trial.toml'}"
            )
    elif args.action == "run":
        only = [int(x) for x in args.only.split(",") if x.strip()]
        return 1 if run_trials(out, shlex.split(args.launcher), only) else 0
    else:
        rows = write_results(out)
        print(results_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
