#!/usr/bin/env bash
# The engine against PyTorch on one GPU, same weights, same inputs, measured in the same run (docs/benchmarks.md).
#
#   scripts/bench_gpu.sh [--build-dir DIR] [--out DIR] [--budget SECONDS] [--device cuda|cpu]
#
# For a machine with a CUDA device and no network: needs an existing build or a gpu_check.sh bundle
# (--build-dir, default build/release, for tools/vqa_bench) and a python with torch (PYTHON, else python3, else
# .venv/bin/python). Writes an MCAN-small-sized model (d 512, 8 heads, 6 + 6 layers, 100 regions, 14 tokens) with
# tools/make_bench_model.py, then runs vqa_bench --device cuda and tools/bench_torch.py --device cuda (eager,
# sdpa, compile, compile-ro) on it and on models/easy-vqa, batches 1,8,32,128,256,512, in fp32 and fp16, most
# important steps first, each under a timeout and all within --budget seconds (default 300; a step that would
# start with less than 15 s left is skipped). The gain of padding removal is measured on the MCAN-small-sized
# model too: vqa_bench --regions 10,100 --padding packed,padded, fp16 and fp32, batches 1 to 256
# (tools/bench_padding.py sums it up at the end of the report). --out (default $OUT, else a new temporary
# folder) receives three files, rewritten after every step so that a run stopped from outside keeps what it
# measured: report.md (tools/bench_report.py), bench_gpu.log and bench-gpu-results.tar.gz (every JSON and step log).
# Without a CUDA device it says so, runs a few-second CPU smoke of the Python side and exits 0. --device cpu runs
# the whole sequence on the CPU instead: a dry run of the steps, timeouts and budget (the fp16 steps fail or are
# skipped there, and the report has no device rows).
set -uo pipefail # no -e: a failed or timed-out step is logged and the run goes on
cd "$(dirname "$0")/.." || exit 1

build_dir=build/release
out_dir="${OUT:-}"
budget=300
device=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench_gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for candidate in python3 .venv/bin/python; do
    if "$candidate" -c "import torch" 2>/dev/null; then python="$candidate"; break; fi
  done
fi
if [[ -z "$python" ]]; then
  echo "bench_gpu.sh: no python with torch found (set PYTHON)" >&2
  exit 1
fi
[[ -n "$out_dir" ]] || out_dir=$(mktemp -d "${TMPDIR:-/tmp}/vqa-bench-gpu-out.XXXXXX")
mkdir -p "$out_dir"
started=$SECONDS

if [[ "$device" != cuda && "$device" != cpu ]]; then
  echo "bench_gpu.sh: --device is cuda or cpu, got $device" >&2
  exit 2
fi
if [[ "$device" == cuda ]] \
  && ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "no CUDA device here ($("$python" -c 'import torch; print("torch", torch.__version__)')):" \
    "CPU smoke of the Python side only, results in $out_dir"
  "$python" tools/bench_torch.py --model tests/goldens/regions_box_lstm_mcan_openvqa --device cpu --mode eager,sdpa \
    --batch 1,4 --warmup 1 --iters 2 --output "$out_dir/cpu-smoke-torch.json" >"$out_dir/cpu-smoke-torch.txt" \
    || { echo "CPU smoke failed:"; cat "$out_dir/cpu-smoke-torch.txt"; exit 1; }
  cat "$out_dir/cpu-smoke-torch.txt"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vqa-bench-gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
results="$work/results"
mkdir -p "$results/padding" # apart: bench_report.py would take these for the engine's main results

# The report and the archive of every result so far, in the output folder (after every step).
snapshot() {
  if "$python" tools/bench_report.py --dir "$results" >"$work/report.md" 2>"$work/report.stderr"; then
    mv "$work/report.md" "$out_dir/report.md"
  else
    { echo "No report: $(tail -n 1 "$work/report.stderr")"; echo; } >"$out_dir/report.md"
  fi
  if "$python" tools/bench_padding.py "$results/padding" >"$work/padding.md" 2>/dev/null; then
    { echo; echo "Padding removal (regions 10 to 100 of 100 per image; gain = padded ms / packed ms):"; echo
      cat "$work/padding.md"; } >>"$out_dir/report.md"
  fi
  tar -C "$work" -czf "$out_dir/bench-gpu-results.tar.gz" results
}

# step NAME LIMIT STDOUT COMMAND...: runs COMMAND with its output in STDOUT and its errors beside it (.stderr),
# killed after LIMIT seconds or when the budget runs out, whichever is first; then a snapshot.
step() {
  local name="$1" limit="$2" stdout="$3" rc=0 t0=$SECONDS
  shift 3
  local left=$((budget - (SECONDS - started)))
  if ((left < 15)); then
    echo "== $name: skipped, $left s of the $budget s budget left"
    return 0
  fi
  ((limit > left)) && limit=$left
  echo "== $name (at most $limit s)"
  timeout --kill-after=10 "$limit" "$@" >"$stdout" 2>"${stdout%.*}.stderr" || rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s$( ((rc == 124)) && echo ' (timed out)')"
  ((rc == 0)) || tail -n 5 "${stdout%.*}.stderr" | sed 's/^/   /'
  snapshot
}

batches=1,8,32,128,256,512
modes=eager,compile-ro,compile,sdpa # in order of importance: the targets compare with eager and the compiled modes
mcan="$work/mcan-small"

bench="$build_dir/tools/vqa_bench"
engine() { # engine TAG MODEL PRECISION LIMIT ITERS
  if [[ ! -x "$bench" ]]; then
    echo "== vqa_bench $1 $3: skipped, no $bench (build it, or pass --build-dir)"
    return 0
  fi
  step "vqa_bench $1 $3" "$4" "$results/$device-engine-$1-$3.json" "$bench" --model "$2" --device "$device" \
    --precision "$3" --batch "$batches" --warmup 3 --iters "$5" --json
}
# padding TAG MODEL PRECISION LIMIT ITERS: packed against padded in one vqa_bench (their calls alternate), images
# of 10 to 100 regions padded to the model's 100.
padding() {
  if [[ ! -x "$bench" ]]; then
    echo "== vqa_bench --padding $1 $3: skipped, no $bench (build it, or pass --build-dir)"
    return 0
  fi
  step "vqa_bench --padding $1 $3" "$4" "$results/padding/$device-padding-$1-$3.json" "$bench" --model "$2" \
    --device "$device" --precision "$3" --regions 10,100 --padding packed,padded --batch 1,8,32,128,256 --warmup 3 \
    --iters "$5" --json
}
# pytorch TAG MODEL PRECISION LIMIT ITERS: bench_torch starts no batch size after 2/3 of the step's time (start-up
# and one compilation fit in the rest), and writes its JSON after each one, so a timeout loses only the last.
pytorch() {
  local left=$((budget - (SECONDS - started))) limit="$4"
  ((limit > left)) && limit=$left
  step "bench_torch $1 $3" "$limit" "$results/$device-torch-$1-$3.txt" "$python" tools/bench_torch.py --model "$2" \
    --device "$device" --precision "$3" --mode "$modes" --batch "$batches" --warmup 3 --iters "$5" \
    --budget-s $((limit * 2 / 3)) --output "$results/$device-torch-$1-$3.json"
}

benchmark() {
  echo "results in $out_dir (work folder $work), budget $budget s"
  command -v nvidia-smi >/dev/null \
    && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
  "$python" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'CUDA',
    torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(),
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  step "MCAN-small-sized model" 120 "$results/make-model.txt" \
    "$python" tools/make_bench_model.py --out "$mcan" --regions 100 --layers 6 --hidden 512 --heads 8
  [[ -f "$mcan/model.safetensors" ]] || echo "   no MCAN-small-sized model: its steps will fail"

  engine mcan-small "$mcan" fp16 45 10
  engine mcan-small "$mcan" fp32 45 10
  padding mcan-small "$mcan" fp16 60 10
  pytorch mcan-small "$mcan" fp16 130 10
  padding mcan-small "$mcan" fp32 60 10
  engine easy-vqa models/easy-vqa fp16 30 20
  engine easy-vqa models/easy-vqa fp32 30 20
  pytorch mcan-small "$mcan" fp32 100 10
  pytorch easy-vqa models/easy-vqa fp16 50 20
  pytorch easy-vqa models/easy-vqa fp32 50 20

  snapshot
  cat "$out_dir/report.md"
  echo "done in $((SECONDS - started)) s: $out_dir/report.md, bench_gpu.log, bench-gpu-results.tar.gz"
}

# The pipeline ends when tee has written the last line: the log is whole when the script returns.
benchmark 2>&1 | tee -a "$out_dir/bench_gpu.log"
