// Scaled masked softmax over rows of attention scores (CUDA entry points; the CPU reference with the same contract
// is kernels/cpu/scaled_masked_softmax.h).
//
//   probs[r, j] = softmax_j(scale · scores[r, j] + additive[a(r), j]) over the keys j with mask[r / rows_per_mask, j]
//
// Mask conventions (the same as vqa::cpu::masked_softmax, kernels/cpu/masked_softmax.h):
//  - key mask: uint8 [R / rows_per_mask, Lk], 1 = valid key, 0 = masked; null means every key is valid;
//  - additive mask: float [A, Lk] added after the scale, or null. It is float whatever the score type because
//    its usual fill (-1e9) does not exist in fp16. A key whose additive value is -inf counts as masked, so a row
//    whose keys are all -inf follows the fully masked row rule instead of becoming NaN;
//  - a masked key gets probability exactly 0; a row with no valid key follows MaskedRow (kZero: all zeros,
//    kUniform: 1 / Lk everywhere), never NaN.
// Statistics (row max, sum of exponentials) are float for every element type.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cpu/masked_softmax.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

struct SoftmaxParams {
    int64_t rows = 0;               // R: rows of scores, e.g. B·H·Lq
    int64_t cols = 0;               // Lk: keys per row
    int64_t rows_per_mask = 1;      // key mask row of score row r: r / rows_per_mask (H·Lq: [B, Lk])
    int64_t additive_rows = 0;      // A: rows of the additive mask (0 when there is none)
    int64_t rows_per_additive = 1;  // additive row of score row r: (r / rows_per_additive) % A
    float scale = 1.0f;             // applied to the scores, before the additive mask
    cpu::MaskedRow masked_row = cpu::MaskedRow::kZero;  // what a row with no valid key gets
};

// Checks a softmax's arguments (shared by the CUDA entries and the CPU reference); `op` names the caller in the
// message. Throws vqa::Error(kInvalidArgument).
inline void check_softmax_args(
    const SoftmaxParams& p, const void* scores, const void* probs, const float* additive, const char* op) {
    VQA_CHECK(p.rows >= 0 && p.cols >= 0, kInvalidArgument, op, ": expected non-negative sizes, got rows=", p.rows,
              " cols=", p.cols);
    VQA_CHECK(p.rows_per_mask >= 1 && p.rows % p.rows_per_mask == 0, kInvalidArgument, op, ": rows (", p.rows,
              ") must be a multiple of rows_per_mask (", p.rows_per_mask, "), which must be >= 1");
    VQA_CHECK(p.rows_per_additive >= 1 && p.additive_rows >= 0, kInvalidArgument, op,
              ": expected rows_per_additive >= 1 and additive_rows >= 0, got ", p.rows_per_additive, " and ",
              p.additive_rows);
    VQA_CHECK((additive == nullptr) == (p.additive_rows == 0), kInvalidArgument, op,
              ": give an additive mask pointer exactly when additive_rows > 0 (additive_rows=", p.additive_rows,
              ", additive ", additive == nullptr ? "null" : "non-null", ")");
    if (p.rows == 0 || p.cols == 0) {
        return;
    }
    VQA_CHECK(scores != nullptr && probs != nullptr, kInvalidArgument, op,
              ": scores and probs must not be null for a non-empty shape");
}

#if VQA_WITH_CUDA
namespace cuda {

// scores: [R, Lk] -> probs: [R, Lk]; probs may alias scores (in place). key_mask: [R / rows_per_mask, Lk] or null;
// additive: [A, Lk] or null. One warp per row up to Lk = 1024, one block per row beyond. Asynchronous on
// `stream`; no allocation. T is float, __half or __nv_bfloat16 (instantiated in masked_softmax.cu), deduced from
// scores alone: std::add_pointer_t<T> keeps probs out of deduction, so it may be a plain nullptr.
template <typename T>
void masked_softmax(const SoftmaxParams& params,
                    const T* scores,
                    const uint8_t* key_mask,
                    const float* additive,
                    std::add_pointer_t<T> probs,
                    cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa
