// Warp and block reductions of one float, shared by the kernels that reduce rows (softmax, attention, pooling,
// LayerNorm, top-k, the greedy decoder). Include from .cu files only.
//
// The order of the additions is part of the contract, because the GPU tests' tolerances were measured on it:
//  - warp: a butterfly over the 32 lanes (xor 16, 8, 4, 2, 1), so every lane ends with the same value;
//  - block: the warp butterfly, then warp 0's value combined with warps 1, 2, ... in index order, by every thread.
// A kernel whose block step has another shape (LayerNorm sums two values over one pair of barriers) keeps its own
// and uses only the warp step.
#pragma once

namespace vqa::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;

struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};

// op over the 32 lanes of a warp; every lane gets the result. All 32 lanes must call it.
template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        v = op(v, __shfl_xor_sync(kFullMask, v, offset));
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    return warp_reduce(v, MaxOp{});
}
__device__ __forceinline__ float warp_sum(float v) {
    return warp_reduce(v, SumOp{});
}

// op over a block of kWarps full warps; every thread gets the result. `scratch` holds kWarps floats (shared
// memory) and may be reused right after the call returns (the trailing barrier). Every thread of the block must
// call it.
template <int kWarps, typename Op>
__device__ float block_reduce(float v, float* scratch, Op op) {
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const int warp = static_cast<int>(threadIdx.x / kWarpSize);
    v = warp_reduce(v, op);
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    v = scratch[0];
    for (int w = 1; w < kWarps; ++w) {
        v = op(v, scratch[w]);
    }
    __syncthreads();
    return v;
}

}  // namespace vqa::cuda
