#!/usr/bin/env bash
# The engine against the PyTorch reference on the CPU, same weights, same inputs, same threads (docs/benchmarks.md).
#
#   scripts/bench_cpu.sh [--build-dir DIR] [--out DIR] [--threads "1 2"]
#
# Builds vqa_bench (the release preset, or an existing build folder given by --build-dir), writes a synthetic
# MCAN-small-like model (tools/make_bench_model.py) into the output folder, then runs vqa_bench and
# tools/bench_torch.py on models/easy-vqa and on that model at each thread count, and prints the comparison
# (tools/bench_report.py). Then the gain of padding removal: vqa_bench --padding packed,padded on the same model
# with 100 regions, each image holding 10 to 100 of them (--regions 10,100), summed up by tools/bench_padding.py.
# Timed calls per batch size and round: EASY_ITERS (default 10), BIG_ITERS (default 3, also the padding runs');
# rounds: BENCH_ROUNDS (default 3). A step during which other processes took CPU is rerun (BENCH_ATTEMPTS,
# BENCH_MAX_OTHER_LOAD, BENCH_QUIET_WAIT below); the report shows that load. The environment is used as it is:
# OPENBLAS_CORETYPE and friends are reported, never set here. PyTorch runs on OpenBLAS's OpenMP build when it is
# installed (LD_LIBRARY_PATH, as the engine links it): Debian's default pthreads build fights ATen's OpenMP threads
# for the cores and would make a baseline several times slower at 2 threads than the same PyTorch can be.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build/release
out_dir=""
threads_list="1 2"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --threads) threads_list="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_cpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

python=.venv/bin/python
[[ -x "$python" ]] || python=python3
torch_env=()
openblas_openmp=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [[ -e $openblas_openmp/libblas.so.3 ]]; then
  torch_env=(env "LD_LIBRARY_PATH=$openblas_openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
fi
if [[ "$build_dir" == build/release ]]; then
  cmake --preset release >/dev/null
else
  [[ -f "$build_dir/CMakeCache.txt" ]] || cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build_dir" --target vqa_bench >/dev/null
bench="$build_dir/tools/vqa_bench"

# Busy jiffies of the whole machine, and CPU seconds of this shell's finished children: their difference over a
# step is the CPU that other processes took meanwhile, which spoils timings on a small machine.
clock_ticks=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# (`times` runs in this shell, not in a command substitution's subshell, whose children would be none.)
times_file=$(mktemp)
trap 'rm -f "$times_file" "$times_file.c0" "$times_file.c1"' EXIT
children_cpu() {
  times >"$times_file"
  awk 'NR == 2 {split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1]*60 + u[2] + s[1]*60 + s[2]}' "$times_file"
}

# wait_for_quiet: until a one-second window with less than BENCH_MAX_OTHER_LOAD cores busy, for at most
# BENCH_QUIET_WAIT seconds (default 60).
wait_for_quiet() {
  local waited b0 b1
  for ((waited = 0; waited < ${BENCH_QUIET_WAIT:-60}; waited++)); do
    b0=$(machine_busy); sleep 1; b1=$(machine_busy)
    if awk -v b="$((b1 - b0))" -v hz="$clock_ticks" -v max="${BENCH_MAX_OTHER_LOAD:-0.05}" \
      'BEGIN {exit !(b / hz <= max)}'; then
      return 0
    fi
  done
}

# measured_step OUTPUT COMMAND...: runs COMMAND > OUTPUT and writes OUTPUT's other-load file (cores used by
# other processes during the step); reruns the step, up to BENCH_ATTEMPTS times (default 3), while that load is
# above BENCH_MAX_OTHER_LOAD cores (default 0.05). Each attempt first waits for a quiet machine.
measured_step() {
  local output="$1" attempt other
  shift
  for ((attempt = 1; attempt <= ${BENCH_ATTEMPTS:-3}; attempt++)); do
    local t0 b0 c0 t1 b1 c1
    wait_for_quiet
    children_cpu >"$times_file.c0"
    t0=$(date +%s.%N); b0=$(machine_busy)
    "$@" >"$output"
    t1=$(date +%s.%N); b1=$(machine_busy)
    children_cpu >"$times_file.c1"
    c0=$(<"$times_file.c0"); c1=$(<"$times_file.c1")
    other=$(awk -v b="$((b1 - b0))" -v hz="$clock_ticks" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" \
      'BEGIN {o = (b / hz - (c1 - c0)) / (t1 - t0); printf "%.3f", o < 0 ? 0 : o}')
    echo "$other" >"${output%.json}.other-load"
    if awk -v o="$other" -v max="${BENCH_MAX_OTHER_LOAD:-0.05}" 'BEGIN {exit !(o <= max)}'; then
      return 0
    fi
    echo "   other processes used $other cores during the step (attempt $attempt)" >&2
  done
}

if [[ -z "$out_dir" ]]; then
  out_dir=$(mktemp -d "${TMPDIR:-/tmp}/vqa-bench.XXXXXX")
fi
mkdir -p "$out_dir/padding"
echo "results in $out_dir"
"$python" tools/make_bench_model.py --out "$out_dir/mcan-small-like" >/dev/null
# Bottom-up-attention features have 10 to 100 regions per image, padded to the model's 100.
"$python" tools/make_bench_model.py --out "$out_dir/mcan-small-like-r100" --regions 100 >/dev/null

# model tag, directory, batch sizes, warmup, iterations
runs=(
  "easy-vqa models/easy-vqa 1,8,64,256 2 ${EASY_ITERS:-10}"
  "mcan-small-like $out_dir/mcan-small-like 1,8,32 1 ${BIG_ITERS:-3}"
)
# Rounds: the whole set again, engine and PyTorch side by side in time each round, so that a slow spell of the
# machine hits both sides of a pair; the report takes the median over rounds.
for ((round = 1; round <= ${BENCH_ROUNDS:-3}; round++)); do
  for run in "${runs[@]}"; do
    read -r tag model batches warmup iters <<<"$run"
    inputs="$out_dir/inputs-$tag.json"
    for threads in $threads_list; do
      echo "== round $round: $tag, $threads thread(s): vqa_bench" >&2
      measured_step "$out_dir/engine-$tag-t$threads-r$round.json" "$bench" --model "$model" --device cpu \
        --batch "$batches" --threads "$threads" --warmup "$warmup" --iters "$iters" --json --dump-inputs "$inputs"
      echo "== round $round: $tag, $threads thread(s): bench_torch.py" >&2
      measured_step "$out_dir/torch-$tag-t$threads-r$round.json" "${torch_env[@]}" "$python" tools/bench_torch.py --model "$model" \
        --inputs "$inputs" --threads "$threads" --warmup "$warmup" --iters "$iters" --json
    done
  done
  # Packed and padded in one process, their calls alternating (engine only: PyTorch has no packed path).
  for threads in $threads_list; do
    echo "== round $round: mcan-small-like-r100, $threads thread(s): vqa_bench --padding packed,padded" >&2
    measured_step "$out_dir/padding/mcan-small-like-r100-t$threads-r$round.json" "$bench" \
      --model "$out_dir/mcan-small-like-r100" --device cpu --regions 10,100 --padding packed,padded --batch 1,8,32 \
      --threads "$threads" --warmup 1 --iters "${BIG_ITERS:-3}" --json
  done
done

{
  "$python" tools/bench_report.py --dir "$out_dir" --binary "$bench"
  echo
  echo "Padding removal (mcan-small-like, 100 regions, 10 to 100 per image; gain = padded ms / packed ms):"
  echo
  "$python" tools/bench_padding.py "$out_dir/padding"
} | tee "$out_dir/report.md"
