#include "kernels/cpu/bias_act.h"

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many elements an element-wise pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// One row with the activation and the bias known at compile time: a plain loop the compiler vectorises (a switch
// per element kept it scalar, and this pass after every linear layer's GEMM took a tenth of a forward pass).
template <Activation kAct, bool kBias>
void bias_act_row(const float* x, const float* bias, float* y, int64_t cols) {
    for (int64_t c = 0; c < cols; ++c) {
        float v = x[c];
        if constexpr (kBias) {
            v += bias[c];
        }
        y[c] = apply_activation(v, kAct);
    }
}

template <Activation kAct, bool kBias>
void bias_act_rows(const float* x, const float* bias, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        bias_act_row<kAct, kBias>(x + r * cols, bias, y + r * cols, cols);
    }
}

template <Activation kAct>
void bias_act_rows(const float* x, const float* bias, float* y, int64_t rows, int64_t cols) {
    if (bias != nullptr) {
        bias_act_rows<kAct, true>(x, bias, y, rows, cols);
    } else {
        bias_act_rows<kAct, false>(x, bias, y, rows, cols);
    }
}

}  // namespace

void bias_act(const float* x, const float* bias, float* y, int64_t rows, int64_t cols, Activation act) {
    VQA_CHECK(rows >= 0 && cols >= 0, kInvalidArgument, "cpu::bias_act: expected rows, cols >= 0, got ", rows, ", ",
              cols);
    if (rows == 0 || cols == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, "cpu::bias_act: x and y must not be null");
    switch (act) {
        case Activation::kRelu:
            bias_act_rows<Activation::kRelu>(x, bias, y, rows, cols);
            return;
        case Activation::kTanh:
            bias_act_rows<Activation::kTanh>(x, bias, y, rows, cols);
            return;
        case Activation::kNone:
            break;
    }
    bias_act_rows<Activation::kNone>(x, bias, y, rows, cols);
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
