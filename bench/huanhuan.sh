#!/usr/bin/env bash
# Benchmark of the README's main job (not a test): the whole CPU pipeline from an empty store, then an unchanged
# re-run. Prints wall times and the train stage's tokens/s and model FLOP utilisation from the run's JSON.
# Needs the dataset in the download cache (or internet): dotnet finetune cache add path/to/huanhuan.json
set -euo pipefail
cd "$(dirname "$0")/.."
pipeline=${1:-pipelines/huanhuan-cpu.yaml}
store=$(dirname "$pipeline")/.finetune
rm -rf "$store"

start=$(date +%s.%N)
dotnet finetune run "$pipeline" --json > /tmp/finetune-bench-run.json
full=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
dotnet finetune run "$pipeline" > /dev/null
rerun=$(echo "$(date +%s.%N) - $start" | bc)

python3 - "$full" "$rerun" <<'PY'
import json, sys
run = json.load(open("/tmp/finetune-bench-run.json"))
train_stage = next(s for s in run["stages"] if s["stage"] == "train")
train, timings = train_stage["summary"], train_stage["timings"]
evaluate = next(s for s in run["stages"] if s["stage"] == "evaluate")["summary"]
print(f"all six stages: {float(sys.argv[1]):.1f} s; unchanged re-run: {float(sys.argv[2]):.2f} s")
print(f"train: {train['steps']} steps, loss {train['first_loss']} -> {train['final_loss']}, "
      f"{timings['tokens_per_s']} tokens/s, MFU {timings['mfu']:.1%}, {timings['duration_s']} s "
      f"(plan {timings.get('plan_estimated_s')} s)")
print(f"evaluate: validation loss {evaluate.get('validation_loss')}, perplexity {evaluate.get('perplexity')}")
PY
