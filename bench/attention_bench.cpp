// Fused attention and masked softmax against baselines measured in the same run, for B = 1, 32, 256, H = 8, Dh = 64
// and (Lq, Lk) = (14, 14), (100, 100), (100, 14), (14, 100), in fp16, bf16 and fp32. Q, K, V and O are dense
// [B, H, L, Dh]; the [B, Lk] key padding mask follows the policy in bench_util.h (random lengths, the same as
// bench/sdpa_bench.py draws).
//  - attention/<type>: fused_attention (no attention maps) against the unfused path S = scale · Q·Kᵀ
//    (cublasGemmStridedBatchedEx over the B·H heads), masked_softmax on S in place, O = P·V (strided-batched GEMM).
//    GB/s counts Q, K, V and the mask read and O written (the fused kernel's traffic); TFLOP/s counts 4·B·H·Lq·Lk·Dh.
//  - masked_softmax/<type>: masked_softmax on the [B·H·Lq, Lk] scores of the unfused path, out of place, against a
//    device-to-device copy of the same scores (the floor of a one-pass op). GB/s counts scores and mask read and
//    probabilities written; unfused_us is the whole unfused path on the same shape and of_unfused the share of it
//    that one softmax call takes.
// vs_baseline > 1: faster than the baseline. Exits 0 with one line when there is no device.
#include <cmath>
#include <cstdint>

#include <cublas_v2.h>

#include "bench/bench_util.h"
#include "kernels/fused_attention.h"
#include "kernels/masked_softmax.h"

namespace {

using vqa::bench::DeviceArray;
using vqa::bench::kHeadDim;
using vqa::bench::kHeads;

// One (B, Lq, Lk) problem on the device and the calls both benchmarks time.
template <typename T>
class AttentionProblem {
public:
    AttentionProblem(const benchmark::State& state, cudaStream_t stream)
        : batch_(static_cast<int>(state.range(0))),
          q_len_(static_cast<int>(state.range(1))),
          kv_len_(static_cast<int>(state.range(2))),
          pairs_(batch_ * kHeads),
          q_(static_cast<size_t>(pairs_) * q_len_ * kHeadDim),
          k_(static_cast<size_t>(pairs_) * kv_len_ * kHeadDim),
          v_(static_cast<size_t>(pairs_) * kv_len_ * kHeadDim),
          o_(static_cast<size_t>(pairs_) * q_len_ * kHeadDim),
          scores_(static_cast<size_t>(pairs_) * q_len_ * kv_len_),
          mask_(vqa::bench::key_padding_mask(batch_, kv_len_)),
          cublas_(stream),
          stream_(stream) {
        params_.batch = batch_;
        params_.heads = kHeads;
        params_.q_len = q_len_;
        params_.kv_len = kv_len_;
        params_.head_dim = kHeadDim;
        params_.q = params_.o = vqa::cpu::head_major_strides(kHeads, q_len_, kHeadDim);
        params_.k = params_.v = vqa::cpu::head_major_strides(kHeads, kv_len_, kHeadDim);
        params_.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
        softmax_.rows = int64_t{pairs_} * q_len_;
        softmax_.cols = kv_len_;
        softmax_.rows_per_mask = int64_t{kHeads} * q_len_;
    }

    void fused() const {
        vqa::cuda::fused_attention(params_, q_.get(), k_.get(), v_.get(), mask_.get(), o_.get(), nullptr, stream_);
    }

    // probs: [B·H·Lq, Lk]; may be the score buffer itself.
    void softmax(T* probs) const {
        vqa::cuda::masked_softmax(softmax_, scores_.get(), mask_.get(), nullptr, probs, stream_);
    }

    void unfused() const {
        const float zero = 0.0f;
        const float one = 1.0f;
        const cudaDataType_t type = vqa::bench::cuda_type<T>();
        // Per head, row-major S[Lq, Lk] = Q · Kᵀ is column-major Sᵀ = K · Qᵀ.
        VQA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, kv_len_, q_len_, kHeadDim, &params_.scale, k_.get(), type,
            kHeadDim, int64_t{kv_len_} * kHeadDim, q_.get(), type, kHeadDim, int64_t{q_len_} * kHeadDim, &zero,
            scores_.get(), type, kv_len_, int64_t{q_len_} * kv_len_, pairs_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        softmax(scores_.get());
        // Row-major O[Lq, Dh] = P · V is column-major Oᵀ = Vᵀ · Pᵀ.
        VQA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, kHeadDim, q_len_, kv_len_, &one, v_.get(), type, kHeadDim,
            int64_t{kv_len_} * kHeadDim, scores_.get(), type, kv_len_, int64_t{q_len_} * kv_len_, &zero, o_.get(), type,
            kHeadDim, int64_t{q_len_} * kHeadDim, pairs_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    const DeviceArray<T>& scores() const { return scores_; }
    double fused_bytes() const {
        return static_cast<double>(q_.bytes() + k_.bytes() + v_.bytes() + o_.bytes() + mask_.bytes());
    }
    double softmax_bytes() const { return 2.0 * static_cast<double>(scores_.bytes()) + mask_.bytes(); }
    double flops() const { return 4.0 * pairs_ * q_len_ * static_cast<double>(kv_len_) * kHeadDim; }

private:
    int batch_;
    int q_len_;
    int kv_len_;
    int pairs_;                  // B·H
    DeviceArray<T> q_;           // [B, H, Lq, Dh]
    DeviceArray<T> k_;           // [B, H, Lk, Dh]
    DeviceArray<T> v_;           // [B, H, Lk, Dh]
    DeviceArray<T> o_;           // [B, H, Lq, Dh]
    DeviceArray<T> scores_;      // [B, H, Lq, Lk]: the unfused path's S, then P
    DeviceArray<uint8_t> mask_;  // [B, Lk], 1 = valid key
    vqa::bench::CublasHandle cublas_;
    cudaStream_t stream_;
    vqa::cpu::AttentionParams params_;
    vqa::SoftmaxParams softmax_;
};

// Args: B, Lq, Lk.
template <typename T>
void BM_attention(benchmark::State& state) {
    vqa::bench::Timer timer;
    const AttentionProblem<T> problem(state, timer.stream());
    const double baseline_ms = timer.mean_ms([&] { problem.unfused(); });
    const double fused_ms = timer.run(state, [&] { problem.fused(); });
    vqa::bench::report<T>(state, fused_ms, baseline_ms, problem.fused_bytes(), problem.flops());
}

// Args: B, Lq, Lk.
template <typename T>
void BM_masked_softmax(benchmark::State& state) {
    vqa::bench::Timer timer;
    const AttentionProblem<T> problem(state, timer.stream());
    const DeviceArray<T> probs(problem.scores().bytes() / sizeof(T));
    const auto copy = [&] {
        VQA_CUDA_CHECK(cudaMemcpyAsync(probs.get(), problem.scores().get(), problem.scores().bytes(),
                                       cudaMemcpyDeviceToDevice, timer.stream()));
    };
    const double copy_ms = timer.mean_ms(copy);
    const double unfused_ms = timer.mean_ms([&] { problem.unfused(); });
    const double softmax_ms = timer.run(state, [&] { problem.softmax(probs.get()); });
    vqa::bench::report<T>(state, softmax_ms, copy_ms, problem.softmax_bytes(), 0.0);
    state.counters["unfused_us"] = unfused_ms * 1e3;
    state.counters["of_unfused"] = softmax_ms / unfused_ms;
}

}  // namespace

int main(int argc, char** argv) {
    vqa::bench::register_element_types("attention", BM_attention<__half>, BM_attention<__nv_bfloat16>,
                                       BM_attention<float>, vqa::bench::attention_shapes);
    vqa::bench::register_element_types("masked_softmax", BM_masked_softmax<__half>, BM_masked_softmax<__nv_bfloat16>,
                                       BM_masked_softmax<float>, vqa::bench::attention_shapes);
    return vqa::bench::run_benchmarks("attention_bench", argc, argv);
}
