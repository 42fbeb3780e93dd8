// CPU reference for the CUDA masked softmax (kernels/masked_softmax.h): the same contract on float data, the key
// mask and the fully masked row rule of vqa::cpu::masked_softmax plus an optional float additive mask.
#pragma once

#include <cstdint>

#include "kernels/masked_softmax.h"

namespace vqa::cpu {

// probs[r, j] = softmax_j(scale · scores[r, j] + additive[(r / rows_per_additive) % A, j]) over the valid keys
// (key mask 1 and logit not -inf); a row without a valid key follows params.masked_row. probs may alias scores.
void scaled_masked_softmax(const SoftmaxParams& params,
                           const float* scores,      // [R, Lk]
                           const uint8_t* key_mask,  // [R / rows_per_mask, Lk], 1 = valid, or null
                           const float* additive,    // [A, Lk] or null
                           float* probs);            // [R, Lk]

}  // namespace vqa::cpu
