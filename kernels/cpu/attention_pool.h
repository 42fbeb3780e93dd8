// Attention pooling (openvqa's AttFlat, docs/model-format.md §7): a masked softmax over positions per glimpse,
// then a weighted sum of the tokens per glimpse. The logits a = fc2(ReLU(fc1(x))) come from linear().
#pragma once

#include <cstdint>

#include "kernels/cpu/masked_softmax.h"

namespace vqa::cpu {

// weights[b, :, g] = masked softmax over l of the logits (in place: they are the pooling's attention map);
// z[b, g·d + j] = Σ_l weights[b, l, g] · x[b, l, j] (glimpses concatenated, glimpse-major).
// Mask convention and the fully masked row rule: kernels/cpu/masked_softmax.h.
// Packed samples, when offsets is given: sample b's positions are the rows offsets[b] .. offsets[b+1]-1 of x,
// weights ([total rows, G]) and mask ([total rows]); each sample has 1..L of them (L = the largest count).
void attention_pool(const float* x,       // [B, L, d]
                    float* weights,       // [B, L, G]: in, the logits; out, the softmax weights
                    const uint8_t* mask,  // [B, L], 1 = valid position, or null
                    float* z,             // [B, G·d]
                    int64_t batch,        // B
                    int64_t seq_len,      // L
                    int64_t dim,          // d
                    int64_t glimpses,     // G
                    MaskedRow masked_row,
                    const int32_t* offsets = nullptr);  // [B+1], offsets[0] = 0, or null (dense)

}  // namespace vqa::cpu
