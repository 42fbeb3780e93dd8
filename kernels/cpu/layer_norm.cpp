#include "kernels/cpu/layer_norm.h"

#include <cmath>

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many elements a LayerNorm pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 14;

}  // namespace

void layer_norm(const float* x,
                const float* residual,
                const float* weight,
                const float* bias,
                float* y,
                int64_t M,
                int64_t d,
                float eps,
                LayerNormVariant variant) {
    VQA_CHECK(M >= 0 && d >= 1, kInvalidArgument, "cpu::layer_norm: expected M >= 0 and d >= 1, got M=", M, " d=", d);
    VQA_CHECK(variant != LayerNormVariant::kUnbiasedStd || d >= 2, kInvalidArgument,
              "cpu::layer_norm: the unbiased_std variant needs d >= 2 (its std divides by d - 1), got d=", d);
    if (M == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weight != nullptr && bias != nullptr && y != nullptr, kInvalidArgument,
              "cpu::layer_norm: x, weight, bias and y must not be null");
#pragma omp parallel for schedule(static) if (M * d >= kParallelMinElements)
    for (int64_t r = 0; r < M; ++r) {
        const float* x_row = x + r * d;
        const float* r_row = residual != nullptr ? residual + r * d : nullptr;
        float* y_row = y + r * d;
        // The summed row goes to y first; element-wise, so y may alias x or residual.
        double sum = 0.0;
        for (int64_t j = 0; j < d; ++j) {
            const float s = r_row != nullptr ? x_row[j] + r_row[j] : x_row[j];
            y_row[j] = s;
            sum += s;
        }
        const double mean = sum / static_cast<double>(d);
        double sq = 0.0;
        for (int64_t j = 0; j < d; ++j) {
            const double c = y_row[j] - mean;
            sq += c * c;
        }
        double inv;
        if (variant == LayerNormVariant::kStandard) {
            inv = 1.0 / std::sqrt(sq / static_cast<double>(d) + static_cast<double>(eps));
        } else {
            inv = 1.0 / (std::sqrt(sq / static_cast<double>(d - 1)) + static_cast<double>(eps));
        }
        for (int64_t j = 0; j < d; ++j) {
            y_row[j] = static_cast<float>((y_row[j] - mean) * inv) * weight[j] + bias[j];
        }
    }
}

}  // namespace vqa::cpu
