// CPU reference for the head permutation: the contract of kernels/split_heads.h on float data.
#pragma once

#include "kernels/split_heads.h"

namespace vqa::cpu {

// x: [B, L, H*Dh] (rows shape.row_stride() apart) -> y: [B, H, L, Dh]
void split_heads(const float* x, float* y, const HeadsShape& shape);

// y: [B, H, L, Dh] -> x: [B, L, H*Dh] (rows shape.row_stride() apart); padding between x rows is left as it was
void merge_heads(const float* y, float* x, const HeadsShape& shape);

}  // namespace vqa::cpu
