#!/usr/bin/env bash
# The one check to run on a machine with a GPU, from the repository root, with build/release built elsewhere
# (`cmake --preset release && cmake --build --preset release`) and carried over. It prints the device and the
# libraries the binaries load, finds cuDNN, runs the `gpu` tests, a subset of them under compute-sanitizer
# memcheck, and the kernel benchmarks. Every step runs with its own time limit and a failing step never stops
# the next one; logs go to $OUT (default: gpu-check-out/). The exit status is that of the gpu tests.
#
#   OUT=/some/dir scripts/gpu_check.sh        # about 6 minutes at most
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build/release}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

GPU_TESTS=(masked_softmax_gpu_test fused_attention_gpu_test qkv_projection_gpu_test split_heads_gpu_test)
BENCHES=(qkv_projection_bench attention_bench split_heads_bench)

# step NAME SECONDS LOG COMMAND...: runs COMMAND under a time limit, appends its output to LOG and its status
# to the summary.
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "$name: exit $rc" | tee -a "$SUMMARY"
    return "$rc"
}

step nvidia-smi 30 "$OUT/environment.log" nvidia-smi
step nvcc-version 10 "$OUT/environment.log" bash -c 'command -v nvcc && nvcc --version || echo "no nvcc on PATH"'
for binary in "${GPU_TESTS[@]/#/$BUILD/tests/}" "${BENCHES[@]/#/$BUILD/bench/}"; do
    step "ldd $(basename "$binary")" 10 "$OUT/environment.log" ldd "$binary"
done
step cudnn-system 10 "$OUT/environment.log" bash -c 'ldconfig -p | grep -i cudnn || echo "no cuDNN in the ldconfig cache"'
step cudnn-torch 60 "$OUT/environment.log" python3 -c '
import glob, os
import torch
print(torch.__file__, torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
lib = os.path.join(os.path.dirname(torch.__file__), "lib")
print("\n".join(sorted(glob.glob(os.path.join(lib, "*cudnn*")))) or "no cuDNN inside torch/lib")
'

# The gpu tests, one process per test case, in parallel.
step gpu-tests 240 "$OUT/gpu_tests.log" \
    ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout 120 -j "$(nproc)"
tests_rc=$?

# compute-sanitizer on a subset of each binary (memcheck is slow): tile tails, masks, misaligned paths.
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer 2>/dev/null | head -n 1)
declare -A FILTER=(
    [masked_softmax_gpu_test]='*Lk33_fp16_maskfull:*Lk1025_bf16_maskfull:*B3_H1_Lq13_Lk100_fp32_maskfull_add_inplace'
    [fused_attention_gpu_test]='*B2_H8_Lq33_Lk257_Dh64_fp16_maskfull:*Dh40_fp32_maskfull:*Dh128_bf16_mask_misaligned:*uniform_packed_noprobs'
    [qkv_projection_gpu_test]='*B3_L13_H8_Dh64_G3_fp16:*B2_L13_H8_Dh64_G2_bf16_K13:*Dh25_G3_fp32:*B2_L33_H8_Dh64_G3_fp16_off1'
    [split_heads_gpu_test]='*B3_L33_H8_Dh64_fp16*'
)
if [[ -n "$SANITIZER" ]]; then
    for test in "${GPU_TESTS[@]}"; do
        step "memcheck $test" 60 "$OUT/sanitizer.log" "$SANITIZER" --tool memcheck --error-exitcode 1 \
            "$BUILD/tests/$test" --gtest_filter="${FILTER[$test]}"
    done
else
    echo "compute-sanitizer not found" | tee -a "$OUT/sanitizer.log" "$SUMMARY"
fi

# Benchmarks: short runs (each also times its baseline), plus JSON for the record.
for bench in "${BENCHES[@]}"; do
    step "$bench" 90 "$OUT/bench.log" "$BUILD/bench/$bench" --benchmark_min_time=0.05 \
        --benchmark_out="$OUT/$bench.json" --benchmark_out_format=json
done

echo "=== summary"
cat "$SUMMARY"
exit "$tests_rc"
