// Softmax over rows of attention scores with a boolean key padding mask (the reference for the CUDA masked
// softmax kernel), and the one-row function every other softmax in kernels/cpu uses.
//
// Mask convention: uint8, 1 = valid key, 0 = masked; a null mask means every key is valid. A masked key gets
// probability exactly 0 (the −inf fill). A row whose keys are all masked follows MaskedRow.
#pragma once

#include <cstdint>

namespace vqa::cpu {

// What softmax gives a row whose keys are all masked (config `fusion.masked_row`, docs/model-format.md §6.1).
enum class MaskedRow {
    kZero,     // every probability 0, so attention outputs 0 for that query (never NaN)
    kUniform,  // every probability 1/n over all n keys: openvqa's −1e9 fill. With that fill a partly masked row
               // gives masked keys exactly 0 in fp32, so both rules agree on every other row.
};

// probs[j·stride] = softmax_j(scale · scores[j·stride]) over the valid keys j < n. probs may alias scores.
// stride (elements between consecutive keys, ≥ 1) lets a column of a [n, G] matrix be one row. Statistics
// (row max, sum of exponentials) in float.
void masked_softmax_row(const float* scores,  // [n], elements `stride` apart
                        const uint8_t* mask,  // [n] contiguous, or null
                        float* probs,         // [n], elements `stride` apart
                        int64_t n,
                        int64_t stride,
                        float scale,
                        MaskedRow masked_row);

struct MaskedSoftmaxParams {
    int64_t rows = 0;           // R: rows of scores, e.g. B·H·Lq
    int64_t cols = 0;           // Lk: keys per row
    int64_t rows_per_mask = 1;  // rows sharing one mask row: H·Lq for scores [B, H, Lq, Lk] with a mask [B, Lk]
    float scale = 1.0f;         // applied to the scores before the softmax (1/sqrt(Dh) if not already applied)
    MaskedRow masked_row = MaskedRow::kZero;
};

// probs[r, :] = masked softmax of scale · scores[r, :] with mask row r / rows_per_mask.
// probs may alias scores (in place). rows must be a multiple of rows_per_mask.
void masked_softmax(const MaskedSoftmaxParams& params,
                    const float* scores,  // [R, Lk]
                    const uint8_t* mask,  // [R / rows_per_mask, Lk], or null
                    float* probs);        // [R, Lk]

}  // namespace vqa::cpu
