// Fused attention against the unfused path measured in the same run: S = scale · Q·Kᵀ (cublasGemmStridedBatchedEx
// over the B·H heads), masked_softmax on S in place, O = P·V (strided-batched GEMM again), with Q, K, V, O dense
// [B, H, L, Dh] and a [B, Lk] key mask on both sides. The fused kernel writes no attention maps. Reports µs per
// call, GB/s (Q, K, V, mask read, O written: the fused kernel's traffic), TFLOP/s (4·B·H·Lq·Lk·Dh) and
// vs_baseline (> 1: the fused kernel is faster). Exits 0 with one line when there is no device.
#include <cmath>
#include <cstdint>

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include "bench/bench_util.h"
#include "kernels/fused_attention.h"
#include "kernels/masked_softmax.h"

namespace {

using vqa::bench::DeviceArray;

constexpr int kHeads = 8;
constexpr int kHeadDim = 64;

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

// Args: B, Lq, Lk.
template <typename T>
void BM_attention(benchmark::State& state) {
    const int batch = static_cast<int>(state.range(0));
    const int q_len = static_cast<int>(state.range(1));
    const int kv_len = static_cast<int>(state.range(2));
    const int pairs = batch * kHeads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    DeviceArray<T> q(static_cast<size_t>(pairs) * q_len * kHeadDim);
    DeviceArray<T> k(static_cast<size_t>(pairs) * kv_len * kHeadDim);
    DeviceArray<T> v(static_cast<size_t>(pairs) * kv_len * kHeadDim);
    DeviceArray<T> o(static_cast<size_t>(pairs) * q_len * kHeadDim);
    DeviceArray<T> scores(static_cast<size_t>(pairs) * q_len * kv_len);  // the baseline's [B, H, Lq, Lk]
    DeviceArray<uint8_t> mask(static_cast<size_t>(batch) * kv_len);      // 0x1F everywhere: every key valid

    vqa::cpu::AttentionParams params;
    params.batch = batch;
    params.heads = kHeads;
    params.q_len = q_len;
    params.kv_len = kv_len;
    params.head_dim = kHeadDim;
    params.q = params.o = vqa::cpu::head_major_strides(kHeads, q_len, kHeadDim);
    params.k = params.v = vqa::cpu::head_major_strides(kHeads, kv_len, kHeadDim);
    params.scale = scale;
    vqa::SoftmaxParams softmax;
    softmax.rows = int64_t{pairs} * q_len;
    softmax.cols = kv_len;
    softmax.rows_per_mask = int64_t{kHeads} * q_len;

    vqa::bench::Timer timer;
    cublasHandle_t handle = nullptr;
    VQA_CUBLAS_CHECK(cublasCreate(&handle));
    VQA_CUBLAS_CHECK(cublasSetStream(handle, timer.stream()));
    const float zero = 0.0f;
    const float one = 1.0f;
    const cudaDataType_t type = cuda_type<T>();
    const auto baseline = [&] {
        // Per head, row-major S[Lq, Lk] = Q · Kᵀ is column-major Sᵀ = K · Qᵀ.
        VQA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            handle, CUBLAS_OP_T, CUBLAS_OP_N, kv_len, q_len, kHeadDim, &scale, k.get(), type, kHeadDim,
            int64_t{kv_len} * kHeadDim, q.get(), type, kHeadDim, int64_t{q_len} * kHeadDim, &zero, scores.get(), type,
            kv_len, int64_t{q_len} * kv_len, pairs, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        vqa::cuda::masked_softmax(softmax, scores.get(), mask.get(), nullptr, scores.get(), timer.stream());
        // Row-major O[Lq, Dh] = P · V is column-major Oᵀ = Vᵀ · Pᵀ.
        VQA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            handle, CUBLAS_OP_N, CUBLAS_OP_N, kHeadDim, q_len, kv_len, &one, v.get(), type, kHeadDim,
            int64_t{kv_len} * kHeadDim, scores.get(), type, kv_len, int64_t{q_len} * kv_len, &zero, o.get(), type,
            kHeadDim, int64_t{q_len} * kHeadDim, pairs, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    };
    const auto fused = [&] {
        vqa::cuda::fused_attention(params, q.get(), k.get(), v.get(), mask.get(), o.get(), nullptr, timer.stream());
    };
    const double baseline_ms = timer.mean_ms(baseline);
    const double fused_ms = timer.run(state, fused);
    VQA_CUBLAS_CHECK(cublasDestroy(handle));

    const double bytes = static_cast<double>(q.bytes() + k.bytes() + v.bytes() + o.bytes() + mask.bytes());
    const double flops = 4.0 * pairs * q_len * static_cast<double>(kv_len) * kHeadDim;
    vqa::bench::report(state, fused_ms, baseline_ms, bytes, flops);
}

void shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"B", "Lq", "Lk"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const int batch : {1, 32, 256}) {
        for (const auto& lengths : {std::pair{14, 14}, std::pair{100, 100}, std::pair{100, 14}, std::pair{14, 100}}) {
            b->Args({batch, lengths.first, lengths.second});
        }
    }
}

BENCHMARK_TEMPLATE(BM_attention, __half)->Name("attention/fp16")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_attention, float)->Name("attention/fp32")->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
    return vqa::bench::run_benchmarks("attention_bench", argc, argv);
}
