#include "kernels/cpu/scaled_masked_softmax.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/masked_softmax.h"

namespace vqa::cpu {

void scaled_masked_softmax(
    const SoftmaxParams& params, const float* scores, const uint8_t* key_mask, const float* additive, float* probs) {
    check_softmax_args(params, scores, probs, additive, "cpu::scaled_masked_softmax");
    const int64_t cols = params.cols;
    if (params.rows == 0 || cols == 0) {
        return;
    }
    // Each row becomes a plain masked softmax (scale 1) of its logits, with an additive -inf folded into the mask
    // so that a row of -inf keys follows the fully masked row rule like a row of masked keys.
    std::vector<float> logits(cols);
    std::vector<uint8_t> valid(cols);
    for (int64_t r = 0; r < params.rows; ++r) {
        const uint8_t* mask_row = key_mask != nullptr ? key_mask + (r / params.rows_per_mask) * cols : nullptr;
        const float* add_row =
            additive != nullptr ? additive + ((r / params.rows_per_additive) % params.additive_rows) * cols : nullptr;
        for (int64_t j = 0; j < cols; ++j) {
            logits[j] = params.scale * scores[r * cols + j] + (add_row != nullptr ? add_row[j] : 0.0f);
            valid[j] = (mask_row == nullptr || mask_row[j] != 0) && logits[j] != -INFINITY ? 1 : 0;
        }
        masked_softmax_row(logits.data(), valid.data(), probs + r * cols, cols, 1, 1.0f, params.masked_row);
    }
}

}  // namespace vqa::cpu
