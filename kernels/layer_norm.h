// LayerNorm over the last dimension with a fused residual add (CUDA entry point; the CPU reference with the same
// contract is kernels/cpu/layer_norm.h).
//
//   s[r, :] = x[r, :] + residual[r, :]  (rounded to T, as PyTorch's `x + r` in that dtype; s = x without residual)
//   y[r, :] = LN(s[r, :])               kStandard:    (s − mean) / sqrt(var + eps) · w + b, var biased
//                                       kUnbiasedStd: w · (s − mean) / (std + eps) + b, std unbiased (d ≥ 2)
//   pre_norm[r, :] = s[r, :]            optional: the residual stream of a pre-norm layer, for free
//
// Statistics are float for every element type (a two-pass mean and variance over the row, corrected for the
// rounding of the first-pass mean); weight and bias are float whatever T is (parameters stay fp32).
#pragma once

#include <cstdint>

#include "kernels/cpu/layer_norm.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

struct LayerNormParams {
    int64_t rows = 0;   // M: rows of x, residual, y and pre_norm
    int64_t dim = 0;    // d: elements per row (>= 1; >= 2 for kUnbiasedStd), rows are dense (d apart)
    float eps = 1e-5f;  // >= 0; inside the square root (kStandard) or added to the std (kUnbiasedStd)
    cpu::LayerNormVariant variant = cpu::LayerNormVariant::kStandard;
};

#if VQA_WITH_CUDA
namespace cuda {

// T is float, __half or __nv_bfloat16 (instantiated in layer_norm.cu). y and pre_norm may each be exactly x or
// exactly residual (the post-norm `x = LN(x + sublayer(x))` in place); otherwise outputs must not overlap the
// inputs, and y must not overlap pre_norm. One warp per row up to d = 1024 (several rows per block), one block per
// row beyond; 16-byte loads and stores when d and every pointer allow, element-wise otherwise. Throws
// vqa::Error(kInvalidArgument) for bad arguments before anything is queued. Asynchronous on `stream`; no
// allocation. Pass a null residual or pre_norm with an explicit T: `cuda::layer_norm<__half>(p, x, nullptr, ...)`.
template <typename T>
void layer_norm(const LayerNormParams& params,
                const T* x,           // [M, d]
                const T* residual,    // [M, d] or null
                const float* weight,  // [d]
                const float* bias,    // [d]
                T* y,                 // [M, d]
                T* pre_norm,          // [M, d] or null: x + residual as rounded to T
                cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa
