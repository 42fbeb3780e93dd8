#include "kernels/cpu/bias_act.h"

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many elements an element-wise pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

}  // namespace

void bias_act(const float* x, const float* bias, float* y, int64_t rows, int64_t cols, Activation act) {
    VQA_CHECK(rows >= 0 && cols >= 0, kInvalidArgument, "cpu::bias_act: expected rows, cols >= 0, got ", rows, ", ",
              cols);
    if (rows == 0 || cols == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, "cpu::bias_act: x and y must not be null");
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const float* x_row = x + r * cols;
        float* y_row = y + r * cols;
        for (int64_t c = 0; c < cols; ++c) {
            const float v = bias != nullptr ? x_row[c] + bias[c] : x_row[c];
            y_row[c] = apply_activation(v, act);
        }
    }
}

void relu_inplace(float* x, int64_t n) {
    VQA_CHECK(n >= 0, kInvalidArgument, "cpu::relu_inplace: expected n >= 0, got ", n);
    VQA_CHECK(n == 0 || x != nullptr, kInvalidArgument, "cpu::relu_inplace: x must not be null");
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
        x[i] = apply_activation(x[i], Activation::kRelu);
    }
}

void add_inplace(float* y, const float* x, int64_t n) {
    VQA_CHECK(n >= 0, kInvalidArgument, "cpu::add_inplace: expected n >= 0, got ", n);
    VQA_CHECK(n == 0 || (x != nullptr && y != nullptr), kInvalidArgument, "cpu::add_inplace: x and y must not be null");
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
        y[i] += x[i];
    }
}

}  // namespace vqa::cpu
