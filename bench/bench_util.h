// What the kernel benchmarks share: CUDA-event timing of a batch of calls, a device array, and the main() that
// prints one line and exits 0 when there is no device.
#pragma once

#include <cstddef>
#include <cstdio>
#include <utility>

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"

namespace vqa::bench {

constexpr int kCallsPerIteration = 20;  // events around a single short call would mostly time the events
constexpr int kBaselineIterations = 50;

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

// `count` elements of T on the device, filled with a small constant bit pattern (finite in every type).
template <typename T>
class DeviceArray {
public:
    explicit DeviceArray(size_t count) : count_(count) {
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
        VQA_CUDA_CHECK(cudaMemset(data_, 0x1F, bytes()));
        VQA_CUDA_CHECK(cudaDeviceSynchronize());
    }
    ~DeviceArray() { VQA_CUDA_CHECK_NOTHROW(cudaFree(data_)); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    T* get() const { return data_; }
    size_t bytes() const { return count_ * sizeof(T); }

private:
    T* data_ = nullptr;
    size_t count_ = 0;
};

// Records µs per call, GB/s, TFLOP/s and the ratio to the baseline (> 1: faster than the baseline).
inline void report(benchmark::State& state, double ms, double baseline_ms, double bytes, double flops) {
    state.counters["us"] = ms * 1e3;
    state.counters["GB/s"] = bytes / (ms * 1e-3) * 1e-9;
    state.counters["TFLOP/s"] = flops / (ms * 1e-3) * 1e-12;
    state.counters["baseline_us"] = baseline_ms * 1e3;
    state.counters["vs_baseline"] = baseline_ms / ms;
}

// main() of a benchmark program: one line and exit 0 without a device.
inline int run_benchmarks(const char* program, int argc, char** argv) {
    int devices = 0;
    const cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0) {
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
