#!/usr/bin/env bash
# The one check to run on a machine with a GPU (docs/gpu-check.md). Three modes:
#
#   BUILD=build/release scripts/gpu_check.sh --bundle
#       Here, after building: packs BUILD's gpu test and benchmark binaries, tools/vqa_infer and tools/vqa_bench
#       and the shared libraries they load (libvqa.so.0 too; not glibc's or CUDA's) into binaries.tar.xz, and
#       copies the easy_vqa package's code and test split and the commit they were built from beside it, into
#       BUILD/gpu-check-bundle: the one folder to carry to the GPU machine (about 15 MiB).
#
#   OUT=/some/dir BUILD=build/release/gpu-check-bundle scripts/gpu_check.sh
#       There (or on any machine, with a build tree or a bundle): prints the device, finds cuDNN and every library
#       the binaries miss, runs every gpu test binary (BUILD/tests/*_gpu_test, gtest shards in parallel, failing
#       cases rerun alone), compute-sanitizer memcheck, racecheck and synccheck on a few cases of each, every
#       benchmark (BUILD/bench/*_bench), bench/sdpa_bench.py, and writes the draft of the results file
#       (OUT/results.md). Each step has its own time limit and all of them share a budget (GPU_CHECK_BUDGET_S,
#       default 400 s: under 7 minutes in all); a failing step never stops the next one. Without a GPU the steps
#       that need one are skipped at once. OUT (default gpu-check-out/) receives 7 files: summary.txt,
#       environment.log, gpu_tests.log, sanitizer.log, bench.log, results.md, results.json. The exit status is 0
#       when every gpu test shard passed (or none could run for want of a GPU), 1 otherwise.
#
#   OUT=/some/dir BUILD=build/release/gpu-check-bundle scripts/gpu_check.sh --models
#       The second run on the same machine, with the same set-up of libraries: tools/eval_easy_vqa.py on the
#       easy-VQA test split (CUDA fp16 against CPU fp32 and CUDA fp32: the top-1 answer must agree on 99.5 % of
#       the questions), then scripts/bench_gpu.sh with what is left of the budget (GPU_MODELS_BUDGET_S, default
#       480 s). OUT receives 7 files: results-models.md (summary first, rewritten after every step),
#       environment-models.log, models.log, eval.json, and bench_gpu.sh's report.md, bench_gpu.log and
#       bench-gpu-results.tar.gz. GPU_MODELS_QUESTIONS=N evaluates only the first N questions. The exit status is
#       0 when the evaluation passed (or no GPU was found), 1 otherwise.
set -uo pipefail # no -e: a failed or timed-out step is recorded and the next one runs
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build/release}
OUT=${OUT:-gpu-check-out}
PYTHON=${PYTHON:-python3}
MODE=tests
case ${1:-} in
    --bundle) MODE=bundle ;;
    --models) MODE=models ;;
    '') ;;
    *)
        sed -n '2,28p' "$0"
        exit 2
        ;;
esac
if [[ $MODE == models ]]; then
    BUDGET_S=${GPU_MODELS_BUDGET_S:-480}
    REPORT_RESERVE_S=5 # the report is a concatenation
else
    BUDGET_S=${GPU_CHECK_BUDGET_S:-400}
    REPORT_RESERVE_S=30 # kept back from the budget for the report
fi
MIN_STEP_S=5        # a step that would get less is skipped
SHARDS=4            # gtest shards per gpu test binary, run side by side
SANITIZER_JOBS=6    # compute-sanitizer runs side by side
RERUNS_PER_BINARY=3 # failing (or crashing) cases rerun alone, per binary

# compute-sanitizer's --gtest_filter per binary: tile tails, masks, misaligned and block-per-row paths. A binary
# not listed runs its first 3 cases.
declare -A SANITIZER_FILTER=(
    [masked_softmax_gpu_test]='*Lk33_fp16_maskfull:*Lk1025_bf16_maskfull:*B3_H1_Lq13_Lk100_fp32_maskfull_add_inplace'
    [fused_attention_gpu_test]='*B2_H8_Lq33_Lk257_Dh64_fp16_maskfull:*Dh40_fp32_maskfull:*Dh128_bf16_mask_misaligned:*uniform_packed_noprobs'
    [qkv_projection_gpu_test]='*B3_L13_H8_Dh64_G3_fp16:*B2_L13_H8_Dh64_G2_bf16_K13:*Dh25_G3_fp32:*B2_L33_H8_Dh64_G3_fp16_off1'
    [split_heads_gpu_test]='*B3_L33_H8_Dh64_fp16*'
)
# Binaries whose kernels use no shared memory and no barriers: memcheck only. Every other one (a new binary too)
# also runs racecheck and synccheck.
NO_SHARED_MEMORY=" split_heads_gpu_test "

# Executables matching a glob, one per line.
executables() {
    local file
    for file in "$@"; do
        [[ -f $file && -x $file ]] && echo "$file"
    done
}

# Where the binaries come from; $1 is one of them, whose time stamp is the build's.
source_info() {
    if git rev-parse --git-dir >/dev/null 2>&1; then
        echo "commit $(git rev-parse HEAD)"
        local changed
        changed=$(git status --porcelain --untracked-files=no | wc -l)
        ((changed == 0)) && echo "state clean" || echo "state $changed files with uncommitted changes"
    else
        echo "commit unknown"
    fi
    echo "source_dir $(pwd -P)" # the tests find their fixtures under this path, compiled in (VQA_SOURCE_DIR)
    echo "built $(date -u -r "$1" +%Y-%m-%dT%H:%M:%SZ)"
    echo "nvcc $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null) |
        sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    # The cuDNN headers built against: a GPU machine whose cuDNN is older may lack what they declare.
    local include
    include=$(sed -n 's/^VQA_CUDNN_INCLUDE_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
    [[ -f $include/cudnn_version.h ]] && echo "cudnn $(awk '/#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) / {
        v = v sep $3; sep = "."} END {print v}' "$include/cudnn_version.h")"
}

# The easy_vqa package's folder, from PYTHON or the project's .venv (scripts/setup.sh installs it there).
easy_vqa_dir() {
    local python
    for python in "$PYTHON" .venv/bin/python; do
        "$python" -c 'import easy_vqa, os; print(os.path.dirname(easy_vqa.__file__))' 2>/dev/null && return
    done
}

# --bundle: what the GPU machine needs from this one, in one folder.
bundle() {
    local dest=$BUILD/gpu-check-bundle
    mapfile -t binaries < <(executables "$BUILD"/tests/*_gpu_test "$BUILD"/bench/*_bench "$BUILD"/tools/vqa_infer \
        "$BUILD"/tools/vqa_bench)
    if ((${#binaries[@]} == 0)); then
        echo "gpu_check.sh --bundle: no $BUILD/tests/*_gpu_test, $BUILD/bench/*_bench or $BUILD/tools; build first" >&2
        return 1
    fi
    rm -rf "$dest"
    mkdir -p "$dest/tests" "$dest/bench" "$dest/tools" "$dest/lib"
    local binary soname path
    for binary in "${binaries[@]}"; do
        cp "$binary" "$dest/$(basename "$(dirname "$binary")")/"
    done
    # Every library the loader resolves here except glibc's (the GPU machine's own must serve) and CUDA's (the
    # driver's and the toolkit's are there, and cuBLASLt alone is 500 MB). The run uses a bundled library only
    # where that machine lacks the soname, except libvqa.so.0, which must be the one the tools were built with.
    # Packed with xz: 76 MB of binaries and libraries become 13 (gzip: 26), which every call to the device carries.
    while read -r soname path; do
        case $soname in
            libc.so.* | libm.so.* | libdl.so.* | librt.so.* | libpthread.so.* | libresolv.so.* | ld-linux*) ;;
            libcu* | libnv*) ;;
            *) cp -L "$path" "$dest/lib/$soname" ;;
        esac
    done < <(for binary in "${binaries[@]}"; do ldd "$binary"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' |
        sort -u)
    local libraries
    libraries=$(find "$dest/lib" -name '*.so*' | wc -l)
    tar -C "$dest" -cf - tests bench tools lib | xz -T2 -6 >"$dest/binaries.tar.xz" &&
        rm -rf "${dest:?}/tests" "${dest:?}/bench" "${dest:?}/tools" "${dest:?}/lib"
    # tools/eval_easy_vqa.py's questions: the package's code and its test split (1,000 images, under 1 MB); the
    # GPU machine has no easy_vqa and no network.
    local package images=0
    package=$(easy_vqa_dir)
    if [[ -n $package && -d $package/data/test ]]; then
        mkdir -p "$dest/python/easy_vqa/data"
        cp "$package"/*.py "$dest/python/easy_vqa/"
        cp -r "$package/data/test" "$dest/python/easy_vqa/data/"
        cp "$package/data/answers.txt" "$dest/python/easy_vqa/data/" 2>/dev/null
        images=$(find "$dest/python/easy_vqa/data/test" -name '*.png' | wc -l)
    fi
    source_info "${binaries[0]}" >"$dest/source.txt"
    echo "gpu_check.sh --bundle: $dest ($(du -sb "$dest" | awk '{printf "%.1f MiB", $1 / 1048576}')):" \
        "${#binaries[@]} binaries, $libraries libraries," \
        "$( ((images > 0)) && echo "easy_vqa's test split ($images images)" ||
            echo "no easy_vqa package (PYTHON or .venv): --models will not evaluate")," \
        "$(head -n 1 "$dest/source.txt")"
    echo "carry $dest and run: OUT=\$OUT BUILD=$dest scripts/gpu_check.sh, then the same with --models"
}

if [[ $MODE == bundle ]]; then
    bundle
    exit
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT # everything worth keeping is folded into OUT
mkdir -p "$WORK/tests" "$WORK/sanitizer" "$WORK/bench" "$WORK/lib"
# A bundle's binaries and libraries are unpacked into WORK/build, which serves as BUILD from here on.
BUILD_NAME=$BUILD
if [[ -f $BUILD/binaries.tar.xz ]]; then
    mkdir -p "$WORK/build"
    if ! tar -C "$WORK/build" -xJf "$BUILD/binaries.tar.xz" 2>/dev/null; then # no xz program here: Python's lzma
        "$PYTHON" -c 'import sys, tarfile
extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
tarfile.open(sys.argv[1]).extractall(sys.argv[2], **extra)' "$BUILD/binaries.tar.xz" "$WORK/build" ||
            echo "gpu_check.sh: could not unpack $BUILD/binaries.tar.xz" >&2
    fi
    cp "$BUILD/source.txt" "$WORK/build/" 2>/dev/null
    [[ -d $BUILD/python ]] && ln -s "$(cd "$BUILD/python" && pwd -P)" "$WORK/build/python"
    BUILD=$WORK/build
fi
if [[ $MODE == models ]]; then
    SUMMARY=$WORK/summary.txt # shown at the top of results-models.md
    ENV_LOG=$OUT/environment-models.log
    MODELS_LOG=$OUT/models.log
    logs=("$ENV_LOG" "$MODELS_LOG")
    rm -f "$OUT/results-models.md" "$OUT/eval.json" "$OUT/report.md" "$OUT/bench_gpu.log" \
        "$OUT/bench-gpu-results.tar.gz"
else
    SUMMARY=$OUT/summary.txt
    ENV_LOG=$OUT/environment.log
    logs=("$OUT/gpu_tests.log" "$OUT/sanitizer.log" "$OUT/bench.log")
    rm -f "$OUT/results.md" "$OUT/results.json"
fi
for file in "$SUMMARY" "$ENV_LOG" "${logs[@]}"; do
    : >"$file" # a rerun into the same OUT starts afresh
done
DEADLINE=$((SECONDS + BUDGET_S - REPORT_RESERVE_S))

note() {
    echo "$*" >>"$SUMMARY" # first: the file must not depend on whoever reads stdout
    echo "$*"
}

status_text() {
    case $1 in
        0) echo "ok" ;;
        124 | 137) echo "timed out (exit $1)" ;;
        *) echo "exit $1" ;;
    esac
}

# The seconds a step may run: its own limit, cut to what is left of the budget (and of `until`, when given).
limit_for() {
    local want=$1 until=${2:-$DEADLINE}
    ((until > DEADLINE)) && until=$DEADLINE
    local left=$((until - SECONDS))
    ((left < want)) && want=$left
    echo "$want"
}

# step NAME LIMIT LOG COMMAND...: COMMAND under its time limit, its output appended to LOG, its status to the
# summary. Skipped when the budget leaves it less than MIN_STEP_S.
step() {
    local name=$1 limit log=$3
    limit=$(limit_for "$2")
    shift 3
    if ((limit < MIN_STEP_S)); then
        note "$name: skipped (time budget spent)"
        return 125
    fi
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >>"$log"
    timeout --kill-after=5 "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    note "$name: $(status_text "$rc")"
    return "$rc"
}

# spawn MAX_JOBS UNTIL LIMIT LOG COMMAND...: runs COMMAND in the background once fewer than MAX_JOBS run, under
# LIMIT seconds cut to UNTIL; its output goes to LOG and its status to LOG's .rc twin. Past UNTIL, the .rc says
# "skipped" and nothing runs.
spawn() {
    local max_jobs=$1 until=$2 limit=$3 log=$4
    shift 4
    while (($(jobs -rp | wc -l) >= max_jobs)); do
        wait -n
    done
    limit=$(limit_for "$limit" "$until")
    if ((limit < MIN_STEP_S)); then
        echo skipped >"${log%.log}.rc"
        return
    fi
    (
        timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
        echo $? >"${log%.log}.rc"
    ) &
}

# Appends each LOG of a group, under a header with its status, to COMBINED.
combine_logs() {
    local combined=$1 log
    shift
    for log in "$@"; do
        [[ -f $log ]] || continue
        echo "=== $(basename "${log%.log}"): $(cat "${log%.log}.rc" 2>/dev/null || echo 'no status')" >>"$combined"
        cat "$log" >>"$combined"
    done
}

GPU_TESTS=()
BENCHES=()
if [[ $MODE == tests ]]; then
    mapfile -t GPU_TESTS < <(executables "$BUILD"/tests/*_gpu_test)
    mapfile -t BENCHES < <(executables "$BUILD"/bench/*_bench)
fi
mapfile -t TOOLS < <(executables "$BUILD"/tools/vqa_infer "$BUILD"/tools/vqa_bench) # --models runs them
BLOCKERS=() # what makes the first run's verdict "stop": failing tests, tools that do not start, sanitizer errors
HAVE_GPU=0
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L 2>/dev/null | grep '^GPU ' >/dev/null && HAVE_GPU=1
else # no nvidia-smi on the PATH: ask PyTorch
    "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null && HAVE_GPU=1
fi
echo "gpu_check.sh${1:+ $1}: BUILD=$BUILD_NAME, ${#GPU_TESTS[@]} gpu test binaries, ${#BENCHES[@]} benchmarks," \
    "${#TOOLS[@]} tools, $([[ $HAVE_GPU == 1 ]] && echo 'a GPU' || echo 'no GPU'), budget ${BUDGET_S}s, logs in $OUT"

# ---- environment: device, toolkit, where the libraries come from ----
{
    echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -a)"
    [[ -f /etc/os-release ]] && grep PRETTY_NAME /etc/os-release
} >>"$ENV_LOG"
step nvidia-smi 30 "$ENV_LOG" nvidia-smi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$WORK/gpu.txt" 2>/dev/null ||
    : >"$WORK/gpu.txt"
step nvcc-version 10 "$ENV_LOG" bash -c 'command -v nvcc && nvcc --version || echo "no nvcc on PATH"'
if [[ -f $BUILD/source.txt ]]; then
    cp "$BUILD/source.txt" "$WORK/source.txt" # a bundle: the commit its binaries were built from
else
    source_info "$(executables "${GPU_TESTS[@]}" "${BENCHES[@]}" "${TOOLS[@]}" "$0" | head -n 1)" >"$WORK/source.txt"
fi
cat "$WORK/source.txt" >>"$ENV_LOG"
# Tests that read fixtures (goldens, images) look for them under the source path they were built in. Where this
# copy of the tree lives elsewhere and that path is free, it becomes a link to here.
source_dir=$(sed -n 's/^source_dir //p' "$WORK/source.txt")
if [[ -n $source_dir && $(cd "$source_dir" 2>/dev/null && pwd -P) != "$(pwd -P)" ]]; then # or an earlier run's link
    if [[ ! -e $source_dir ]] && mkdir -p "$(dirname "$source_dir")" 2>/dev/null &&
        ln -s "$(pwd -P)" "$source_dir"; then
        note "source: $source_dir (where the binaries were built) now links to $(pwd -P)"
    else
        note "source: the binaries were built in $source_dir, which is not this tree; tests reading fixtures may fail"
    fi
fi

# PyTorch's own cuDNN (the pip wheels keep it in site-packages/nvidia/cudnn/lib, older ones in torch/lib): the path
# of the libcudnn it loaded, and the folders where CUDA libraries of the wheels live.
step torch-cudnn 60 "$ENV_LOG" "$PYTHON" - "$WORK/torch.txt" <<'EOF'
import glob, os, sys
out = open(sys.argv[1], "w")
try:
    import torch
except Exception as error:  # no torch, or one that does not load: said, not fatal
    print("torch not importable:", error)
    sys.exit(0)
print("torch", torch.__version__, torch.__file__, "CUDA", torch.version.cuda)
try:
    print("cuDNN version", torch.backends.cudnn.version())
except Exception as error:
    print("cuDNN not usable:", error)
torch_dir = os.path.dirname(torch.__file__)
site = os.path.dirname(torch_dir)
out.write(f"torch_lib={os.path.join(torch_dir, 'lib')}\nsite={site}\n")
loaded = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libcudnn" in line})
print("libcudnn loaded from:", *loaded or ["(none)"])
if loaded:
    out.write(f"cudnn_dir={os.path.dirname(loaded[0])}\n")
found = sorted(glob.glob(os.path.join(torch_dir, "lib", "*cudnn*")) +
               glob.glob(os.path.join(site, "nvidia", "cudnn", "lib", "*")))
print("cuDNN files in torch's site-packages:", *found or ["(none)"], sep="\n  ")
EOF
torch_value() { sed -n "s/^$1=//p" "$WORK/torch.txt" 2>/dev/null | head -n 1; }
# Not grep -q here or below: its early exit can kill the writer with SIGPIPE, which pipefail reports as a failure.
system_cudnn=$(ldconfig -p 2>/dev/null | grep -i 'libcudnn\.so')
echo "=== cuDNN in the loader cache: ${system_cudnn:-none}" >>"$ENV_LOG"
cudnn_dir=$(torch_value cudnn_dir)
if [[ -z $system_cudnn && -n $cudnn_dir ]]; then
    export LD_LIBRARY_PATH=$cudnn_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    note "cudnn: only PyTorch's copy, LD_LIBRARY_PATH gets $cudnn_dir"
fi

# Libraries the binaries miss here: from the bundle, the CUDA toolkit or the pip wheels, linked one by one into
# WORK/lib, so that nothing the machine has is ever shadowed.
if [[ -d $BUILD/lib ]]; then
    # The engine library always comes from the bundle: the tools' RUNPATH names the build tree they were linked
    # in, and whatever that path holds on this machine is not what they were built with.
    for library in "$BUILD/lib"/libvqa.so*; do
        [[ -e $library ]] && ln -sf "$library" "$WORK/lib/" &&
            echo "library $(basename "$library"): bundle" >>"$ENV_LOG"
    done
fi
export LD_LIBRARY_PATH=$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
find_library() {
    local soname=$1 dir site torch_lib
    site=$(torch_value site)
    torch_lib=$(torch_value torch_lib)
    for dir in "$BUILD/lib" /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
        /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib "$torch_lib"; do
        [[ -n $dir && -e $dir/$soname ]] && echo "$dir/$soname" && return
    done
    [[ -n $site && -d $site/nvidia ]] && find "$site/nvidia" -maxdepth 4 -name "$soname" -print -quit
}
for _ in 1 2 3; do # a library found may need others
    mapfile -t missing < <(for binary in "${GPU_TESTS[@]}" "${BENCHES[@]}" "${TOOLS[@]}"; do
        ldd "$binary" 2>/dev/null
    done | awk '$2 == "=>" && $3 == "not" {print $1}' | sort -u)
    ((${#missing[@]} == 0)) && break
    linked=0
    for soname in "${missing[@]}"; do
        path=$(find_library "$soname")
        if [[ -n $path ]]; then
            ln -sf "$path" "$WORK/lib/$soname" && linked=1
            echo "library $soname: $path" >>"$ENV_LOG"
        fi
    done
    ((linked == 1)) || break
done
# What each binary loads, and whether it starts: it must list its cases, or print its version or usage (no device
# needed). Only problems reach the summary.
env_end=$((SECONDS + 60))
for binary in "${GPU_TESTS[@]}" "${BENCHES[@]}" "${TOOLS[@]}"; do
    name=$(basename "$binary")
    echo "=== ldd $name" >>"$ENV_LOG"
    ldd "$binary" >>"$ENV_LOG" 2>&1
    still_missing=$(ldd "$binary" 2>&1 | awk '/not found/ {print $1}' | paste -sd' ' -)
    [[ -z $still_missing ]] || note "ldd $name: missing $still_missing"
    case $name in
        vqa_infer) list=--version ;;
        vqa_bench) list=--help ;;
        *_bench) list=--benchmark_list_tests ;;
        *) list=--gtest_list_tests ;;
    esac
    listing=$(timeout --kill-after=2 "$(limit_for 15 "$env_end")" "$binary" "$list" 2>&1)
    rc=$?
    echo "=== $name $list: exit $rc, $(grep -c . <<<"$listing") lines" >>"$ENV_LOG"
    ((rc == 0)) || note "$name $list: $(status_text "$rc"): $(head -n 1 <<<"$listing")"
    [[ $name == vqa_* && ($rc != 0 || -n $still_missing) ]] && BLOCKERS+=("$name does not start")
done
((${#TOOLS[@]} == 2)) || BLOCKERS+=("the build has no tools/vqa_infer or tools/vqa_bench")

# ---- --models: accuracy and backend agreement on easy-VQA, then the model benchmarks ----
if [[ $MODE == models ]]; then
    # shellcheck source=scripts/gpu_check_models.sh
    source scripts/gpu_check_models.sh
    run_models
    models_rc=$?
    echo "=== summary ($SECONDS s)"
    cat "$SUMMARY"
    echo "results: $OUT/results-models.md"
    exit "$models_rc"
fi

# ---- gpu tests: every binary in SHARDS gtest shards side by side, one CUDA context per shard ----
tests_rc=0
if [[ $HAVE_GPU == 0 ]]; then
    note "gpu-tests: skipped (no GPU)"
elif ((${#GPU_TESTS[@]} == 0)); then
    note "gpu-tests: no $BUILD/tests/*_gpu_test found"
    tests_rc=1
else
    phase_end=$((SECONDS + 170))
    for binary in "${GPU_TESTS[@]}"; do
        name=$(basename "$binary")
        for ((shard = 0; shard < SHARDS; shard++)); do
            spawn "$(nproc)" "$phase_end" 150 "$WORK/tests/$name.shard$shard.log" \
                env GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$shard "$binary" --gtest_color=no \
                --gtest_output="json:$WORK/tests/$name.shard$shard.json"
        done
    done
    wait
    # Failing cases, and the case a crashed shard was in, rerun alone: a sticky CUDA error from one case makes
    # every later case of its process fail, and the rerun tells which failures are real.
    for binary in "${GPU_TESTS[@]}"; do
        name=$(basename "$binary")
        mapfile -t again < <(cat "$WORK/tests/$name".shard*.log 2>/dev/null | awk '
            /^\[ RUN      \] / { running[$4] = 1; order[++n] = $4 }
            /^\[  FAILED  \] [^ ]*\./ { name = $4; sub(/,$/, "", name); failed[name] = 1; delete running[name] }
            /^\[       OK \] |^\[  SKIPPED \] / { delete running[$4] }
            END { for (i = 1; i <= n; ++i) if (order[i] in failed || order[i] in running) print order[i] }' |
            awk '!seen[$0]++' | head -n "$RERUNS_PER_BINARY")
        for ((i = 0; i < ${#again[@]}; i++)); do
            echo "${again[i]}" >"$WORK/tests/$name.rerun$i.case"
            spawn "$(nproc)" "$((SECONDS + 60))" 45 "$WORK/tests/$name.rerun$i.log" "$binary" --gtest_color=no \
                --gtest_filter="${again[i]}"
        done
    done
    wait
    for binary in "${GPU_TESTS[@]}"; do
        name=$(basename "$binary")
        shard_logs=("$WORK/tests/$name".shard*.log)
        combine_logs "$OUT/gpu_tests.log" "${shard_logs[@]}" "$WORK/tests/$name".rerun*.log
        statuses=$(cat "$WORK/tests/$name".shard*.rc 2>/dev/null | sort | uniq -c |
            awk '{status = $2 == "0" ? "ok" : $2 == "skipped" ? "skipped" : "exit " $2
                  printf "%s%s x %s", sep, status, $1; sep = ", "}')
        note "gpu-tests $name: shards ${statuses:-none ran}"
        if grep -qv '^0$' "$WORK/tests/$name".shard*.rc 2>/dev/null ||
            (($(cat "$WORK/tests/$name".shard*.rc 2>/dev/null | wc -l) < SHARDS)); then
            tests_rc=1
            BLOCKERS+=("$name failed")
        fi
    done
fi

# ---- compute-sanitizer: memcheck on every binary; racecheck and synccheck where shared memory is used ----
SANITIZER=$(command -v compute-sanitizer || executables /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda-*/bin/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer | head -n 1)
if [[ $HAVE_GPU == 0 ]]; then
    note "compute-sanitizer: skipped (no GPU)"
elif [[ -z $SANITIZER ]]; then
    note "compute-sanitizer: not found"
else
    phase_end=$((SECONDS + 150))
    sanitizer_logs=()
    for binary in "${GPU_TESTS[@]}"; do
        name=$(basename "$binary")
        filter=${SANITIZER_FILTER[$name]:-}
        if [[ -z $filter ]]; then # the first 3 cases
            filter=$("$binary" --gtest_list_tests 2>/dev/null |
                awk '/^[^ ]/ {suite = $1; next} /^  [^ ]/ {print suite $1; if (++n == 3) exit}' | paste -sd: -)
        fi
        tools=(memcheck)
        [[ $NO_SHARED_MEMORY == *" $name "* ]] || tools+=(racecheck synccheck)
        for tool in "${tools[@]}"; do
            log=$WORK/sanitizer/$name.$tool.log
            sanitizer_logs+=("$log")
            spawn "$SANITIZER_JOBS" "$phase_end" 90 "$log" "$SANITIZER" --tool "$tool" --error-exitcode 1 \
                --print-limit 20 "$binary" --gtest_color=no --gtest_filter="$filter"
        done
    done
    wait
    combine_logs "$OUT/sanitizer.log" "${sanitizer_logs[@]}"
    # One summary line per binary: each tool's status and its error count.
    for binary in "${GPU_TESTS[@]}"; do
        name=$(basename "$binary")
        results=()
        for log in "$WORK/sanitizer/$name".*.log; do
            [[ -f $log ]] || continue
            tool=${log%.log}
            tool=${tool##*.}
            rc=$(cat "${log%.log}.rc" 2>/dev/null || echo 'no status')
            [[ $rc =~ ^[0-9]+$ ]] && rc=$(status_text "$rc")
            counts=$(grep -ho 'ERROR SUMMARY: [0-9]* errors\?\|([0-9]* errors, [0-9]* warnings)' "$log" | tail -n 1 |
                sed 's/ERROR SUMMARY: //; s/[()]//g')
            results+=("$tool $rc${counts:+ ($counts)}")
            # A runtime where the sanitizer cannot attach ("Device not supported", gVisor) is no finding of ours.
            [[ $counts =~ ^[1-9] ]] && ! grep -q 'Device not supported' "$log" &&
                BLOCKERS+=("compute-sanitizer $tool found errors in $name")
        done
        ((${#results[@]} == 0)) || note "sanitizer $name: $(printf '%s; ' "${results[@]}" | sed 's/; $//')"
    done
fi

# ---- benchmarks: one after another (timings must not share the GPU), each also written as JSON ----
if [[ $HAVE_GPU == 0 ]]; then
    note "benchmarks: skipped (no GPU)"
else
    for binary in "${BENCHES[@]}"; do
        name=$(basename "$binary")
        step "$name" 120 "$OUT/bench.log" "$binary" --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
            --benchmark_out="$WORK/bench/$name.json" --benchmark_out_format=json
    done
fi

# PyTorch's SDPA on the same attention shapes (says "no CUDA device" and exits 0 without one).
step sdpa_bench 90 "$OUT/bench.log" env PYTHONUNBUFFERED=1 "$PYTHON" bench/sdpa_bench.py --out "$WORK/sdpa.jsonl"

# Whether the second run (--models) may follow on the same machine: not on a build with known faults.
if [[ $HAVE_GPU == 0 ]]; then
    note "verdict: no GPU, nothing was checked"
elif ((${#BLOCKERS[@]} == 0)); then
    note "verdict: go on: run gpu_check.sh --models now"
else
    note "verdict: stop and fix first: $(printf '%s; ' "${BLOCKERS[@]}" | sed 's/; $//')"
fi

# ---- the draft of the results file, from everything above ----
DEADLINE=$((DEADLINE + REPORT_RESERVE_S))
step report 20 "$OUT/bench.log" "$PYTHON" bench/report_results.py --work "$WORK" --summary "$SUMMARY" \
    --markdown "$OUT/results.md" --json "$OUT/results.json"

echo "=== summary ($SECONDS s)"
cat "$SUMMARY"
echo "draft of the results file: $OUT/results.md"
exit "$tests_rc"
