# The second run of scripts/gpu_check.sh on a GPU machine (gpu_check.sh --models, docs/gpu-check.md): sourced by
# gpu_check.sh once it has found the device, cuDNN and the libraries the tools miss, never run by itself. It uses
# gpu_check.sh's BUILD, OUT, WORK, PYTHON, SUMMARY, MODELS_LOG, HAVE_GPU, BUDGET_S and its note, step and limit_for.
#
#   1. tools/eval_easy_vqa.py on the easy-VQA test split: CUDA fp16 (the claim to prove), the CPU's fp32 (the
#      reference) and CUDA fp32, one after another within EVAL_LIMIT_S; every pair of runs must give the same
#      top-1 answer on MIN_AGREEMENT of the questions (DESIGN.md, 5). GPU_MODELS_QUESTIONS=N takes the first N.
#   2. scripts/bench_gpu.sh with the rest of the budget, its three files written straight into OUT.
#   3. OUT/results-models.md: the summary, the evaluation's tables and bench_gpu.sh's report, rewritten after every
#      step, so that a run stopped from outside still returns what it finished.

EVAL_LIMIT_S=200    # the easy-VQA evaluation, its three runs together (about 1 minute expected on an H200 machine)
MIN_AGREEMENT=0.995 # share of questions whose top-1 answer two backends must share

# One value of source.txt (commit, state, built, nvcc, cudnn).
source_value() { sed -n "s/^$1 //p" "$WORK/source.txt"; }

# results-models.md from what the steps left so far.
models_report() {
    local gpu
    gpu=$(cut -d, -f1-2 "$WORK/gpu.txt" | head -n 1 | sed 's/,/, driver/')
    {
        echo "# Model checks, $(date -u +%Y-%m-%d): ${gpu:-no GPU}"
        echo
        echo "Binaries: commit $(source_value commit) ($(source_value state)), built $(source_value built) with" \
            "CUDA $(source_value nvcc) and cuDNN $(source_value cudnn) headers. Budget ${BUDGET_S} s, $SECONDS s used."
        echo
        echo "## Summary"
        echo
        echo '```'
        cat "$SUMMARY"
        echo '```'
        echo
        echo "## easy-VQA: accuracy and top-1 agreement between backends (tools/eval_easy_vqa.py)"
        echo
        cat "$WORK/eval.md" 2>/dev/null || echo "Not run."
        echo
        echo "## Model benchmarks (scripts/bench_gpu.sh)"
        echo
        # report.md has its own headings: one level down under this one.
        sed 's/^#/##/' "$OUT/report.md" 2>/dev/null || echo "Not run."
    } >"$OUT/results-models.md"
}

run_models() {
    local eval_rc=0 limit easy_vqa=() vqa_infer=$BUILD/tools/vqa_infer
    models_report
    if [[ $HAVE_GPU == 0 ]]; then
        note "eval-easy-vqa: skipped (no GPU)"
        note "bench_gpu: skipped (no GPU)"
        models_report
        return 0
    fi
    [[ -d $BUILD/python/easy_vqa ]] && easy_vqa=(--easy-vqa-path "$BUILD/python") # a bundle's copy
    if [[ ! -x $vqa_infer ]]; then
        note "eval-easy-vqa: no $vqa_infer"
        eval_rc=1
    else
        # CUDA fp16 first (the claim to prove), then the CPU's fp32 (the reference), then CUDA fp32 if time allows.
        limit=$(limit_for "$EVAL_LIMIT_S")
        step eval-easy-vqa "$EVAL_LIMIT_S" "$MODELS_LOG" env PYTHONUNBUFFERED=1 "$PYTHON" tools/eval_easy_vqa.py \
            --vqa-infer "$vqa_infer" "${easy_vqa[@]}" --limit "${GPU_MODELS_QUESTIONS:-0}" --device cuda \
            --precision fp16 --compare-to cpu:fp32 --compare-to cuda:fp32 --min-agreement "$MIN_AGREEMENT" \
            --budget-s $((limit > 20 ? limit - 10 : limit)) --json-out "$OUT/eval.json" --markdown "$WORK/eval.md"
        eval_rc=$?
        # One summary line per run and per pair of runs.
        [[ -f $OUT/eval.json ]] && "$PYTHON" - "$OUT/eval.json" <<'EOF' | while IFS= read -r line; do note "$line"; done
import json, sys
report = json.load(open(sys.argv[1]))
for run in report["runs"]:
    if run["status"] == "ok":
        print(f"eval {run['backend']}: accuracy {100 * run['accuracy']:.2f} % ({run['correct']}/{report['questions']},"
              f" {run['errors']} errors), {run['seconds']} s")
    else:
        print(f"eval {run['backend']}: {run['status']}: {run.get('message', '')}")
for pair in report["agreement"]:
    print(f"agreement {pair['runs'][0]} vs {pair['runs'][1]}: {100 * pair['top1_agreement']:.3f} % same top-1"
          f" ({pair['disagreements']} differ), max top-1 score difference {pair['max_top1_score_diff']:.1e}")
EOF
    fi
    models_report
    # The rest of the budget: bench_gpu.sh skips what would not fit and keeps what it measured when stopped. Its
    # output goes to its own bench_gpu.log as well; GPU_MODELS_BENCH_ARGS="--device cpu" makes it a dry run.
    local extra=()
    read -ra extra <<<"${GPU_MODELS_BENCH_ARGS:-}"
    limit=$(limit_for "$BUDGET_S")
    step bench_gpu "$limit" "$MODELS_LOG" env PYTHON="$PYTHON" scripts/bench_gpu.sh --build-dir "$BUILD" --out "$OUT" \
        --budget $((limit - 20)) "${extra[@]}"
    # One summary line per benchmark step: "== NAME (at most N s)" and "   exit RC after T s", or "== NAME: skipped".
    awk '/^== .*\(at most/ {name = $0; sub(/^== /, "", name); sub(/ \(at most.*/, "", name)}
         /^   exit / {line = $0; sub(/^   /, "", line); print "bench " name ": " line}
         /^== .*: skipped/ {line = $0; sub(/^== /, "", line); print "bench " line}' "$OUT/bench_gpu.log" 2>/dev/null |
        while IFS= read -r line; do note "$line"; done
    models_report
    return "$eval_rc"
}

