// Bias + residual + activation on the GPU: an element-wise pass over [rows, cols], float arithmetic, float/half/
// bf16 I/O.
//
// Each thread handles whole kVec-element chunks of one row (16 bytes when cols and the pointers allow, one element
// otherwise) in a grid-stride loop, and reads a chunk before it writes the same chunk, so y may alias x or the
// residual (nothing is __restrict__ or read through the non-coherent path except the bias).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/bias_act.h"
#include "kernels/cuda_check.h"
#include "kernels/element_convert.cuh"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // past 2^28 chunks the grid-stride loop takes over

// The same rules as cpu::apply_activation: relu keeps NaN (the comparison is false for it).
__device__ __forceinline__ float activate(float v, cpu::Activation act) {
    switch (act) {
        case cpu::Activation::kRelu:
            return v < 0.0f ? 0.0f : v;
        case cpu::Activation::kTanh:
            return tanhf(v);
        case cpu::Activation::kNone:
            break;
    }
    return v;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(const T* x,                      // [rows, cols]
                                                            const float* __restrict__ bias,  // [cols] or null
                                                            const T* residual,               // [rows, cols] or null
                                                            T* y,                            // [rows, cols]
                                                            int64_t rows,
                                                            int64_t cols,
                                                            cpu::Activation act) {
    const int64_t chunks_per_row = cols / kVec;  // cols is a multiple of kVec
    const int64_t total = rows * chunks_per_row;
    for (int64_t k = int64_t{blockIdx.x} * kThreads + threadIdx.x; k < total; k += int64_t{gridDim.x} * kThreads) {
        const int64_t row = k / chunks_per_row;
        const int64_t col = (k - row * chunks_per_row) * kVec;
        const int64_t offset = row * cols + col;
        float v[kVec];
        load_elems<T, kVec>(x + offset, v);
        if (residual != nullptr) {
            float r[kVec];
            load_elems<T, kVec>(residual + offset, r);
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                v[i] += r[i];
            }
        }
        if (bias != nullptr) {
            float b[kVec];  // float4 loads on the vector path (the launcher checked the alignment)
            load_floats<kVec>(bias + col, b);
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                v[i] += b[i];
            }
        }
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            v[i] = activate(v[i], act);
        }
        store_elems<T, kVec>(y + offset, v);
    }
}

template <typename T, int kVec>
void launch_bias_act(const T* x,
                     const float* bias,
                     const T* residual,
                     T* y,
                     int64_t rows,
                     int64_t cols,
                     cpu::Activation act,
                     cudaStream_t stream) {
    const int64_t total = rows * (cols / kVec);
    const auto blocks = static_cast<unsigned>(std::min((total + kThreads - 1) / kThreads, kMaxBlocks));
    bias_act_kernel<T, kVec><<<blocks, kThreads, 0, stream>>>(x, bias, residual, y, rows, cols, act);
}

template <typename T>
void check_bias_act_args(
    const T* x, const float* bias, const T* residual, const T* y, int64_t rows, int64_t cols, cpu::Activation act) {
    VQA_CHECK(rows >= 0 && cols >= 0, kInvalidArgument, "bias_act: expected rows, cols >= 0, got ", rows, ", ", cols);
    VQA_CHECK(act == cpu::Activation::kNone || act == cpu::Activation::kRelu || act == cpu::Activation::kTanh,
              kInvalidArgument, "bias_act: unknown activation ", static_cast<int>(act));
    if (rows == 0 || cols == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, "bias_act: x and y must not be null");
    VQA_CHECK(rows <= std::numeric_limits<int64_t>::max() / cols, kInvalidArgument, "bias_act: rows * cols (", rows,
              " * ", cols, ") overflows");
    const int64_t bytes = rows * cols * static_cast<int64_t>(sizeof(T));
    VQA_CHECK(same_or_disjoint(y, x, bytes) && same_or_disjoint(y, residual, bytes), kInvalidArgument,
              "bias_act: y must be exactly x, exactly residual, or apart from both; a partial overlap is not "
              "supported");
    VQA_CHECK(!overlaps(y, bytes, bias, cols * static_cast<int64_t>(sizeof(float))), kInvalidArgument,
              "bias_act: bias must not overlap y");
}

}  // namespace

template <typename T>
void bias_act(const T* x,
              const float* bias,
              const T* residual,
              T* y,
              int64_t rows,
              int64_t cols,
              cpu::Activation act,
              cudaStream_t stream) {
    const TraceRange range("bias_act", stream);
    check_bias_act_args(x, bias, residual, y, rows, cols, act);
    if (rows == 0 || cols == 0) {
        return;
    }
    constexpr int kVec = kWordElems<T>;
    const bool vectorised = cols % kVec == 0 && is_aligned(x, kVectorBytes) && is_aligned(residual, kVectorBytes) &&
                            is_aligned(y, kVectorBytes) && is_aligned(bias, kVectorBytes);
    if (vectorised) {
        launch_bias_act<T, kVec>(x, bias, residual, y, rows, cols, act, stream);
    } else {
        launch_bias_act<T, 1>(x, bias, residual, y, rows, cols, act, stream);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template void bias_act<float>(
    const float*, const float*, const float*, float*, int64_t, int64_t, cpu::Activation, cudaStream_t);
template void bias_act<__half>(
    const __half*, const float*, const __half*, __half*, int64_t, int64_t, cpu::Activation, cudaStream_t);
template void bias_act<__nv_bfloat16>(const __nv_bfloat16*,
                                      const float*,
                                      const __nv_bfloat16*,
                                      __nv_bfloat16*,
                                      int64_t,
                                      int64_t,
                                      cpu::Activation,
                                      cudaStream_t);

}  // namespace vqa::cuda
