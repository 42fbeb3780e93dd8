// What the kernel benchmarks share: the shapes, the H200 ceilings the counters are fractions of, CUDA-event timing
// of a batch of calls, device arrays of fixed-seed random data, the key padding mask policy, a cuBLAS handle, the
// counters, and the main() that prints one line and exits 0 when there is no device.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cublas_handle.h"
#include "kernels/cuda_check.h"

namespace vqa::bench {

constexpr int kHeads = 8;               // H of every shape
constexpr int kHeadDim = 64;            // Dh of every shape
constexpr int kCallsPerIteration = 20;  // events around a single short call would mostly time the events
constexpr int kBaselineIterations = 50;

// The ceilings the *_frac counters divide by, measured on the lent H200s (docs/gpu-check.md): a large
// device-to-device copy, counting bytes read + written, and a large dense GEMM through PyTorch. fp32 has no
// tensor-core path in these kernels or in the baselines (CUBLAS_COMPUTE_32F), so its ceiling is the CUDA-core rate.
constexpr double kCopyBytesPerSecond = 4.3e12;
constexpr double kTensorFlopsPerSecond = 790e12;  // dense bf16/fp16 with float accumulation
constexpr double kSimtFp32FlopsPerSecond = 60e12;

template <typename T>
constexpr double flop_ceiling() {
    return std::is_same_v<T, float> ? kSimtFp32FlopsPerSecond : kTensorFlopsPerSecond;
}

using cuda::cuda_type;  // benchmarks run float, __half and __nv_bfloat16

// Knuth's MMIX linear congruential generator, top 31 bits. bench/sdpa_bench.py draws the same key lengths with it.
inline uint32_t next_random(uint64_t& state) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
}

// The key padding policy of the attention benchmarks (and of bench/sdpa_bench.py): batch b keeps its first
// Lk - r_b keys, r_b = next_random() % ceil(Lk / 2) from seed kKeyLengthSeed, so every row has between
// Lk - ceil(Lk / 2) + 1 and Lk valid keys, padding at the end as in a padded batch of questions.
constexpr uint64_t kKeyLengthSeed = 2024;

inline std::vector<int> key_lengths(int batch, int kv_len) {
    std::vector<int> lengths(static_cast<size_t>(batch));
    uint64_t state = kKeyLengthSeed;
    const uint32_t spread = static_cast<uint32_t>((kv_len + 1) / 2);
    for (int& length : lengths) {
        length = kv_len - static_cast<int>(next_random(state) % spread);
    }
    return lengths;
}

// uint8 [B, Lk], 1 = valid key.
inline std::vector<uint8_t> key_padding_mask(int batch, int kv_len) {
    const std::vector<int> lengths = key_lengths(batch, kv_len);
    std::vector<uint8_t> mask(static_cast<size_t>(batch) * kv_len, 0);
    for (int b = 0; b < batch; ++b) {
        std::fill_n(mask.begin() + static_cast<ptrdiff_t>(b) * kv_len, lengths[static_cast<size_t>(b)], uint8_t{1});
    }
    return mask;
}

// Milliseconds per call of `call` on `stream`, timed with CUDA events around kCallsPerIteration calls.
template <typename F>
float time_calls_ms(cudaStream_t stream, cudaEvent_t start, cudaEvent_t stop, F&& call) {
    VQA_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < kCallsPerIteration; ++i) {
        call();
    }
    VQA_CUDA_CHECK(cudaEventRecord(stop, stream));
    VQA_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    VQA_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms / kCallsPerIteration;
}

// A stream and two events for one benchmark.
class Timer {
public:
    Timer() {
        VQA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        VQA_CUDA_CHECK(cudaEventCreate(&start_));
        VQA_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    ~Timer() {
        VQA_CUDA_CHECK_NOTHROW(cudaEventDestroy(stop_));
        VQA_CUDA_CHECK_NOTHROW(cudaEventDestroy(start_));
        VQA_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_));
    }
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    cudaStream_t stream() const { return stream_; }

    // Mean milliseconds per call over kBaselineIterations batches (for the baseline, outside the benchmark loop).
    template <typename F>
    double mean_ms(F&& call) {
        call();  // warm-up
        double ms = 0.0;
        for (int i = 0; i < kBaselineIterations; ++i) {
            ms += time_calls_ms(stream_, start_, stop_, call);
        }
        return ms / kBaselineIterations;
    }

    // Runs the benchmark loop on `call`; returns the mean milliseconds per call.
    template <typename F>
    double run(benchmark::State& state, F&& call) {
        call();  // warm-up
        double total = 0.0;
        for (auto _ : state) {
            const float ms = time_calls_ms(stream_, start_, stop_, call);
            total += ms;
            state.SetIterationTime(ms * 1e-3);
        }
        return total / static_cast<double>(state.iterations());
    }

private:
    cudaStream_t stream_ = nullptr;
    cudaEvent_t start_ = nullptr;
    cudaEvent_t stop_ = nullptr;
};

// `count` elements of T on the device. Floating-point arrays hold values uniform in [-1, 1) from a fixed seed:
// constant or zero inputs can run faster than real data (tensor-core power), so no benchmark times them. Other
// element types (masks, workspaces) start zeroed or as a copy of a host vector.
template <typename T>
class DeviceArray {
public:
    explicit DeviceArray(size_t count) : count_(count) {
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
            fill_uniform();
        } else {
            VQA_CUDA_CHECK(cudaMemset(data_, 0, bytes()));
        }
        VQA_CUDA_CHECK(cudaDeviceSynchronize());
    }
    explicit DeviceArray(const std::vector<T>& host) : count_(host.size()) {
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
        VQA_CUDA_CHECK(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice));
    }
    ~DeviceArray() { VQA_CUDA_CHECK_NOTHROW(cudaFree(data_)); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    T* get() const { return data_; }
    size_t bytes() const { return count_ * sizeof(T); }

private:
    // A tile of at most kTileElems random values, copied over the array (a repeating pattern is as good as fresh
    // values for timing, and keeps set-up short for the 20-million-element score buffers).
    void fill_uniform() {
        constexpr size_t kTileElems = size_t{1} << 20;
        static uint64_t seed = 1;  // every array gets other values
        uint64_t state = seed++;
        std::vector<T> tile(std::min(count_, kTileElems));
        for (T& value : tile) {
            const float unit = static_cast<float>(next_random(state) >> 7) * 0x1.0p-24f;  // 24 bits in [0, 1)
            value = static_cast<T>(2.0f * unit - 1.0f);
        }
        for (size_t offset = 0; offset < count_; offset += tile.size()) {
            const size_t elems = std::min(tile.size(), count_ - offset);
            VQA_CUDA_CHECK(cudaMemcpy(data_ + offset, tile.data(), elems * sizeof(T), cudaMemcpyHostToDevice));
        }
    }

    T* data_ = nullptr;
    size_t count_ = 0;
};

using cuda::CublasHandle;  // the baselines' cuBLAS calls

// Records µs per call, GB/s and its fraction of kCopyBytesPerSecond (bw_frac), TFLOP/s and its fraction of the
// element type's ceiling (flop_frac; only when flops > 0), the baseline's µs and vs_baseline = baseline / this (> 1:
// faster than the baseline). Shapes small enough to stay in the 60 MB L2 between calls can pass bw_frac = 1.
template <typename T>
void report(benchmark::State& state, double ms, double baseline_ms, double bytes, double flops) {
    const double seconds = ms * 1e-3;
    state.counters["us"] = ms * 1e3;
    state.counters["GB/s"] = bytes / seconds * 1e-9;
    state.counters["bw_frac"] = bytes / seconds / kCopyBytesPerSecond;
    if (flops > 0.0) {
        state.counters["TFLOP/s"] = flops / seconds * 1e-12;
        state.counters["flop_frac"] = flops / seconds / flop_ceiling<T>();
    }
    state.counters["baseline_us"] = baseline_ms * 1e3;
    state.counters["vs_baseline"] = baseline_ms / ms;
}

// Benchmark arguments (B, L) for the token-wise ops: B = 1, 32, 256 and L = 14 (question), 100 (image regions).
inline void token_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"B", "L"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const int batch : {1, 32, 256}) {
        for (const int seq_len : {14, 100}) {
            b->Args({batch, seq_len});
        }
    }
}

// Benchmark arguments (B, Lq, Lk) for attention: self-attention over text and image, and cross-attention both ways.
inline void attention_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"B", "Lq", "Lk"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const int batch : {1, 32, 256}) {
        for (const auto& lengths : {std::pair{14, 14}, std::pair{100, 100}, std::pair{100, 14}, std::pair{14, 100}}) {
            b->Args({batch, lengths.first, lengths.second});
        }
    }
}

// Registers `name`/fp16, `name`/bf16 and `name`/fp32 from the three instantiations of one benchmark template, each
// over the arguments that `shapes` (token_shapes or attention_shapes) sets.
using BenchmarkFunction = void (*)(benchmark::State&);
inline void register_element_types(const std::string& name,
                                   BenchmarkFunction fp16,
                                   BenchmarkFunction bf16,
                                   BenchmarkFunction fp32,
                                   void (*shapes)(benchmark::internal::Benchmark*)) {
    benchmark::RegisterBenchmark((name + "/fp16").c_str(), fp16)->Apply(shapes);
    benchmark::RegisterBenchmark((name + "/bf16").c_str(), bf16)->Apply(shapes);
    benchmark::RegisterBenchmark((name + "/fp32").c_str(), fp32)->Apply(shapes);
}

// main() of a benchmark program: one line and exit 0 without a device, unless only the names are asked for
// (--benchmark_list_tests), which needs none.
inline int run_benchmarks(const char* program, int argc, char** argv) {
    bool list_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        list_only = list_only || arg == "--benchmark_list_tests" || arg == "--benchmark_list_tests=true";
    }
    int devices = 0;
    const cudaError_t status = cudaGetDeviceCount(&devices);
    if (!list_only && (status != cudaSuccess || devices == 0)) {
        std::printf("%s: no CUDA device (%s), nothing to measure\n", program,
                    status != cudaSuccess ? cudaGetErrorString(status) : "cudaGetDeviceCount returned 0");
        return 0;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace vqa::bench
