// Answer scoring on the GPU: one block per row, the row held in registers (score j in thread j % kThreads, slot
// j / kThreads, so every load and store of a warp is one contiguous run).
//
//  1. Activation in float, with the reference's operations: softmax is fmax over the row (NaN ignored, as
//     std::fmax does), e = exp(x − max), then e · (1 / Σe) with block-wide reductions; sigmoid is
//     1 / (1 + exp(−x)). The full score row is written here when asked for.
//  2. Top-k by k arg-max rounds. Each thread keeps the best of its own untaken scores; a round reduces those over
//     the warp with shuffles and over the kWarps warps through shared memory, the thread that owns the winner
//     marks it taken (one bit per slot) and recomputes its own best. The order is cpu::topk's, a strict total
//     order on (value, id), so the winner does not depend on the reduction's shape. The per-warp candidates
//     alternate between two shared buffers, which leaves one barrier per round: a warp can only overwrite a
//     buffer two rounds later, after every warp has passed the barrier that follows its last read.
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/topk.h"
#include "kernels/trace.h"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kMaxItems = static_cast<int>(kAnswerTopkMaxScores / kThreads);  // scores per thread
static_assert(kMaxItems * kThreads == kAnswerTopkMaxScores, "the limit is a whole number of slots");
static_assert(kMaxItems <= 32, "a thread's taken flags are the bits of one uint32");

// A score and its answer id; id < 0 is "no candidate", which ranks below everything, NaN included.
struct Candidate {
    float value;
    int id;
};

// cpu::topk's order: larger value first, then lower id; NaN after every number, NaNs by lower id.
__device__ __forceinline__ bool ranks_before(const Candidate& a, const Candidate& b) {
    if (a.id < 0 || b.id < 0) {
        return b.id < 0 && a.id >= 0;
    }
    const bool a_nan = isnan(a.value);
    const bool b_nan = isnan(b.value);
    if (a_nan || b_nan) {
        return !a_nan || (b_nan && a.id < b.id);
    }
    return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// The best untaken score among this thread's slots.
template <int kItems>
__device__ __forceinline__ Candidate thread_best(const float (&score)[kItems], uint32_t taken, int num_scores) {
    Candidate best{0.0f, -1};
#pragma unroll
    for (int t = 0; t < kItems; ++t) {
        const int j = static_cast<int>(threadIdx.x) + t * kThreads;
        const Candidate c{score[t], j};
        if (j < num_scores && ((taken >> t) & 1u) == 0 && ranks_before(c, best)) {
            best = c;
        }
    }
    return best;
}

template <typename T, int kItems>
__global__ void __launch_bounds__(kThreads) answer_topk_kernel(AnswerTopkParams p,
                                                               const T* logits,  // [B, A] (may alias scores)
                                                               int32_t* ids,     // [B, k]
                                                               float* values,    // [B, k]
                                                               float* scores) {  // [B, A] or null
    __shared__ float scratch[kWarps];
    __shared__ Candidate warp_best[2][kWarps];
    const int num_scores = static_cast<int>(p.num_scores);
    const int64_t row = blockIdx.x;
    const T* in = logits + row * num_scores;

    // Every thread reads its scores before any block-wide barrier and writes only those: scores may alias logits.
    float score[kItems];
#pragma unroll
    for (int t = 0; t < kItems; ++t) {
        const int j = static_cast<int>(threadIdx.x) + t * kThreads;
        score[t] = j < num_scores ? to_float(in[j]) : 0.0f;
    }
    if (p.activation == ScoreActivation::kSigmoid) {
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            score[t] = __fdiv_rn(1.0f, 1.0f + expf(-score[t]));
        }
    } else if (p.activation == ScoreActivation::kSoftmax) {
        float row_max = -INFINITY;
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            if (static_cast<int>(threadIdx.x) + t * kThreads < num_scores) {
                row_max = fmaxf(row_max, score[t]);
            }
        }
        row_max = block_reduce<kWarps>(row_max, scratch, MaxOp{});
        float sum = 0.0f;
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            if (static_cast<int>(threadIdx.x) + t * kThreads < num_scores) {
                score[t] = expf(score[t] - row_max);
                sum += score[t];
            }
        }
        const float inv_sum = __fdiv_rn(1.0f, block_reduce<kWarps>(sum, scratch, SumOp{}));
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            score[t] *= inv_sum;
        }
    }
    if (scores != nullptr) {
        float* out = scores + row * num_scores;
#pragma unroll
        for (int t = 0; t < kItems; ++t) {
            const int j = static_cast<int>(threadIdx.x) + t * kThreads;
            if (j < num_scores) {
                out[j] = score[t];
            }
        }
    }

    const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    const int k = static_cast<int>(p.k);
    uint32_t taken = 0;
    Candidate mine = thread_best(score, taken, num_scores);
    for (int rank = 0; rank < k; ++rank) {
        Candidate best = mine;
        for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
            const Candidate other{__shfl_xor_sync(kFullMask, best.value, offset),
                                  __shfl_xor_sync(kFullMask, best.id, offset)};
            if (ranks_before(other, best)) {
                best = other;
            }
        }
        Candidate* round = warp_best[rank & 1];
        if (lane == 0) {
            round[warp] = best;
        }
        __syncthreads();
        best = round[0];
        for (int w = 1; w < kWarps; ++w) {
            if (ranks_before(round[w], best)) {
                best = round[w];
            }
        }
        // k <= A, so an untaken score is left in every round and best.id >= 0
        if (threadIdx.x == 0) {
            ids[row * k + rank] = best.id;
            values[row * k + rank] = best.value;
        }
        if (best.id % kThreads == static_cast<int>(threadIdx.x)) {
            taken |= 1u << (best.id / kThreads);
            mine = thread_best(score, taken, num_scores);
        }
    }
}

template <typename T, int kItems>
void launch_answer_topk(
    const AnswerTopkParams& p, const T* logits, int32_t* ids, float* values, float* scores, cudaStream_t stream) {
    answer_topk_kernel<T, kItems>
        <<<static_cast<unsigned>(p.batch), kThreads, 0, stream>>>(p, logits, ids, values, scores);
}

}  // namespace

template <typename T>
void answer_topk(
    const AnswerTopkParams& params, const T* logits, int32_t* ids, float* values, float* scores, cudaStream_t stream) {
    const TraceRange range("answer_topk", stream);
    check_answer_topk_args(params, logits, ids, values, "answer_topk");
    if (params.batch == 0) {
        return;
    }
    const int64_t per_thread = (params.num_scores + kThreads - 1) / kThreads;
    if (per_thread <= 1) {
        launch_answer_topk<T, 1>(params, logits, ids, values, scores, stream);
    } else if (per_thread <= 2) {
        launch_answer_topk<T, 2>(params, logits, ids, values, scores, stream);
    } else if (per_thread <= 4) {
        launch_answer_topk<T, 4>(params, logits, ids, values, scores, stream);
    } else if (per_thread <= 8) {
        launch_answer_topk<T, 8>(params, logits, ids, values, scores, stream);
    } else if (per_thread <= 16) {
        launch_answer_topk<T, 16>(params, logits, ids, values, scores, stream);
    } else {
        launch_answer_topk<T, kMaxItems>(params, logits, ids, values, scores, stream);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template void answer_topk<float>(const AnswerTopkParams&, const float*, int32_t*, float*, float*, cudaStream_t);
template void answer_topk<__half>(const AnswerTopkParams&, const __half*, int32_t*, float*, float*, cudaStream_t);
template void answer_topk<__nv_bfloat16>(
    const AnswerTopkParams&, const __nv_bfloat16*, int32_t*, float*, float*, cudaStream_t);

}  // namespace vqa::cuda
