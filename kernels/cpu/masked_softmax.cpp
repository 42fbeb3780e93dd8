#include "kernels/cpu/masked_softmax.h"

#include <cmath>
#include <limits>

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many elements a softmax pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 14;

}  // namespace

void masked_softmax_row(const float* scores,
                        const uint8_t* mask,
                        float* probs,
                        int64_t n,
                        int64_t stride,
                        float scale,
                        MaskedRow masked_row) {
    float row_max = -std::numeric_limits<float>::infinity();
    bool any_valid = false;
    for (int64_t j = 0; j < n; ++j) {
        if (mask == nullptr || mask[j] != 0) {
            any_valid = true;
            row_max = std::fmax(row_max, scale * scores[j * stride]);
        }
    }
    if (!any_valid) {
        const float fill = masked_row == MaskedRow::kUniform ? 1.0f / static_cast<float>(n) : 0.0f;
        for (int64_t j = 0; j < n; ++j) {
            probs[j * stride] = fill;
        }
        return;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
        const bool valid = mask == nullptr || mask[j] != 0;
        const float e = valid ? std::exp(scale * scores[j * stride] - row_max) : 0.0f;
        probs[j * stride] = e;
        sum += e;
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t j = 0; j < n; ++j) {
        probs[j * stride] *= inv_sum;
    }
}

void masked_softmax(const MaskedSoftmaxParams& params, const float* scores, const uint8_t* mask, float* probs) {
    const int64_t rows = params.rows;
    const int64_t cols = params.cols;
    VQA_CHECK(rows >= 0 && cols >= 0, kInvalidArgument, "cpu::masked_softmax: negative size rows=", rows,
              " cols=", cols);
    VQA_CHECK(params.rows_per_mask >= 1 && rows % params.rows_per_mask == 0, kInvalidArgument,
              "cpu::masked_softmax: rows (", rows, ") must be a positive multiple of rows_per_mask (",
              params.rows_per_mask, ")");
    if (rows == 0 || cols == 0) {
        return;
    }
    VQA_CHECK(scores != nullptr && probs != nullptr, kInvalidArgument,
              "cpu::masked_softmax: scores and probs must not be null");
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* mask_row = mask != nullptr ? mask + (r / params.rows_per_mask) * cols : nullptr;
        masked_softmax_row(scores + r * cols, mask_row, probs + r * cols, cols, 1, params.scale, params.masked_row);
    }
}

}  // namespace vqa::cpu
