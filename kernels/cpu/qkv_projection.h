// CPU reference for the fused head projection (kernels/qkv_projection.h): the same contract on float data, as a
// GEMM (cpu::gemm) followed by the bias, the group scales and the head split.
#pragma once

#include "kernels/qkv_projection.h"

namespace vqa::cpu {

// x: [B·L, K] (rows params.x_stride() apart); weight: [G·H·Dh, K]; bias: [G·H·Dh] or null;
// outputs.group[g]: [B, H, L, Dh] = scales[g] · (x · Wᵀ + bias) for the columns of group g.
void fused_qkv_projection(const HeadProjectionParams& params,
                          const float* x,
                          const float* weight,
                          const float* bias,
                          const HeadOutputs<float>& outputs);

}  // namespace vqa::cpu
