#!/usr/bin/env bash
# One GPU session: correctness checks, then the heads / extraction / fine-tune benchmarks on the GPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; JSON + logs go to $OUT
#
# Works in a fresh copy of the repository (not pip-installed): the repo root goes on PYTHONPATH,
# wheels in .whl/ (zarr, numcodecs, donfig, google-crc32c, soundfile, cffi, pycparser, hear21passt)
# are installed into $SITE (default /tmp/site) without network, datasets are generated in /tmp.
# Without a GPU every GPU part is skipped (the checks and tiny benchmarks run on the CPU instead, so
# a dry run exercises the invocations).
#
# Environment: PY (python, default python3), OUT (results folder, default /tmp/gpu_check_out),
# BUDGET_S (seconds for the whole script, default 540), SKIP_WHEELS=1 (do not install .whl/).
# Files in $OUT (10): gpu_checks.json, heads_bench.json, extract_bench.json, finetune_bench.json,
# state_save_bench.json and logs/{gpu_checks,heads_bench,extract_bench,finetune_bench,state_save_bench}.log.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check_out}
SITE=${SITE:-/tmp/site}
BUDGET_S=${BUDGET_S:-540}
START=$(date +%s)
mkdir -p "$OUT/logs"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg

if [ "${SKIP_WHEELS:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  t=$(date +%s)
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      >/tmp/gpu_check_pip.log 2>&1; then
    echo "wheels: installed $(ls .whl/*.whl | wc -l) into $SITE in $(( $(date +%s) - t )) s"
  else
    echo "wheels: install FAILED (continuing):"; tail -5 /tmp/gpu_check_pip.log
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== machine"
(command -v nvidia-smi >/dev/null && nvidia-smi -L) || echo "nvidia-smi: not available"
$PY - <<'EOF'
import importlib, torch
print(f"python torch {torch.__version__} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()} "
      f"available {torch.cuda.is_available()}" + (f" · {torch.cuda.get_device_name(0)} "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if torch.cuda.is_available() else ""))
missing = []
for m in ("zarr", "soundfile", "hear21passt", "timm", "torchaudio", "accelerate", "transformers", "h5py", "sklearn"):
    try:
        importlib.import_module(m)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{m} ({type(e).__name__})")
print("imports: " + ("all ok" if not missing else "MISSING " + ", ".join(missing)))
EOF
if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then GPU=1; DEV=cuda; else GPU=0; DEV=cpu; fi
echo "GPU=$GPU; budget ${BUDGET_S} s; results in $OUT"

# run NAME CAP_S CMD...: under `timeout`, capped by what is left of the budget; log to $OUT/logs/NAME.log
declare -A STATUS
run() {
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET_S - ($(date +%s) - START) - 5 ))
  local lim=$(( cap < left ? cap : left ))
  if [ "$lim" -lt 20 ]; then STATUS[$name]="skipped (budget spent)"; echo "== $name: skipped (budget spent)"; return; fi
  echo "== $name (limit ${lim} s): $*"
  local t=$(date +%s)
  timeout --kill-after=10 "$lim" "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  STATUS[$name]="rc $rc in $(( $(date +%s) - t )) s$([ $rc = 124 ] && echo ' (TIMED OUT; partial JSON kept)')"
  echo "   ${STATUS[$name]}"; tail -n 2 "$OUT/logs/$name.log" | sed 's/^/   | /'
}

if [ $GPU = 1 ]; then
  run gpu_checks 75 $PY benchmarks/gpu_checks.py --device cuda --out "$OUT/gpu_checks.json"
  # plus the whole K = 20 stage-1 search (before / after / halving) at BSD10k's full size, 384-d and 1024-d
  run heads_bench 150 $PY benchmarks/heads_bench.py --device cuda --sizes demo,bsd10k-1024,bsd10k-4096 \
      --steps 100 --repeats 2 --epochs 5 --full-search --out "$OUT/heads_bench.json"
  run extract_bench 70 $PY benchmarks/extract_bench.py --device cuda --skip-minilm --clips 64 --passt-clips 48 \
      --rows 20000 --workers 6 --out "$OUT/extract_bench.json"
  # amortised size: 1,000 synthetic 10 s clips x 3 epochs, run.py vs a plain loop at the same precision
  run finetune_bench 190 $PY benchmarks/finetune_bench.py --device cuda --mixed-precision bf16 --backbone passt \
      --clips 1000 --clip-seconds 10 --epochs 3 --workers 8 --repeats 1 --out "$OUT/finetune_bench.json"
  # what a PaSST-sized training-state save blocks, written in the foreground vs the background
  run state_save_bench 45 $PY benchmarks/state_save_bench.py --device cuda --repeats 2 --out "$OUT/state_save_bench.json"
else
  echo "== no GPU: GPU benchmarks skipped; tiny CPU smoke runs of the checks and benchmarks instead"
  run gpu_checks 300 $PY benchmarks/gpu_checks.py --device cpu --backbones "${CPU_BACKBONES:-beats,m2d,passt}" \
      --out "$OUT/gpu_checks.json"
  run heads_bench 200 $PY benchmarks/heads_bench.py --device auto --sizes demo --repeats 1 --epochs 1 --k 4 --search-clips 120 --search-epochs 4 \
      --out "$OUT/heads_bench.json"
  run extract_bench 200 $PY benchmarks/extract_bench.py --device auto --skip-minilm --clips 6 --passt-clips 2 \
      --rows 2000 --workers 2 --out "$OUT/extract_bench.json"
  run finetune_bench 150 $PY benchmarks/finetune_bench.py --device cpu --clips 240 --epochs 2 --repeats 1 \
      --out "$OUT/finetune_bench.json"
  run state_save_bench 120 $PY benchmarks/state_save_bench.py --device cpu --repeats 1 --out "$OUT/state_save_bench.json"
fi

echo
echo "================================================================ tables"
show() {  # show NAME 'sed range' : the table part of a log, or its tail when the run failed
  local f="$OUT/logs/$1.log"
  echo "--- $1: ${STATUS[$1]:-not run}"
  [ -f "$f" ] || return
  local part; part=$(sed -n "$2" "$f")
  if [ -n "$part" ]; then echo "$part"; else tail -n 15 "$f"; fi
}
show gpu_checks '/^\(PASS\|FAIL\)/p;/^| backbone/,$p'
show heads_bench '/^head-tier benchmark/,$p'
show extract_bench '/^extraction benchmark/,$p'
show finetune_bench '/^fine-tune benchmark/,$p'
show state_save_bench '/^state-save benchmark/,$p'
echo "total $(( $(date +%s) - START )) s; files:"; (cd "$OUT" && find . -type f | sort | xargs ls -l | awk '{print "  " $5 "  " $9}')
