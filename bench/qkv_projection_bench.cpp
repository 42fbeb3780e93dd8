// Fused QKV projection against the unfused path measured in the same run: one cublasGemmEx (y = x · W_qkvᵀ into a
// [B·L, 3d] buffer, float accumulation) followed by three split_heads into [B, H, L, Dh]. The baseline adds no
// bias and no Q scale, so it is a lower bound on what the unfused path costs. Reports µs per call, GB/s (x, W,
// bias read; Q, K, V written), TFLOP/s (2·M·N·K) and vs_baseline (> 1: the fused kernel is faster).
// Exits 0 with one line when there is no device.
#include <cmath>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bench/bench_util.h"
#include "kernels/qkv_projection.h"
#include "kernels/split_heads.h"

namespace {

using vqa::bench::DeviceArray;

constexpr int kHeads = 8;
constexpr int kHeadDim = 64;
constexpr int kModel = kHeads * kHeadDim;  // d
constexpr int kGroups = 3;

template <typename T>
cudaDataType_t cuda_type();
template <>
cudaDataType_t cuda_type<float>() {
    return CUDA_R_32F;
}
template <>
cudaDataType_t cuda_type<__half>() {
    return CUDA_R_16F;
}
template <>
cudaDataType_t cuda_type<__nv_bfloat16>() {
    return CUDA_R_16BF;
}

// Args: B, L.
template <typename T>
void BM_qkv_projection(benchmark::State& state) {
    const int batch = static_cast<int>(state.range(0));
    const int seq_len = static_cast<int>(state.range(1));
    const vqa::HeadProjectionParams params =
        vqa::qkv_projection_params(batch, seq_len, kModel, kHeads, 1.0f / std::sqrt(static_cast<float>(kHeadDim)));
    const int rows = static_cast<int>(params.rows());
    const int cols = static_cast<int>(params.cols());
    const size_t head_elems = static_cast<size_t>(rows) * kModel;
    DeviceArray<T> x(head_elems);
    DeviceArray<T> w(static_cast<size_t>(cols) * kModel);
    DeviceArray<T> bias(cols);
    DeviceArray<T> y(static_cast<size_t>(rows) * cols);  // the baseline's [B·L, 3d] GEMM output
    DeviceArray<T> out(kGroups * head_elems);
    vqa::HeadOutputs<T> outputs;
    for (int g = 0; g < kGroups; ++g) {
        outputs.group[g] = out.get() + g * head_elems;
    }

    vqa::bench::Timer timer;
    cublasHandle_t handle = nullptr;
    VQA_CUBLAS_CHECK(cublasCreate(&handle));
    VQA_CUBLAS_CHECK(cublasSetStream(handle, timer.stream()));
    const float one = 1.0f;
    const float zero = 0.0f;
    const vqa::HeadsShape slice{batch, seq_len, kHeads, kHeadDim, cols};  // a third of each y row
    const auto baseline = [&] {
        // Row-major y[M, N] = x[M, K] · W[N, K]ᵀ is column-major yᵀ = W · xᵀ.
        VQA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, kModel, &one, w.get(),
                                      cuda_type<T>(), kModel, x.get(), cuda_type<T>(), kModel, &zero, y.get(),
                                      cuda_type<T>(), cols, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        for (int g = 0; g < kGroups; ++g) {
            vqa::cuda::split_heads(y.get() + g * kModel, outputs.group[g], slice, timer.stream());
        }
    };
    const auto fused = [&] {
        vqa::cuda::fused_qkv_projection(params, x.get(), w.get(), bias.get(), outputs, timer.stream());
    };
    const double baseline_ms = timer.mean_ms(baseline);
    const double fused_ms = timer.run(state, fused);
    VQA_CUBLAS_CHECK(cublasDestroy(handle));

    const double bytes = static_cast<double>(x.bytes() + w.bytes() + bias.bytes() + out.bytes());
    const double flops = 2.0 * rows * cols * static_cast<double>(kModel);
    vqa::bench::report(state, fused_ms, baseline_ms, bytes, flops);
}

void shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"B", "L"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const int batch : {1, 32, 256}) {
        for (const int seq_len : {14, 100}) {
            b->Args({batch, seq_len});
        }
    }
}

BENCHMARK_TEMPLATE(BM_qkv_projection, __half)->Name("qkv_projection/fp16")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_qkv_projection, __nv_bfloat16)->Name("qkv_projection/bf16")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_qkv_projection, float)->Name("qkv_projection/fp32")->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
    return vqa::bench::run_benchmarks("qkv_projection_bench", argc, argv);
}
