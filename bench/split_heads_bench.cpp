// split_heads throughput on the GPU: µs per call, GB/s (bytes read + written) and the ratio to a device-to-device
// cudaMemcpyAsync of the same bytes, measured in the same run. Exits 0 with one line when there is no device.
#include <cstdio>

#include <benchmark/benchmark.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"
#include "kernels/split_heads.h"

namespace {

constexpr int kHeads = 8;
constexpr int kHeadDim = 64;
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

// Args: B, L.
template <typename T>
void BM_split_heads(benchmark::State& state) {
    const vqa::HeadsShape shape{static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), kHeads,
                                         kHeadDim, 0};
    const size_t bytes = static_cast<size_t>(shape.numel()) * sizeof(T);
    T* x = nullptr;
    T* y = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
    VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&x), bytes));
    VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&y), bytes));
    VQA_CUDA_CHECK(cudaMemset(x, 0x3C, bytes));
    VQA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    VQA_CUDA_CHECK(cudaEventCreate(&start));
    VQA_CUDA_CHECK(cudaEventCreate(&stop));
    VQA_CUDA_CHECK(cudaDeviceSynchronize());  // the memset ran on the legacy stream

    const auto copy = [&] { VQA_CUDA_CHECK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, stream)); };
    const auto split = [&] { vqa::cuda::split_heads(x, y, shape, stream); };
    copy();
    split();  // warm-up
    double copy_ms = 0.0;
    for (int i = 0; i < kBaselineIterations; ++i) {
        copy_ms += time_calls_ms(stream, start, stop, copy);
    }
    copy_ms /= kBaselineIterations;

    double split_ms = 0.0;
    for (auto _ : state) {
        const float ms = time_calls_ms(stream, start, stop, split);
        split_ms += ms;
        state.SetIterationTime(ms * 1e-3);
    }
    split_ms /= static_cast<double>(state.iterations());

    const double moved = 2.0 * static_cast<double>(bytes);  // read + written
    state.counters["GB/s"] = moved / (split_ms * 1e-3) * 1e-9;
    state.counters["memcpy_GB/s"] = moved / (copy_ms * 1e-3) * 1e-9;
    state.counters["vs_memcpy"] = copy_ms / split_ms;  // 1.0: as fast as a plain copy of the same bytes

    VQA_CUDA_CHECK_NOTHROW(cudaEventDestroy(stop));
    VQA_CUDA_CHECK_NOTHROW(cudaEventDestroy(start));
    VQA_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream));
    VQA_CUDA_CHECK_NOTHROW(cudaFree(y));
    VQA_CUDA_CHECK_NOTHROW(cudaFree(x));
}

void shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"B", "L"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const int batch : {1, 32, 256}) {
        for (const int seq_len : {14, 100}) {
            b->Args({batch, seq_len});
        }
    }
}

BENCHMARK_TEMPLATE(BM_split_heads, __half)->Name("split_heads/fp16")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_split_heads, float)->Name("split_heads/fp32")->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
    int devices = 0;
    const cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0) {
        std::printf("split_heads_bench: no CUDA device (%s), nothing to measure\n",
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
