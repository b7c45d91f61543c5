#!/usr/bin/env bash
# The main job on the embedded demo data (what `make demo` runs):
#   1. generate the demo datasets (real BSD layout) and validate them
#   2. build the development split
#   3. extract logmel, minilm and shipped embeddings into each dataset's cache store
#   4. compute offline LLM-tier priors (embedded, embedded-knn) and summaries
#   5. run the head tier's whole recipe (stage 1 search, pseudo-labels, stages 2-3, ensemble,
#      report, submission) and score the submission
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_data}
DEMO_OUT=${DEMO_OUT:-demo_out}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CLEAN=$DEMO_DIR/BSD10k-demo
NOISY=$DEMO_DIR/BSD35k-CS-demo
EVAL=$DEMO_DIR/BSD2k-demo
step() { printf '\n==== %s ====\n' "$*"; }
t0=$SECONDS

step "1/5 demo data"
if [ ! -f "$DEMO_DIR/README.txt" ]; then
  $PY -m demo --out "$DEMO_DIR" --seed 0
else
  echo "reusing $DEMO_DIR (delete it or run 'make clean-demo' to regenerate)"
fi
$PY -m cache validate --dataset "$CLEAN" --dataset "$NOISY" --dataset "$EVAL"

step "2/5 split"
mkdir -p "$DEMO_OUT"
$PY -m cache split --dataset "$CLEAN" --preset cpjku --fold 0 --out "$DEMO_OUT/split.json"

step "3/5 embeddings (logmel, minilm, shipped)"
for ds in "$CLEAN" "$NOISY" "$EVAL"; do
  $PY -m extract embeddings --dataset "$ds" --backbone logmel
  $PY -m extract embeddings --dataset "$ds" --backbone minilm --text-source metadata
  $PY -m extract embeddings --dataset "$ds" --backbone shipped
done

step "4/5 LLM tier (offline providers)"
for ds in "$CLEAN" "$NOISY" "$EVAL"; do
  $PY -m extract summaries --dataset "$ds" --provider embedded
  $PY -m extract priors --dataset "$ds" --provider embedded
  $PY -m extract priors --dataset "$ds" --provider embedded-knn --train-dataset "$CLEAN" --split "$DEMO_OUT/split.json"
done

step "5/5 heads: stage 1 search -> pseudo-labels -> stages 2, 3 -> ensemble -> report -> submission"
$PY -m heads pipeline --config configs/heads/demo.toml --out "$DEMO_OUT/heads" \
  --set data.clean.root="$CLEAN" --set data.noisy.root="$NOISY" --set data.eval.root="$EVAL" \
  --set data.split_file="$DEMO_OUT/split.json"

echo
echo "== the submission scored against the demo's hidden evaluation labels (real users have none) =="
$PY -m heads.score --truth "$DEMO_DIR/BSD2k-demo-truth.csv" --pred "$DEMO_OUT"/heads/submission/*.output.csv \
  > "$DEMO_OUT/eval_score.md"
head -n 1 "$DEMO_OUT/eval_score.md"

echo
echo "demo finished in $((SECONDS - t0)) s; results in $DEMO_OUT/"
