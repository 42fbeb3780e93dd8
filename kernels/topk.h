// Answer scoring (CUDA entry point; the CPU reference is the pair vqa::cpu::softmax_rows or vqa::cpu::sigmoid,
// then vqa::cpu::topk, in kernels/cpu/topk.h; docs/model-format.md §8):
//
//   scores[b, :] = activation(logits[b, :])            none, softmax (float statistics) or sigmoid
//   ids[b, :], values[b, :] = the k best scores of row b, sorted descending, ties by lower id, NaN below every
//                             number (NaNs among themselves by lower id), exactly cpu::topk's order
//
// Logits are T (float, half or bf16); scores, values and the optional full score row are float. A softmax over a
// row that holds a NaN (or +inf) gives NaN everywhere, as the reference's does.
// Limits: A <= kAnswerTopkMaxScores (the row lives in registers, 32 scores per thread), 1 <= k <= A. Each of the
// k ranks is one block-wide arg-max round, so the cost grows linearly with k: meant for k up to a few dozen.
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/check.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

constexpr int64_t kAnswerTopkMaxScores = 8192;

enum class ScoreActivation {
    kNone,     // the logits themselves
    kSoftmax,  // softmax over the row
    kSigmoid,  // 1 / (1 + exp(−x)) per score
};

struct AnswerTopkParams {
    int64_t batch = 0;       // B: rows
    int64_t num_scores = 0;  // A: answers per row
    int64_t k = 1;           // answers kept per row, 1 <= k <= A
    ScoreActivation activation = ScoreActivation::kSoftmax;
};

// Checks answer_topk's arguments; `op` names the caller in the message. Throws vqa::Error(kInvalidArgument).
inline void check_answer_topk_args(
    const AnswerTopkParams& p, const void* logits, const int32_t* ids, const float* values, const char* op) {
    VQA_CHECK(p.batch >= 0 && p.num_scores >= 1 && p.k >= 1 && p.k <= p.num_scores, kInvalidArgument, op,
              ": expected B >= 0 and 1 <= k <= A, got B=", p.batch, " A=", p.num_scores, " k=", p.k);
    VQA_CHECK(p.num_scores <= kAnswerTopkMaxScores, kInvalidArgument, op, ": A = ", p.num_scores, " exceeds ",
              kAnswerTopkMaxScores, " scores per row");
    VQA_CHECK(p.activation == ScoreActivation::kNone || p.activation == ScoreActivation::kSoftmax ||
                  p.activation == ScoreActivation::kSigmoid,
              kInvalidArgument, op, ": unknown activation ", static_cast<int>(p.activation));
    VQA_CHECK(p.batch <= std::numeric_limits<int>::max(), kInvalidArgument, op, ": B = ", p.batch,
              " exceeds one launch (2^31-1 blocks); split the batch");
    if (p.batch == 0) {
        return;
    }
    VQA_CHECK(logits != nullptr && ids != nullptr && values != nullptr, kInvalidArgument, op,
              ": logits, ids and values must not be null for a non-empty batch");
}

#if VQA_WITH_CUDA
namespace cuda {

// scores receives the activated rows, or is null when only the top k are wanted; it may alias logits when T is
// float. One block per row. Asynchronous on `stream`; no allocation. Instantiated for T = float, __half and
// __nv_bfloat16.
template <typename T>
void answer_topk(const AnswerTopkParams& params,
                 const T* logits,  // [B, A]
                 int32_t* ids,     // [B, k]
                 float* values,    // [B, k]
                 float* scores,    // [B, A] or null
                 cudaStream_t stream);

extern template void answer_topk<float>(const AnswerTopkParams&, const float*, int32_t*, float*, float*, cudaStream_t);
extern template void answer_topk<__half>(
    const AnswerTopkParams&, const __half*, int32_t*, float*, float*, cudaStream_t);
extern template void answer_topk<__nv_bfloat16>(
    const AnswerTopkParams&, const __nv_bfloat16*, int32_t*, float*, float*, cudaStream_t);

}  // namespace cuda
#endif

}  // namespace vqa
