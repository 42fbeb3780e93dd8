// LayerNorm over the last dimension, optionally of a residual sum (docs/model-format.md §6.2, §6.3).
#pragma once

#include <cstdint>

namespace vqa::cpu {

// The two LayerNorm formulas in use (config `layer_norm.variant`).
enum class LayerNormVariant {
    kStandard,     // (x − mean) / sqrt(var + eps) · w + b, var biased (PyTorch nn.LayerNorm)
    kUnbiasedStd,  // w · (x − mean) / (std + eps) + b, std = sqrt(Σ(x − mean)² / (d − 1)) (openvqa); d ≥ 2
};

// y[r, :] = LN(x[r, :] + residual[r, :]) (residual may be null: y = LN(x)). The sum is rounded to fp32 first,
// as PyTorch's `x + r` is; mean and variance are then computed in double (two passes). y may alias x or
// residual (the post-norm `x = LN(x + sublayer(x))` runs in place).
void layer_norm(const float* x,         // [M, d]
                const float* residual,  // [M, d] or null
                const float* weight,    // [d]
                const float* bias,      // [d]
                float* y,               // [M, d]
                int64_t M,
                int64_t d,
                float eps,
                LayerNormVariant variant);

}  // namespace vqa::cpu
