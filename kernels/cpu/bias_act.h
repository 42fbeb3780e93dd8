// Element-wise epilogues shared by the CPU ops: bias + activation over rows, ReLU, residual add.
#pragma once

#include <cmath>
#include <cstdint>

namespace vqa::cpu {

// Activation fused at the end of an op (linear, conv2d, bias_act).
enum class Activation {
    kNone,
    kRelu,
    kTanh,
};

inline float apply_activation(float v, Activation act) {
    switch (act) {
        case Activation::kRelu:
            return v < 0.0f ? 0.0f : v;  // written so that NaN stays NaN, as in torch.relu
        case Activation::kTanh:
            return std::tanh(v);
        case Activation::kNone:
            break;
    }
    return v;
}

// y[r, c] = act(x[r, c] + bias[c]); bias may be null (no bias); y may alias x.
void bias_act(const float* x,     // [rows, cols]
              const float* bias,  // [cols] or null
              float* y,           // [rows, cols]
              int64_t rows,
              int64_t cols,
              Activation act);

// x[i] = max(x[i], 0)
void relu_inplace(float* x,  // [n]
                  int64_t n);

// y[i] += x[i] (the ResNet residual add); x may alias y.
void add_inplace(float* y,        // [n]
                 const float* x,  // [n]
                 int64_t n);

}  // namespace vqa::cpu
